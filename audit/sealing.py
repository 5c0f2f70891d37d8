"""Sealing: the chain's head signed with the audit key and stored as a checkpoint (audit/chain.py).
The beat task (compliance.tasks.seal_chain) and `manage.py seal_audit` call ensure_sealed().

Publishing: with AUDIT_CHECKPOINT_PUBLISH_DIR set, every checkpoint is also appended to
checkpoints.jsonl in that directory (one canonical JSON object a line, as Checkpoint.to_dict()),
which the operator ships out of the database's reach; verify_audit then names a published
checkpoint the database lost or changed (docs/compliance.md, "What the chain cannot see")."""

from __future__ import annotations

import fcntl
import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import chain, signing
from audit.models import AuditChainHead, Checkpoint
from audit.writer import HEAD_PK

logger = logging.getLogger(__name__)

PUBLISHED_FILE = "checkpoints.jsonl"


def ensure_sealed(*, now: datetime | None = None) -> Checkpoint | None:
    """Sign the chain's current head and store the checkpoint. A no-op (None) when the head is
    already sealed or the chain is empty. Raises ImproperlyConfigured without AUDIT_SIGNING_KEY.
    Then, with AUDIT_CHECKPOINT_PUBLISH_DIR set, publishes what is not published yet (a failure
    is logged, and retried at the next seal)."""
    checkpoint = _seal(now or timezone.now())
    if settings.AUDIT_CHECKPOINT_PUBLISH_DIR:
        try:
            publish(settings.AUDIT_CHECKPOINT_PUBLISH_DIR)
        except OSError:
            logger.exception("could not publish audit checkpoints to %s", settings.AUDIT_CHECKPOINT_PUBLISH_DIR)
    return checkpoint


def _seal(now: datetime) -> Checkpoint | None:
    # No lock: the committed head always names a committed row (record() moves both together),
    # so whatever head this reads is a real, complete prefix of the chain.
    head = AuditChainHead.objects.filter(pk=HEAD_PK).first()
    if head is None or head.seq == 0:
        return None
    if Checkpoint.objects.filter(seq__gte=head.seq).exists():
        return None
    message = chain.checkpoint_message(seq=head.seq, row_sha256=head.row_hash, sealed_at=chain.format_time(now))
    try:
        with transaction.atomic():
            return Checkpoint.objects.create(
                seq=head.seq,
                row_hash=head.row_hash,
                sealed_at=now,
                public_key=signing.public_key_raw().hex(),
                signature=signing.sign(message).hex(),
            )
    except IntegrityError:
        return None  # a concurrent beat sealed the same head: one checkpoint is enough


def publish(directory: str | Path) -> int:
    """Append every stored checkpoint after the last one in <directory>/checkpoints.jsonl to it,
    and flush it to disk. Returns how many were appended. Two sealers at once take turns (a
    file lock), so none is written twice."""
    path = Path(directory) / PUBLISHED_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        lines = f.read().splitlines()
        last = json.loads(lines[-1])["seq"] if lines else 0
        written = 0
        for checkpoint in Checkpoint.objects.filter(seq__gt=last).order_by("seq"):
            f.write(chain.canonical(checkpoint.to_dict()) + b"\n")
            written += 1
        f.flush()
        os.fsync(f.fileno())
    return written


def read_published(path: str | Path) -> list[dict[str, Any]]:
    """The checkpoints of a published file (checkpoints.jsonl, or the directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / PUBLISHED_FILE
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
