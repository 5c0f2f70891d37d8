"""The audit key: loads the Ed25519 private key of settings.AUDIT_SIGNING_KEY and signs."""

from __future__ import annotations

import base64
import binascii
from functools import cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@cache
def _load(value: str) -> Ed25519PrivateKey:
    if not value:
        raise ImproperlyConfigured("AUDIT_SIGNING_KEY is not set: the audit chain cannot be sealed")
    if value.lstrip().startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(value.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ImproperlyConfigured("AUDIT_SIGNING_KEY is a PEM key, but not an Ed25519 one")
        return key
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ImproperlyConfigured("AUDIT_SIGNING_KEY is neither PEM nor base64") from None
    if len(raw) != 32:
        raise ImproperlyConfigured("AUDIT_SIGNING_KEY must be 32 bytes (base64) or an Ed25519 PEM key")
    return Ed25519PrivateKey.from_private_bytes(raw)


def private_key() -> Ed25519PrivateKey:
    return _load(settings.AUDIT_SIGNING_KEY)


def public_key_raw() -> bytes:
    return private_key().public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign(message: bytes) -> bytes:
    return private_key().sign(message)
