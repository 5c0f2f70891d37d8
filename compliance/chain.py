"""Moved to audit/chain.py; these names stay importable from here until the callers move."""

from audit.chain import (
    FORMAT_VERSION,
    GENESIS,
    canonical,
    check_row,
    checkpoint_message,
    content_hash,
    format_time,
    key_fingerprint,
    payload_hash,
    row_hash,
    sha256_hex,
    verify_signature,
)

__all__ = [
    "FORMAT_VERSION",
    "GENESIS",
    "canonical",
    "check_row",
    "checkpoint_message",
    "content_hash",
    "format_time",
    "key_fingerprint",
    "payload_hash",
    "row_hash",
    "sha256_hex",
    "verify_signature",
]
