"""Verify an evidence bundle offline, without Countersign's database or Django:

    python -m compliance.verify_bundle export-12.zip [--public-key HEX_OR_FINGERPRINT]

Needs only this file, compliance/chain.py and the `cryptography` package. Prints OK and exits 0,
or prints the first thing that does not match and exits 1. Format: docs/compliance.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile
from typing import Any

from compliance import chain

FORMAT = "countersign-audit-bundle/1"


class BundleError(Exception):
    pass


def _jsonl(data: bytes, name: str) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in data.decode().splitlines() if line]
    except ValueError as exc:
        raise BundleError(f"{name} is not valid JSON Lines: {exc}") from None


def verify(path: str, *, public_key: str | None = None, sha256: str | None = None) -> str:
    """Raise BundleError naming the first problem; return a one-line summary when all is intact.
    `sha256`: the digest of the whole file shown on the export page; checked first when given."""
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
    if manifest.get("format") != FORMAT:
        raise BundleError(f"unknown bundle format {manifest.get('format')!r}")
    fingerprint = chain.key_fingerprint(key)
    if public_key and public_key not in (manifest["public_key"], fingerprint):
        raise BundleError(f"the bundle is signed by {fingerprint}, not by the key you trust")
    if not chain.verify_signature(key, signature, manifest_bytes):
        raise BundleError("the manifest's signature does not match")
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
    expected = first
    for link in links:
        seq = link["seq"]
        if seq != expected:
            raise BundleError(f"the chain jumps from #{expected - 1} to #{seq}")
        current = chain.row_hash(prev, link["content_sha256"])
        row = rows.get(seq)
        if row is not None and (row["content_sha256"], row["prev_sha256"], row["row_sha256"]) != (
            link["content_sha256"],
            prev,
            current,
        ):
            raise BundleError(f"row #{seq} ({row['kind']}) is not the row the chain holds at #{seq}")
        checkpoint = checkpoints.get(seq)
        if checkpoint is not None:
            if checkpoint["row_sha256"] != current:
                raise BundleError(f"the chain at #{seq} differs from its signed checkpoint")
            if bytes.fromhex(checkpoint["public_key"]) != key:
                raise BundleError(f"checkpoint #{seq} is signed by another key")
            message = chain.checkpoint_message(seq=seq, row_sha256=current, sealed_at=checkpoint["sealed_at"])
            if not chain.verify_signature(key, bytes.fromhex(checkpoint["signature"]), message):
                raise BundleError(f"checkpoint #{seq} has a bad signature")
        prev, expected = current, seq + 1
    if links and (expected - 1 != last or last not in checkpoints):
        raise BundleError(f"the chain segment does not end at the signed checkpoint #{last}")
    if rows and not links:
        raise BundleError("the bundle has rows but no chain to check them against")
    return (
        f"OK: {len(rows)} audit rows of {manifest['requests']} requests; chain #{first}..#{last} "
        f"matches checkpoint #{last}, signed by {fingerprint}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--public-key", help="the key you trust: hex, or its SHA256:… fingerprint")
    parser.add_argument("--sha256", help="the bundle's SHA-256 as the export page shows it")
    args = parser.parse_args(argv)
    try:
        print(verify(args.bundle, public_key=args.public_key, sha256=args.sha256))
    except BundleError as exc:
        print(f"FAILED: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
