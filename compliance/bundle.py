"""Evidence bundles: the audit rows of a search's requests, the chain from the first of them to
a signed checkpoint, the checkpoints and every public key that signed them, in one zip that
`python -m compliance.verify_bundle` checks offline. Format in docs/compliance.md."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.http import QueryDict
from django.utils import timezone

from audit import chain, signing
from audit.models import AuditEvent, Checkpoint
from audit.sealing import ensure_sealed
from compliance.models import AuditKind, Export
from compliance.search import SearchForm

# 2: checkpoints may be signed by several keys (rotation), listed in the manifest's
# "checkpoint_keys". verify_bundle still reads 1, where the manifest's key signed everything.
FORMAT = "countersign-audit-bundle/2"
PROGRESS_EVERY = 500


class UntrustedKeyError(Exception):
    pass


def export_path(name: str) -> Path:
    return Path(settings.AUDIT_EXPORT_DIR) / name


def _line(value: Any) -> bytes:
    return chain.canonical(value) + b"\n"


def write(export: Export) -> str:
    """Write export-<pk>.zip and return its file name; progress goes to export.done/total."""
    # Seal first, so that every row of the bundle is covered by a checkpoint.
    ensure_sealed()
    checkpoint = Checkpoint.objects.order_by("-seq").first()
    last_seq = checkpoint.seq if checkpoint else 0
    query = QueryDict(mutable=True)
    query.update(export.query)
    requests = SearchForm(query).queryset().order_by().values("pk")
    # The rows of the requests, and the retention purge records that emptied any of them (the
    # verifier checks each purged row against its record: verify_bundle.py).
    of_requests = AuditEvent.objects.filter(request_id__in=requests, seq__lte=last_seq)
    purge_times = of_requests.filter(payload_purged_at__isnull=False).values("payload_purged_at")
    events = AuditEvent.objects.filter(
        Q(request_id__in=requests) | Q(kind=AuditKind.PURGED, created_at__in=purge_times), seq__lte=last_seq
    ).order_by("seq")
    total = events.count()
    first = events.values_list("seq", "prev_hash").first()
    first_seq, anchor = first if first else (last_seq + 1, "")
    chain_length = max(0, last_seq - first_seq + 1)
    checkpoints = list(Checkpoint.objects.filter(seq__gte=min(first_seq, last_seq), seq__lte=last_seq))
    public_key = signing.public_key_raw()
    # Every key a checkpoint of the bundle names, oldest first: the verifier checks each
    # checkpoint against its own key and prints these fingerprints for the reviewer to compare
    # with the published ones. The manifest's signature then says "this installation trusted
    # them", so a key it does not trust is refused rather than vouched for.
    signers = list(dict.fromkeys(bytes.fromhex(c.public_key) for c in checkpoints))
    trusted = signing.trusted_public_keys()
    for key in signers:
        if key not in trusted:
            seq = next(c.seq for c in checkpoints if c.public_key == key.hex())
            raise UntrustedKeyError(
                f"checkpoint #{seq} is signed by a key that is not trusted: {chain.key_fingerprint(key)}; "
                "add its public key to AUDIT_TRUSTED_PUBLIC_KEYS if it was a legitimate earlier key"
            )
    Export.objects.filter(pk=export.pk).update(total=total + chain_length, done=0)

    directory = Path(settings.AUDIT_EXPORT_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"export-{export.pk}.zip"
    partial_path = directory / f".{name}.partial"
    digests: dict[str, str] = {}
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if done % PROGRESS_EVERY == 0:
            Export.objects.filter(pk=export.pk).update(done=done)

    request_ids: set[int] = set()
    with zipfile.ZipFile(partial_path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        digest = hashlib.sha256()
        with z.open("rows.jsonl", "w") as f:
            for event in events.iterator(chunk_size=2000):
                line = _line(event.to_chain_dict())
                digest.update(line)
                f.write(line)
                if event.request_id is not None:
                    request_ids.add(event.request_id)
                progress(1)
        digests["rows.jsonl"] = digest.hexdigest()

        digest = hashlib.sha256()
        with z.open("chain.jsonl", "w") as f:
            segment = AuditEvent.objects.filter(seq__gte=first_seq, seq__lte=last_seq).order_by("seq")
            for seq, content in segment.values_list("seq", "content_hash").iterator(chunk_size=5000):
                line = _line({"seq": seq, "content_sha256": content})
                digest.update(line)
                f.write(line)
                progress(1)
        digests["chain.jsonl"] = digest.hexdigest()

        data = b"".join(_line(c.to_dict()) for c in checkpoints)
        z.writestr("checkpoints.jsonl", data)
        digests["checkpoints.jsonl"] = hashlib.sha256(data).hexdigest()

        manifest = chain.canonical(
            {
                "format": FORMAT,
                "created_at": chain.format_time(timezone.now()),
                "export_id": export.pk,
                "requested_by": export.requested_by.get_username(),
                "search": export.query,
                "requests": len(request_ids),
                "rows": total,
                "first_seq": first_seq,
                "last_seq": last_seq,
                "anchor_sha256": anchor,
                "public_key": public_key.hex(),
                "public_key_fingerprint": chain.key_fingerprint(public_key),
                "checkpoint_keys": [{"public_key": k.hex(), "fingerprint": chain.key_fingerprint(k)} for k in signers],
                "files": digests,
            }
        )
        z.writestr("manifest.json", manifest)
        z.writestr("manifest.sig", signing.sign(manifest).hex())
    os.replace(partial_path, directory / name)
    Export.objects.filter(pk=export.pk).update(done=total + chain_length)
    return name
