"""The audit chain's format, in plain Python: no Django, so that an auditor can verify an exported
bundle offline with this file and verify_bundle.py alone (docs/compliance.md).

Format version 1, frozen: changing anything here breaks every stored chain.

- canonical JSON: keys sorted, no whitespace, UTF-8 (not \\u-escaped), and floats with an
  integral value written as integers (PostgreSQL's jsonb gives 1e20 back as an integer; the hash
  must not depend on the round trip).
- payload_sha256 = SHA-256(canonical(payload)). Kept when a retention purge removes the payload.
- content_sha256 = SHA-256(canonical({v, seq, kind, at, request, session, actor, actor_label,
  payload_sha256})), `at` in UTC with microseconds ("2026-01-31T09:15:02.123456Z").
- row_sha256 = SHA-256(bytes(prev_sha256) + bytes(content_sha256)); the first row's prev is 64 zeros.
- A checkpoint signs canonical({v, seq, row_sha256, sealed_at}) with Ed25519.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

FORMAT_VERSION = 1
GENESIS = "0" * 64


def _normalise(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    return value


def canonical(value: Any) -> bytes:
    return json.dumps(
        _normalise(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def format_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def payload_hash(payload: Any) -> str:
    return sha256_hex(canonical(payload))


def content_hash(
    *,
    seq: int,
    kind: str,
    at: str,
    request: int | None,
    session: int | None,
    actor: int | None,
    actor_label: str,
    payload_sha256: str,
) -> str:
    return sha256_hex(
        canonical(
            {
                "v": FORMAT_VERSION,
                "seq": seq,
                "kind": kind,
                "at": at,
                "request": request,
                "session": session,
                "actor": actor,
                "actor_label": actor_label,
                "payload_sha256": payload_sha256,
            }
        )
    )


def row_hash(prev_sha256: str, content_sha256: str) -> str:
    return sha256_hex(bytes.fromhex(prev_sha256) + bytes.fromhex(content_sha256))


def checkpoint_message(*, seq: int, row_sha256: str, sealed_at: str) -> bytes:
    return canonical({"v": FORMAT_VERSION, "seq": seq, "row_sha256": row_sha256, "sealed_at": sealed_at})


def key_fingerprint(public_key_raw: bytes) -> str:
    """A short name for a public key, to compare with the one published out of band."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(public_key_raw).digest()).decode().rstrip("=")


def verify_signature(public_key_raw: bytes, signature: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key_raw).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def check_row(row: dict[str, Any]) -> str | None:
    """What is wrong with one exported/stored row on its own, or None. `row` has the bundle's
    keys: seq, kind, at, request, session, actor, actor_label, payload (None when purged),
    payload_sha256, content_sha256, prev_sha256, row_sha256."""
    if row.get("payload") is not None and payload_hash(row["payload"]) != row["payload_sha256"]:
        return "its payload does not match its payload hash"
    expected = content_hash(
        seq=row["seq"],
        kind=row["kind"],
        at=row["at"],
        request=row["request"],
        session=row["session"],
        actor=row["actor"],
        actor_label=row["actor_label"],
        payload_sha256=row["payload_sha256"],
    )
    if expected != row["content_sha256"]:
        return "its content does not match its content hash"
    if row_hash(row["prev_sha256"], row["content_sha256"]) != row["row_sha256"]:
        return "its row hash does not match its content and previous hash"
    return None
