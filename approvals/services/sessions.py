"""Sessions: a session the relay sits in opens, says things, and closes (cancelling what is
still pending in it, since nobody can answer it any more)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from approvals import events
from approvals.models import ApprovalRequest, AuditKind, ClientToken, ConversationLine, RealtimeSession
from approvals.services._common import BY_SESSION_END, DEFAULT_CANCEL_REASON, Status, on_commit, user_label
from approvals.services._transition import transition
from audit import writer

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def open_session(
    *,
    kind: str,
    label: str,
    metadata: dict[str, Any],
    client_token: ClientToken | None = None,
    model: str = "",
    call_id: str = "",
    started_by: User | None = None,
    external_id: str = "",
) -> RealtimeSession:
    """Record a session the relay now sits in, named by `label`/`metadata` (copied from the
    client token by the caller). `started_by`: the staff member who started it (a browser
    call's secret, a Responses run), who then never decides its requests (check_may_decide).
    Side effects: audit SESSION_OPENED, the token's last_used_at. Raises ValueError on an
    unknown kind."""
    if kind not in RealtimeSession.Kind.values:
        raise ValueError(f"Unknown session kind {kind!r}")
    now = timezone.now()
    with transaction.atomic():
        session = RealtimeSession.objects.create(
            kind=kind,
            label=label,
            metadata=metadata or {},
            client_token=client_token,
            model=model,
            call_id=call_id,
            opened_at=now,
            started_by=started_by,
            started_by_label=user_label(started_by)[:150] if started_by is not None else "",
            external_id=external_id,
        )
        if client_token is not None:
            # A one-column UPDATE rather than save(): an admin editing the token's label at
            # the same moment keeps their edit.
            ClientToken.objects.filter(pk=client_token.pk).update(last_used_at=now)
        writer.record(
            kind=AuditKind.SESSION_OPENED,
            session=session,
            actor_label=label,
            payload={
                "kind": kind,
                "label": label,
                "metadata": session.metadata,
                "model": model,
                "call_id": call_id,
                "client_token_id": client_token.pk if client_token is not None else None,
                "started_by": started_by.pk if started_by is not None else None,
                **({"external_id": external_id} if external_id else {}),
            },
            created_at=now,
        )
    return session


def lock_pending_requests(session: RealtimeSession) -> None:
    """Inside a transaction: lock the session's pending request rows, in id order, before
    anything writes to the audit chain (every transition takes its row first and the chain head
    last; the other order would deadlock against a decision)."""
    list(
        ApprovalRequest.objects.filter(session_id=session.pk)
        .pending()
        .select_for_update()
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def close_session(session: RealtimeSession, *, code: int | None, reason: str) -> list[ApprovalRequest]:
    """Mark the session closed and cancel its pending requests (their upstream socket is gone,
    so nobody can answer them). Idempotent. Side effects: audit SESSION_CLOSED once and
    CANCELLED per request; dashboard events after commit. Returns the requests cancelled now."""
    now = timezone.now()
    request_reason = reason or DEFAULT_CANCEL_REASON
    cancelled: list[ApprovalRequest] = []
    with transaction.atomic():
        # Lock the session's pending requests before anything writes to the audit chain: every
        # transition takes its own row lock first and the chain-head lock last (approvals/audit.py).
        # Without this, a close holding the head while waiting for a request row, and a decision
        # holding that row while waiting for the head, would deadlock.
        lock_pending_requests(session)
        # Decided, but the answer never went upstream, and now it never can (a Realtime
        # session is gone with its socket): named in the close's audit row, so the case says so.
        undelivered = list(
            ApprovalRequest.objects.unsent_decisions().filter(session_id=session.pk).values_list("pk", flat=True)
        )
        # Conditional: only the first close is recorded (the relay may close on an error path
        # and again in disconnect()).
        closed = RealtimeSession.objects.filter(pk=session.pk, status=RealtimeSession.Status.OPEN).update(
            status=RealtimeSession.Status.CLOSED, closed_at=now, close_code=code
        )
        if closed:
            payload: dict[str, Any] = {"code": code, "reason": reason}
            if undelivered:
                payload["undelivered"] = undelivered
            writer.record(
                kind=AuditKind.SESSION_CLOSED,
                session_id=session.pk,
                actor_label=session.label,
                payload=payload,
                created_at=now,
            )
        # Also on a repeated close: a request that slipped in after the first one must not
        # stay pending forever.
        for req in ApprovalRequest.objects.filter(session_id=session.pk).pending():
            if _cancel_request(req, now=now, reason=request_reason, code=code):
                cancelled.append(req)
    session.refresh_from_db(fields=["status", "closed_at", "close_code"])
    return cancelled


def _cancel_request(req: ApprovalRequest, *, now: datetime, reason: str, code: int | None) -> bool:
    # Conditional on pending: a decision that won the race a moment ago stays what it is.
    return transition(
        req,
        to=Status.CANCELLED,
        fields={"decided_at": now, "decided_by_label": BY_SESSION_END, "reason": reason},
        rows=[
            {
                "kind": AuditKind.CANCELLED,
                "actor_label": BY_SESSION_END,
                "payload": {"reason": reason, "code": code},
            }
        ],
        now=now,
    )


LAPSED_REASON = "The relay process holding the session stopped (its lease ran out)."


def hold_sessions(session_ids: Iterable[int], *, holder: str, seconds: float) -> list[int]:
    """Renew the leases of open sessions a relay process holds (`holder`: its host:pid) for
    `seconds` from now, in one UPDATE. Returns the ids renewed: an id missing was closed under
    its holder (by the sweep, when the holder was too slow), and the holder ends it. Not audited:
    a heartbeat changes nothing anyone decides on; the session's close is audited."""
    ids = list(session_ids)
    if not ids:
        return []
    expires = timezone.now() + timedelta(seconds=seconds)
    open_ones = RealtimeSession.objects.filter(pk__in=ids, status=RealtimeSession.Status.OPEN)
    if open_ones.update(lease_holder=holder[:100], lease_expires_at=expires) == len(ids):
        return ids
    return list(open_ones.values_list("pk", flat=True))


def close_lapsed_sessions(*, now: datetime | None = None) -> list[int]:
    """The sweep (beat): close every open session whose lease ran out, i.e. whose relay process
    died, and cancel its pending requests, through close_session (audited, one transition per
    request). A decision committed for it but never sent upstream stays what staff decided: a
    Realtime session cannot be resumed on a new socket, so it can never be delivered; the
    SESSION_CLOSED row names those requests (`undelivered`). Returns the ids closed now."""
    now = now or timezone.now()
    closed: list[int] = []
    lapsed = RealtimeSession.objects.filter(status=RealtimeSession.Status.OPEN, lease_expires_at__lt=now)
    for session in lapsed.order_by("pk"):
        # Claimed with a conditional UPDATE: a holder that renewed since the read keeps it.
        if not RealtimeSession.objects.filter(pk=session.pk, lease_expires_at__lt=now).update(lease_expires_at=None):
            continue
        close_session(session, code=None, reason=LAPSED_REASON)
        closed.append(session.pk)
    return closed


def add_conversation_line(*, session: RealtimeSession, role: str, text: str, item_id: str = "") -> ConversationLine:
    """Keep a line of what the guest or the assistant said, for the cards and the case.
    Side effect: after commit, the cards of the session's pending requests are re-sent so
    their conversation stays live. Raises ValueError on an unknown role."""
    if role not in ConversationLine.Role.values:
        raise ValueError(f"Unknown conversation role {role!r}")
    with transaction.atomic():
        line = ConversationLine.objects.create(session=session, role=role, text=text, item_id=item_id)
        on_commit(partial(events.session_requests_changed, session.pk))
    return line
