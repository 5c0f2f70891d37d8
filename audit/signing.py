"""The audit keys: loads the Ed25519 private key of settings.AUDIT_SIGNING_KEY and signs; reads the
earlier public keys of settings.AUDIT_TRUSTED_PUBLIC_KEYS that checkpoints may still be signed by
(key rotation, docs/compliance.md)."""

from __future__ import annotations

import base64
import binascii
import re
from functools import cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# One entry of AUDIT_TRUSTED_PUBLIC_KEYS: a PEM block (it holds spaces and newlines), or a run of
# anything but commas and white space.
_ENTRY = re.compile(r"-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----|[^\s,]+", re.DOTALL)


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


def _public_entry(entry: str) -> bytes | None:
    """Raw bytes of one public key written as hex or base64 (padding optional), or None."""
    if re.fullmatch(r"[0-9a-fA-F]{64}", entry):
        return bytes.fromhex(entry)
    try:
        raw = base64.b64decode(entry + "=" * (-len(entry) % 4), validate=True)
    except binascii.Error:
        return None
    return raw if len(raw) == 32 else None


def _public_pem(label: str, body: str) -> bytes | None:
    # The base64 body is decoded by hand, so that a PEM squeezed onto one line (an environment
    # variable without newlines) reads as well as a proper one.
    if label != "PUBLIC KEY":
        return None
    try:
        key = serialization.load_der_public_key(base64.b64decode(re.sub(r"\s", "", body), validate=True))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(key, Ed25519PublicKey):
        return None
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@cache
def _parse_public_keys(value: str) -> tuple[bytes, ...]:
    keys: list[bytes] = []
    for number, match in enumerate(_ENTRY.finditer(value), start=1):
        label = match.group(1)
        raw = _public_pem(label, match.group(2)) if label else _public_entry(match.group(0))
        if raw is None:
            # Never the entry itself in the message: a private key pasted by mistake would end up
            # in logs.
            hint = ""
            if label and "PRIVATE" in label:
                hint = " (that is a private key: give its public key)"
            elif match.group(0).startswith("SHA256:"):
                hint = " (that is a fingerprint: give the public key itself)"
            raise ImproperlyConfigured(
                f"AUDIT_TRUSTED_PUBLIC_KEYS: entry {number} is not an Ed25519 public key "
                f"(base64 or hex of the 32 raw bytes, or PEM){hint}"
            )
        if raw not in keys:
            keys.append(raw)
    return tuple(keys)


def earlier_public_keys() -> tuple[bytes, ...]:
    """The public keys of AUDIT_TRUSTED_PUBLIC_KEYS, raw. Raises ImproperlyConfigured naming the
    entry that is not an Ed25519 public key."""
    return _parse_public_keys(settings.AUDIT_TRUSTED_PUBLIC_KEYS)


def trusted_public_keys() -> tuple[bytes, ...]:
    """Every key a checkpoint may be signed by: the current key's (when AUDIT_SIGNING_KEY is set)
    first, then the earlier ones. Raises ImproperlyConfigured when either setting is malformed."""
    current = (public_key_raw(),) if settings.AUDIT_SIGNING_KEY else ()
    return current + tuple(k for k in earlier_public_keys() if k not in current)


def public_key_base64(raw: bytes) -> str:
    """The form AUDIT_TRUSTED_PUBLIC_KEYS takes (hex and PEM are accepted too)."""
    return base64.b64encode(raw).decode()
