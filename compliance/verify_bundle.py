"""Verify an evidence bundle offline, without Countersign's database or Django:

    python -m compliance.verify_bundle export-12.zip [--public-key HEX_OR_FINGERPRINT ...]

Needs only this file, audit/chain.py and the `cryptography` package. Prints OK and the
fingerprints of the keys it relied on and exits 0, or prints the first thing that does not match
and exits 1. Format: docs/compliance.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from audit import chain

# 1: every checkpoint signed by the manifest's key. 2: each checkpoint by a key the manifest
# lists in "checkpoint_keys" (the audit key was rotated within the bundle's range).
FORMATS = ("countersign-audit-bundle/1", "countersign-audit-bundle/2")


TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # chain.format_time


class BundleError(Exception):
    pass


def _jsonl(data: bytes, name: str) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in data.decode().splitlines() if line]
    except ValueError as exc:
        raise BundleError(f"{name} is not valid JSON Lines: {exc}") from None


def _key(value: Any, what: str) -> bytes:
    try:
        key = bytes.fromhex(value)
    except (ValueError, TypeError):
        raise BundleError(f"{what} is not a hex public key") from None
    if len(key) != 32:
        raise BundleError(f"{what} is not a 32-byte Ed25519 public key")
    return key


def _seqs(seqs: list[int]) -> str:
    n = len(seqs)
    where = f"#{seqs[0]}" if n == 1 else f"#{seqs[0]}..#{seqs[-1]}"
    return f"{n} checkpoint{'s' if n != 1 else ''} ({where})"


def verify(path: str, *, public_keys: Sequence[str] = (), sha256: str | None = None) -> str:
    """Raise BundleError naming the first problem; return a summary when all is intact, naming
    the fingerprint of every key it relied on. `public_keys`: the keys you trust (hex or SHA256:
    fingerprints); when given, a manifest or checkpoint signed by any other key fails.
    `sha256`: the digest of the whole file shown on the export page; checked first when given."""
    if isinstance(public_keys, str):
        public_keys = [public_keys]
    if sha256:
        try:
            with open(path, "rb") as f:
                actual = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError as exc:
            raise BundleError(f"cannot read the bundle: {exc}") from None
        if actual != sha256.lower():
            raise BundleError(f"the file's SHA-256 is {actual}, not the {sha256} of the export")
    try:
        with zipfile.ZipFile(path) as z:
            files = {name: z.read(name) for name in z.namelist()}
    except (zipfile.BadZipFile, OSError, KeyError) as exc:
        raise BundleError(f"cannot read the bundle: {exc}") from None
    except Exception as exc:  # zlib.error, CRC mismatch (a changed byte in the zip itself)
        raise BundleError(f"the bundle is damaged: {exc}") from None
    for name in ("manifest.json", "manifest.sig", "rows.jsonl", "chain.jsonl", "checkpoints.jsonl"):
        if name not in files:
            raise BundleError(f"{name} is missing from the bundle")
    manifest_bytes = files["manifest.json"]
    try:
        manifest = json.loads(manifest_bytes)
        key = bytes.fromhex(manifest["public_key"])
        signature = bytes.fromhex(files["manifest.sig"].decode().strip())
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"the manifest cannot be read: {exc}") from None
    if manifest.get("format") not in FORMATS:
        raise BundleError(f"unknown bundle format {manifest.get('format')!r}")
    fingerprint = chain.key_fingerprint(key)

    def refuse_untrusted(key: bytes, what: str) -> None:
        if public_keys and not {key.hex(), chain.key_fingerprint(key)} & set(public_keys):
            raise BundleError(f"{what} signed by {chain.key_fingerprint(key)}, not by a key you trust")

    refuse_untrusted(key, "the bundle is")
    if not chain.verify_signature(key, signature, manifest_bytes):
        raise BundleError("the manifest's signature does not match")
    # The keys the checkpoints may name. The manifest's signature covers this list, so it is the
    # exporting installation's word; the fingerprints printed at the end let a reviewer check it.
    if manifest["format"] == FORMATS[0]:
        signers = {key}
    else:
        try:
            listed = [entry["public_key"] for entry in manifest["checkpoint_keys"]]
        except (KeyError, TypeError) as exc:
            raise BundleError(f"the manifest's checkpoint_keys cannot be read: {exc}") from None
        signers = {_key(value, "an entry of the manifest's checkpoint_keys") for value in listed}
    for name, expected in manifest["files"].items():
        if hashlib.sha256(files.get(name, b"")).hexdigest() != expected:
            raise BundleError(f"{name} does not match the manifest")

    rows = {row["seq"]: row for row in _jsonl(files["rows.jsonl"], "rows.jsonl")}
    checkpoints = {c["seq"]: c for c in _jsonl(files["checkpoints.jsonl"], "checkpoints.jsonl")}
    links = _jsonl(files["chain.jsonl"], "chain.jsonl")
    first, last = manifest["first_seq"], manifest["last_seq"]
    for seq, row in sorted(rows.items()):
        problem = chain.check_row(row)
        if problem:
            raise BundleError(f"row #{seq} ({row['kind']}) does not match: {problem}")
        if not first <= seq <= last:
            raise BundleError(f"row #{seq} lies outside the sealed segment #{first}..#{last}")
    prev = manifest["anchor_sha256"] if links else ""
    relied: dict[bytes, list[int]] = {}
    expected = first
    for link in links:
        seq = link["seq"]
        if seq != expected:
            raise BundleError(f"the chain jumps from #{expected - 1} to #{seq}")
        current = chain.row_hash(prev, link["content_sha256"])
        held = rows.get(seq)
        if held is not None and (held["content_sha256"], held["prev_sha256"], held["row_sha256"]) != (
            link["content_sha256"],
            prev,
            current,
        ):
            raise BundleError(f"row #{seq} ({held['kind']}) is not the row the chain holds at #{seq}")
        checkpoint = checkpoints.get(seq)
        if checkpoint is not None:
            if checkpoint["row_sha256"] != current:
                raise BundleError(f"the chain at #{seq} differs from its signed checkpoint")
            signer = _key(checkpoint.get("public_key"), f"the key of checkpoint #{seq}")
            if signer not in signers:
                raise BundleError(
                    f"checkpoint #{seq} is signed by {chain.key_fingerprint(signer)}, a key the manifest does not list"
                )
            refuse_untrusted(signer, f"checkpoint #{seq} is")
            message = chain.checkpoint_message(seq=seq, row_sha256=current, sealed_at=checkpoint["sealed_at"])
            try:
                checkpoint_signature = bytes.fromhex(checkpoint["signature"])
            except (ValueError, TypeError):
                raise BundleError(f"checkpoint #{seq} has a signature that is not hex") from None
            if not chain.verify_signature(signer, checkpoint_signature, message):
                raise BundleError(f"checkpoint #{seq} has a bad signature (key {chain.key_fingerprint(signer)})")
            relied.setdefault(signer, []).append(seq)
        prev, expected = current, seq + 1
    if links and (expected - 1 != last or last not in checkpoints):
        raise BundleError(f"the chain segment does not end at the signed checkpoint #{last}")
    if rows and not links:
        raise BundleError("the bundle has rows but no chain to check them against")
    _check_purges(rows)
    lines = [
        f"OK: {len(rows)} audit rows of {manifest['requests']} requests; chain #{first}..#{last} "
        f"matches checkpoint #{last}.",
        "Keys relied on"
        + (
            " (each is one of the keys you gave):"
            if public_keys
            else "; compare each fingerprint with the ones published for this installation:"
        ),
    ]
    if key not in relied:
        lines.append(f"  {fingerprint}  signed the manifest")
    for signer, seqs in relied.items():
        also = "the manifest and " if signer == key else ""
        lines.append(f"  {chain.key_fingerprint(signer)}  signed {also}{_seqs(seqs)}")
    return "\n".join(lines)


def _check_purges(rows: dict[int, dict[str, Any]]) -> None:
    """Every row whose payload is gone must be listed by a retention purge record of the bundle
    (a later row of kind "purged", which the chain vouches for) that ran with retention on, cut
    before the row's case was opened, while the case was not under a legal hold (as the case's
    own rows in the bundle tell). Records written before they listed their rows cover by
    presence only."""
    opened: dict[int, str] = {}
    held: set[int] = set()
    pending: dict[int, dict[str, Any]] = {}
    for seq, row in sorted(rows.items()):
        request = row["request"]
        if request is not None:
            opened.setdefault(request, row["at"])
            if row["kind"] == "legal_hold_placed":
                held.add(request)
            elif row["kind"] == "legal_hold_released":
                held.discard(request)
        if row["payload"] is None:
            pending[seq] = row
        elif row["kind"] == "purged":
            _cover(row, pending, opened, held)
    if pending:
        seq = min(pending)
        raise BundleError(
            f"row #{seq} ({pending[seq]['kind']}) has its payload purged, but no retention purge record "
            "in the bundle covers it"
        )


def _cover(record: dict[str, Any], pending: dict[int, dict[str, Any]], opened: dict[int, str], held: set[int]) -> None:
    payload, name = record["payload"], f"retention purge record #{record['seq']}"
    days, before = payload.get("retention_days"), str(payload.get("before", ""))
    if "rows" in payload:
        covered = [s for first, last in payload["rows"] for s in range(first, last + 1) if s in pending]
    else:
        covered = list(pending)
    for seq in covered:
        row = pending.pop(seq)
        if days is not None and (not isinstance(days, int) or days <= 0):
            raise BundleError(f"{name} purged row #{seq} with retention off")
        if days is not None:
            at = datetime.strptime(record["at"], TIME_FORMAT).replace(tzinfo=UTC)
            if datetime.strptime(before, TIME_FORMAT).replace(tzinfo=UTC) > at - timedelta(days=days):
                raise BundleError(f"{name} cut later than its retention of {days} days allows")
        if row["request"] in held:
            raise BundleError(f"row #{seq} was purged by {name} while request {row['request']} was under legal hold")
        # The times have one fixed-width format: as strings they sort as times do.
        if opened.get(row["request"], row["at"]) >= before:
            raise BundleError(f"row #{seq} was purged by {name}, but is not older than its cut ({before})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument(
        "--public-key",
        action="append",
        default=[],
        help="a key you trust: hex, or its SHA256:… fingerprint; repeat it for each key (after a rotation)",
    )
    parser.add_argument("--sha256", help="the bundle's SHA-256 as the export page shows it")
    args = parser.parse_args(argv)
    try:
        print(verify(args.bundle, public_keys=args.public_key, sha256=args.sha256))
    except BundleError as exc:
        print(f"FAILED: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
