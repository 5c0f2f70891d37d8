"""Encrypted model fields: MCP server credentials stored as Fernet tokens under
settings.FIELD_ENCRYPTION_KEYS (docs/registry.md)."""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


def field_cipher() -> MultiFernet:
    """settings.FIELD_ENCRYPTION_KEYS as one cipher: the first key encrypts, any key decrypts.
    Built on each call (cheap: no key derivation) so that a changed setting takes effect at once."""
    if not settings.FIELD_ENCRYPTION_KEYS:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is required to store or read MCP server credentials")
    return MultiFernet([Fernet(key) for key in settings.FIELD_ENCRYPTION_KEYS])


def encrypt_text(plaintext: str) -> str:
    return field_cipher().encrypt(plaintext.encode()).decode()


def decrypt_text(token: str, *, what: str = "a stored secret") -> str:
    try:
        return field_cipher().decrypt(token.encode()).decode()
    except InvalidToken:
        # Fail loudly: handing the ciphertext on as if it were the credential (what
        # django-fernet-encrypted-fields does) would send garbage upstream and hide a lost key.
        raise ImproperlyConfigured(
            f"cannot decrypt {what}: none of FIELD_ENCRYPTION_KEYS opens it (was a key removed too early?)"
        ) from None


def _open_token(value: str) -> str:
    """A serialized value (dumpdata writes ciphertext) is decrypted; anything else is input as typed."""
    try:
        return field_cipher().decrypt(value.encode()).decode()
    except InvalidToken:
        return value


class EncryptedTextField(models.TextField):
    """Text stored as a Fernet token (docs/registry.md). Empty stays empty, so "is it set?"
    needs no key; anything else is ciphertext in the column and plaintext in Python."""

    def deconstruct(self) -> Any:
        # Migrations name the field by its public path (approvals.models re-exports it).
        name, _, args, kwargs = super().deconstruct()
        return name, "approvals.models.EncryptedTextField", args, kwargs

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str:
        if not value:
            return ""
        return decrypt_text(value, what=f"{self.model.__name__}.{self.name}")

    def get_prep_value(self, value: Any) -> str:
        value = super().get_prep_value(value)
        return encrypt_text(value) if value else ""

    def to_python(self, value: Any) -> str:
        # loaddata hands over what value_to_string wrote: the token. Typed input stays as typed.
        value = super().to_python(value)
        return _open_token(value) if value else ""

    def value_to_string(self, obj: models.Model) -> str:
        # dumpdata/serializers: the ciphertext, never the plaintext.
        return self.get_prep_value(self.value_from_object(obj))


class EncryptedJSONField(models.TextField):
    """A JSON object (header name → value) stored as one Fernet token of its JSON text: the
    header names are encrypted too, since a name like X-Tenant-ID can itself say too much."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("default", dict)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, _, args, kwargs = super().deconstruct()
        return name, "approvals.models.EncryptedJSONField", args, kwargs

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> dict[str, Any]:
        if not value:
            return {}
        return json.loads(decrypt_text(value, what=f"{self.model.__name__}.{self.name}"))

    def to_python(self, value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        return json.loads(_open_token(value)) if value else {}

    def get_prep_value(self, value: Any) -> str:
        return encrypt_text(json.dumps(value, sort_keys=True)) if value else ""

    def value_to_string(self, obj: models.Model) -> str:
        # dumpdata/serializers: the ciphertext, never the plaintext.
        return self.get_prep_value(self.value_from_object(obj))
