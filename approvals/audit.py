"""The one writer of the audit trail. Every AuditEvent is created by record(), inside the
transaction of the change it records, as the next link of the hash chain (compliance/chain.py).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from approvals.models import ApprovalRequest, AuditChainHead, AuditEvent, RealtimeSession
from compliance import chain

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

HEAD_PK = 1


def _locked_head() -> AuditChainHead:
    # The chain lock. The head row stays locked until the caller's transaction ends, so a second
    # writer waits here and then reads the head the first one committed: one tail, no fork. (On
    # SQLite, select_for_update is a no-op, and BEGIN IMMEDIATE already serialises writers.)
    # Lock order: callers take their own row locks first (the conditional UPDATE), the head last,
    # so two transitions can never wait on each other in a cycle (see services.close_session).
    head = AuditChainHead.objects.select_for_update().filter(pk=HEAD_PK).first()
    if head is None:
        # First event ever, or a test flushed the tables: start from the last row if any, never
        # from genesis while rows exist (that would fork; the unique seq would refuse it anyway).
        last = AuditEvent.objects.order_by("-seq").first()
        AuditChainHead.objects.bulk_create(
            [
                AuditChainHead(
                    pk=HEAD_PK, seq=last.seq if last else 0, row_hash=last.row_hash if last else chain.GENESIS
                )
            ],
            ignore_conflicts=True,  # a concurrent first writer created it: fine, lock theirs
        )
        head = AuditChainHead.objects.select_for_update().get(pk=HEAD_PK)
    return head


def record(
    *,
    kind: str,
    request: ApprovalRequest | None = None,
    request_id: int | None = None,
    session: RealtimeSession | None = None,
    session_id: int | None = None,
    actor: AbstractBaseUser | None = None,
    actor_label: str = "",
    payload: dict[str, Any] | None = None,
    created_at: datetime | None = None,
) -> AuditEvent:
    """Append one event to the audit chain. Call it inside the transaction of the change it
    records: it holds the chain lock until that transaction ends. `payload` must be JSON data."""
    if request is not None:
        request_id = request.pk
    if session is not None:
        session_id = session.pk
    created_at = created_at or timezone.now()
    # Stored exactly as hashed: what is read back later must hash the same (tuples → lists, …).
    stored_payload = json.loads(chain.canonical(payload or {}))
    p_hash = chain.payload_hash(stored_payload)
    actor_id = actor.pk if actor is not None else None
    with transaction.atomic():
        head = _locked_head()
        seq = head.seq + 1
        c_hash = chain.content_hash(
            seq=seq,
            kind=str(kind),
            at=chain.format_time(created_at),
            request=request_id,
            session=session_id,
            actor=actor_id,
            actor_label=actor_label,
            payload_sha256=p_hash,
        )
        r_hash = chain.row_hash(head.row_hash, c_hash)
        event = AuditEvent.objects.create(
            kind=str(kind),
            request_id=request_id,
            session_id=session_id,
            actor_id=actor_id,
            actor_label=actor_label,
            payload=stored_payload,
            created_at=created_at,
            seq=seq,
            payload_hash=p_hash,
            content_hash=c_hash,
            prev_hash=head.row_hash,
            row_hash=r_hash,
        )
        AuditChainHead.objects.filter(pk=HEAD_PK).update(seq=seq, row_hash=r_hash)
    return event
