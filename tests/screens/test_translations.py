"""German and Spanish are complete, and the committed .mo files are what their .po files say
(a clone without gettext serves the same words)."""

from __future__ import annotations

import gettext
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po
from django.conf import settings

LOCALE = Path(settings.BASE_DIR) / "locale"
CATALOGS = [(lang, domain) for lang in ("de", "es") for domain in ("django", "djangojs")]


def _po(lang: str, domain: str) -> Catalog:
    with open(LOCALE / lang / "LC_MESSAGES" / f"{domain}.po", "rb") as f:
        return read_po(f, locale=lang)


@pytest.mark.parametrize(("lang", "domain"), CATALOGS)
def test_every_message_is_translated_and_none_is_fuzzy(lang, domain):
    catalog = _po(lang, domain)
    assert not catalog.fuzzy
    untranslated = []
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(strings):
            untranslated.append(message.id)
    assert untranslated == []
    assert len(catalog) > 50 if domain == "django" else len(catalog) > 40


@pytest.mark.parametrize(("lang", "domain"), CATALOGS)
def test_the_compiled_catalog_matches_its_source(lang, domain):
    with open(LOCALE / lang / "LC_MESSAGES" / f"{domain}.mo", "rb") as f:
        compiled = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
    expected: dict[object, str] = {}
    for message in _po(lang, domain):
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        key = f"{message.context}\x04{ids[0]}" if message.context else ids[0]
        if isinstance(message.string, tuple):
            for index, text in enumerate(message.string):
                expected[(key, index)] = text
        else:
            expected[key] = str(message.string)
    compiled = {k: v for k, v in compiled.items() if k != ""}  # the header
    assert compiled == expected, "recompile: msgfmt --check -o X.mo X.po in locale/<lang>/LC_MESSAGES"
