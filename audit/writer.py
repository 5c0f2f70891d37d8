"""The one writer of the audit trail. Every AuditEvent is created by record(), inside the
transaction of the change it records, as the next link of the hash chain (audit/chain.py).
Nothing listens to the rows it writes: what a change sets off is the changing service's business.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connection, models, transaction
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
        rows = [_prepare(entry) for entry in entries]
        if connection.vendor == "postgresql" and rows:
            if not _append_in_one_statement(rows):
                _locked_head()  # the head row's first creation: then the one statement as always
                if not _append_in_one_statement(rows):
                    raise RuntimeError("the audit chain's head row is missing")
            return rows
        head = _locked_head()
        seq, prev = head.seq, head.row_hash
        for row in rows:
            seq += 1
            row.seq, row.prev_hash = seq, prev
            row.content_hash = chain.content_hash(
                seq=seq,
                kind=row.kind,
                at=chain.format_time(row.created_at),
                request=row.request_id,
                session=row.session_id,
                actor=row.actor_id,
                actor_label=row.actor_label,
                payload_sha256=row.payload_hash,
            )
            row.row_hash = prev = chain.row_hash(prev, row.content_hash)
        if len(rows) == 1:
            rows[0].save(force_insert=True)
        else:
            AuditEvent.objects.bulk_create(rows)
        AuditChainHead.objects.filter(pk=HEAD_PK).update(seq=seq, row_hash=prev)
    return rows


def _prepare(entry: dict[str, Any]) -> AuditEvent:
    """The row of one entry, everything but its place in the chain (seq and the three hashes
    that depend on it)."""
    request, session, actor = entry.get("request"), entry.get("session"), entry.get("actor")
    # Stored exactly as hashed: what is read back later must hash the same (tuples → lists, …).
    stored_payload = json.loads(chain.canonical(entry.get("payload") or {}))
    return AuditEvent(
        kind=str(entry["kind"]),
        request_id=request.pk if request is not None else entry.get("request_id"),
        session_id=session.pk if session is not None else entry.get("session_id"),
        actor_id=actor.pk if actor is not None else None,
        actor_label=entry.get("actor_label") or "",
        payload=stored_payload,
        created_at=entry.get("created_at") or timezone.now(),
        payload_hash=chain.payload_hash(stored_payload),
    )


# Any seq would do: the canonical content is cut around its digits, and the database puts the
# row's real seq between the two halves (audit migration 0003).
_SEQ_MARK = 987654321987654321


def _append_in_one_statement(rows: list[AuditEvent]) -> bool:
    """PostgreSQL: lock the head, chain and insert `rows` and move the head in one statement
    (countersign_audit_append, audit migration 0003), so that the chain lock is held for that
    statement and the commit that follows, not for a round trip per statement. Fills in each
    row's id, seq and hashes. False (nothing written) when the head row does not exist yet."""
    entries = []
    for row in rows:
        content = chain.canonical(
            {
                "v": chain.FORMAT_VERSION,
                "seq": _SEQ_MARK,
                "kind": row.kind,
                "at": chain.format_time(row.created_at),
                "request": row.request_id,
                "session": row.session_id,
                "actor": row.actor_id,
                "actor_label": row.actor_label,
                "payload_sha256": row.payload_hash,
            }
        ).decode()
        # Keys are sorted and strings escape their quotes, so `"seq":<mark>` occurs once.
        before, after = content.split(f'"seq":{_SEQ_MARK}')
        entries.append(
            {
                "kind": row.kind,
                "request_id": row.request_id,
                "session_id": row.session_id,
                "actor_id": row.actor_id,
                "actor_label": row.actor_label,
                "payload": row.payload,
                "created_at": row.created_at.isoformat(),
                "payload_hash": row.payload_hash,
                "before": before + '"seq":',
                "after": after,
            }
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM countersign_audit_append(%s::jsonb)", [json.dumps(entries)])
        written = cursor.fetchall()
    if not written:
        return False
    for row, (pk, seq, content_hash, prev_hash, row_hash) in zip(rows, written, strict=True):
        row.pk, row.seq, row.content_hash, row.prev_hash, row.row_hash = pk, seq, content_hash, prev_hash, row_hash
        row._state.adding, row._state.db = False, connection.alias
    return True
