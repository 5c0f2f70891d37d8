"""Stop: a staff member ends a guest's live session (issue 14).

The database is the truth and is written first: the session is closed, its pending requests are
cancelled (through `transition`, each with its audit row) and the audit names who stopped it and
why, all in one transaction. After commit the process that holds the session's sockets is told
over the channel layer (`events.relay_stop`, the group decisions use), and closes upstream and
the client with `STOPPED_CLOSE_CODE`. A stop that the relay never hears of (the channel layer is
at-most-once) leaves nothing pending: the requests are cancelled and the session is closed; only
the sockets stay open until the client or upstream ends them.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from approvals import events
from approvals.models import ApprovalRequest, AuditKind, RealtimeSession
from approvals.services._common import Status, on_commit, user_label
from approvals.services._transition import transition
from approvals.services.sessions import lock_pending_requests
from audit import writer

if TYPE_CHECKING:
    from django.contrib.auth.models import User

STOP_PERMISSION = "approvals.stop_session"
MAX_STOP_REASON_LENGTH = 500


class SessionNotStoppable(Exception):
    """The session cannot be stopped (it is closed already, or it is not a relayed session):
    nothing was changed. The message says why, for the person who tried."""


def check_may_stop(session: RealtimeSession, user: User) -> None:
    """Raise PermissionDenied unless `user` is active staff with approvals.stop_session
    (superusers have every permission). No side effects."""
    if not (user.is_active and user.is_staff and user.has_perm(STOP_PERMISSION)):
        raise PermissionDenied("You may not stop sessions: ask an administrator for the permission.")


def stop_session(session: RealtimeSession, *, by: User, reason: str) -> list[ApprovalRequest]:
    """End a live relayed session now. Preconditions: `by` may stop sessions (check_may_stop),
    `reason` says why (required, at most MAX_STOP_REASON_LENGTH), the session is open and relayed
    (a phone or browser call is hung up from its card instead).

    In one transaction: the session closed (close code STOPPED_CLOSE_CODE), audit SESSION_STOPPED
    naming `by` and the reason, SESSION_CLOSED, and each pending request cancelled (CANCELLED, by
    the same person). After commit: the relay holding it is told to close both sockets, and the
    dashboards get the session's cards. Returns the requests cancelled. Raises PermissionDenied,
    ValueError (reason), SessionNotStoppable; nothing is changed when it raises."""
    reason = _checked(session, by=by, reason=reason)
    who = user_label(by)
    now = timezone.now()
    request_reason = f"Stopped by {who}: {reason}"
    with transaction.atomic():
        # Request rows first, then the audit chain (as close_session does, for the same reason:
        # a decision holds its row and then takes the chain lock).
        lock_pending_requests(session)
        # Conditional: of a stop racing the session's own end (or another stop) one wins.
        won = RealtimeSession.objects.filter(pk=session.pk, status=RealtimeSession.Status.OPEN).update(
            status=RealtimeSession.Status.CLOSED, closed_at=now, close_code=events.STOPPED_CLOSE_CODE
        )
        if not won:
            raise SessionNotStoppable("This session has ended already.")
        writer.record_many(
            [
                {
                    "kind": AuditKind.SESSION_STOPPED,
                    "session_id": session.pk,
                    "actor": by,
                    "actor_label": who,
                    "payload": {"reason": reason},
                    "created_at": now,
                },
                {
                    "kind": AuditKind.SESSION_CLOSED,
                    "session_id": session.pk,
                    "actor": by,
                    "actor_label": who,
                    "payload": {"code": events.STOPPED_CLOSE_CODE, "reason": request_reason},
                    "created_at": now,
                },
            ]
        )
        cancelled = _cancel_pending(session, by=by, who=who, reason=request_reason, now=now)
        on_commit(partial(events.relay_stop, session_id=session.pk))
        on_commit(partial(events.session_requests_changed, session.pk, pending_only=False))
    session.refresh_from_db(fields=["status", "closed_at", "close_code"])
    return cancelled


def _checked(session: RealtimeSession, *, by: User, reason: str) -> str:
    """The stop's preconditions that need no lock; returns the reason, tidied."""
    check_may_stop(session, by)
    reason = " ".join(reason.split())
    if not reason:
        raise ValueError("Say why the session is stopped: the audit keeps it.")
    if len(reason) > MAX_STOP_REASON_LENGTH:
        raise ValueError(f"The reason is longer than {MAX_STOP_REASON_LENGTH} characters.")
    if session.kind != RealtimeSession.Kind.RELAY:
        raise SessionNotStoppable("Only a relayed session can be stopped here; hang up a call from its card.")
    return reason


def _cancel_pending(
    session: RealtimeSession, *, by: User, who: str, reason: str, now: datetime
) -> list[ApprovalRequest]:
    """Cancel the session's pending requests (locked by the caller), each through the one
    transition with its CANCELLED row naming `by`."""
    cancelled = []
    for req in ApprovalRequest.objects.filter(session_id=session.pk).pending():
        won = transition(
            req,
            to=Status.CANCELLED,
            fields={"decided_at": now, "decided_by_label": who, "reason": reason},
            rows=[
                {
                    "kind": AuditKind.CANCELLED,
                    "actor": by,
                    "actor_label": who,
                    "payload": {"reason": reason, "code": events.STOPPED_CLOSE_CODE, "stopped": True},
                }
            ],
            now=now,
        )
        if won:
            cancelled.append(req)
    return cancelled
