"""The one writer of the audit trail. Every AuditEvent is created by record(), inside the
transaction of the change it records, as the next link of the hash chain (audit/chain.py).
Nothing listens to the rows it writes: what a change sets off is the changing service's business.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import models, transaction
from django.utils import timezone

from audit import chain
from audit.models import AuditChainHead, AuditEvent

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

HEAD_PK = 1


def _locked_head() -> AuditChainHead:
    # The chain lock. The head row stays locked until the caller's transaction ends, so a second
    # writer waits here and then reads the head the first one committed: one tail, no fork. (On
    # SQLite, select_for_update is a no-op, and BEGIN IMMEDIATE already serialises writers.)
    # Lock order: callers take their own row locks first (the conditional UPDATE), the head last,
    # so two transitions can never wait on each other in a cycle (see approvals.services.close_session).
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
    request: models.Model | None = None,
    request_id: int | None = None,
    session: models.Model | None = None,
    session_id: int | None = None,
    actor: AbstractBaseUser | None = None,
    actor_label: str = "",
    payload: dict[str, Any] | None = None,
    created_at: datetime | None = None,
) -> AuditEvent:
    """Append one event to the audit chain. Call it inside the transaction of the change it
    records: it holds the chain lock until that transaction ends. `request` and `session` are an
    approvals.ApprovalRequest and RealtimeSession (or give their ids); `kind` a registered kind
    (audit/kinds.py). `payload` must be JSON data."""
    (event,) = record_many(
        [
            {
                "kind": kind,
                "request": request,
                "request_id": request_id,
                "session": session,
                "session_id": session_id,
                "actor": actor,
                "actor_label": actor_label,
                "payload": payload,
                "created_at": created_at,
            }
        ]
    )
    return event


def record_many(entries: list[dict[str, Any]]) -> list[AuditEvent]:
    """Append several events, in this order, under one take of the chain lock (each entry has
    the keyword arguments of record()). One change that writes several rows (a request routed
    and decided by a policy at once) costs one lock, one INSERT and one head update."""
    # No savepoint of its own: inside the caller's transaction a failure here must fail that
    # whole change anyway (no change without its audit row), and a savepoint would only add two
    # statements to every transition. Outside one, this is the transaction.
    with transaction.atomic(savepoint=False):
        head = _locked_head()
        seq, prev = head.seq, head.row_hash
        rows = []
        for entry in entries:
            request, session, actor = entry.get("request"), entry.get("session"), entry.get("actor")
            request_id = request.pk if request is not None else entry.get("request_id")
            session_id = session.pk if session is not None else entry.get("session_id")
            actor_id = actor.pk if actor is not None else None
            created_at = entry.get("created_at") or timezone.now()
            # Stored exactly as hashed: what is read back later must hash the same (tuples → lists, …).
            stored_payload = json.loads(chain.canonical(entry.get("payload") or {}))
            p_hash = chain.payload_hash(stored_payload)
            seq += 1
            kind, actor_label = str(entry["kind"]), entry.get("actor_label") or ""
            c_hash = chain.content_hash(
                seq=seq,
                kind=kind,
                at=chain.format_time(created_at),
                request=request_id,
                session=session_id,
                actor=actor_id,
                actor_label=actor_label,
                payload_sha256=p_hash,
            )
            r_hash = chain.row_hash(prev, c_hash)
            rows.append(
                AuditEvent(
                    kind=kind,
                    request_id=request_id,
                    session_id=session_id,
                    actor_id=actor_id,
                    actor_label=actor_label,
                    payload=stored_payload,
                    created_at=created_at,
                    seq=seq,
                    payload_hash=p_hash,
                    content_hash=c_hash,
                    prev_hash=prev,
                    row_hash=r_hash,
                )
            )
            prev = r_hash
        if len(rows) == 1:
            rows[0].save(force_insert=True)
        else:
            AuditEvent.objects.bulk_create(rows)
        AuditChainHead.objects.filter(pk=HEAD_PK).update(seq=seq, row_hash=prev)
    return rows
