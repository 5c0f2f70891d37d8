"""Moved to audit/signing.py; these names stay importable from here until the callers move."""

from audit.signing import (
    earlier_public_keys,
    private_key,
    public_key_base64,
    public_key_raw,
    sign,
    trusted_public_keys,
)

__all__ = [
    "earlier_public_keys",
    "private_key",
    "public_key_base64",
    "public_key_raw",
    "sign",
    "trusted_public_keys",
]
