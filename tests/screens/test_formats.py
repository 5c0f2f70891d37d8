"""The one time format, display names, amounts and status words of the staff screens."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.template import Context, Template
from django.utils import translation

from approvals.templatetags.approvals_extras import display_name, money, status_label, time_zone_attrs, when

WINTER = datetime(2026, 1, 15, 13, 5, 9, 123456, tzinfo=UTC)
SUMMER = datetime(2026, 7, 15, 12, 5, 9, tzinfo=UTC)


def test_times_are_shown_in_the_time_zone_with_its_name(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    assert when(WINTER) == "14:05:09 CET"
    assert when(SUMMER) == "14:05:09 CEST"
    assert when(WINTER, "full") == "2026-01-15 14:05:09 CET"
    assert when(WINTER, "minute") == "2026-01-15 14:05 CET"
    assert when(WINTER, "precise") == "2026-01-15 14:05:09.123 CET"
    assert when(WINTER, "date") == "2026-01-15"
    assert when(None) == ""


def test_the_time_format_is_the_same_in_every_language(settings):
    settings.TIME_ZONE = "America/New_York"
    for language in ("en", "de", "es"):
        with translation.override(language):
            assert Template("{% load approvals_extras %}{{ t|when:'full' }}").render(Context({"t": WINTER})) == (
                "2026-01-15 08:05:09 EST"
            )


def test_the_browser_gets_the_zone_and_the_names_of_its_offsets(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    html = str(time_zone_attrs())
    assert 'data-time-zone="Europe/Berlin"' in html
    names = json.loads(html.split('data-time-zone-names="')[1].split('"')[0].replace("&quot;", '"'))
    assert names == {"GMT+1": "CET", "GMT+2": "CEST"}
    settings.TIME_ZONE = "UTC"
    assert "GMT&quot;: &quot;UTC" in str(time_zone_attrs())


@pytest.mark.parametrize(
    ("language", "expected"),
    [("en", "€20.00"), ("de", "20,00\xa0€"), ("es", "20,00\xa0€")],
)
def test_money_is_formatted_by_currency_in_the_active_language(language, expected):
    with translation.override(language):
        assert money(20, "EUR") == expected


def test_money_knows_each_currencys_digits_and_leaves_non_amounts_alone():
    with translation.override("en"):
        assert money("1234.5", "usd") == "$1,234.50"
        assert money(1500, "JPY") == "¥1,500"
        assert money("twenty", "EUR") == "twenty"
        assert "XXQ" in money(20, "XXQ")  # a code babel does not know is still said


def test_people_are_named_by_full_name_else_username(db):
    assert display_name(User(username="dana", first_name="Dana", last_name="Whitfield")) == "Dana Whitfield"
    assert display_name(User(username="night-audit")) == "night-audit"
    assert display_name(AnonymousUser()) == ""
    assert display_name(None) == ""


def test_status_words_are_translated():
    with translation.override("de"):
        assert status_label("approved") == "Genehmigt"
    with translation.override("es"):
        assert status_label("expired") == "Vencida"
    assert status_label("unknown") == "unknown"
