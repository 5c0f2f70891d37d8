"""Sealing the audit chain: signing its current head into a Checkpoint (docs/compliance.md).

On its own so that it can move down with the chain (the `audit` app); compliance.services still
exports it for its callers (seal_audit, the beat task, the bundle)."""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals.models import AuditChainHead
from compliance import chain, signing
from compliance.models import Checkpoint


def ensure_sealed(*, now: datetime | None = None) -> Checkpoint | None:
    """Sign the chain's current head and store the checkpoint. A no-op (None) when the head is
    already sealed or the chain is empty. Raises ImproperlyConfigured without AUDIT_SIGNING_KEY."""
    now = now or timezone.now()
    # No lock: the committed head always names a committed row (record() moves both together),
    # so whatever head this reads is a real, complete prefix of the chain.
    head = AuditChainHead.objects.filter(pk=1).first()
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
