"""The outbox, seen from the bridge: decisions that must go upstream, each sent once.

A decided request keeps `decision_sent_at` NULL until it has been handed to the upstream
socket. Only the one consumer that holds a session's upstream socket can send for it, and it
sends one decision at a time under a lock, remembering in memory what it sent; so it takes the
decision, sends it, and only then marks it sent (`services.mark_decision_sent`, a conditional
UPDATE with its audit row). The write is off the path a waiting guest feels, and nothing is sent
twice: a poll that runs before the mark commits finds the id in memory.

Where the decision comes from: the nudge that follows a committed decision carries it (the values
that transaction wrote, sent only after its commit: `from_nudge`), so the relay sends at once;
the database read (`unsent`) is the fallback for a bare nudge, the periodic poll and a reattach,
so a lost or garbled nudge delays an answer but never loses it.

If the process dies between send and mark: for a relayed `?model=` session its upstream socket,
and with it the session (which belongs to its socket), dies too, so there is nobody left to send
to. A SIP or WebRTC call outlives a bridge restart, and the restarted bridge sends that answer
again: at least once, never lost. That is the right side to err on for a caller waiting in
silence (a repeated answer to an answered request changes nothing); the window is the few
milliseconds between a send and its commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone

from approvals import services
from approvals.models import ApprovalRequest


@dataclass(frozen=True)
class Decision:
    request_id: int
    approval_request_id: str
    approve: bool
    reason: str


def from_nudge(message: dict[str, Any]) -> Decision | None:
    """The decision a relay.decision message carries (approvals.events), or None for a bare nudge
    or one that does not have the expected shape (then the caller reads the outbox)."""
    carried = message.get("decision")
    request_id = message.get("request_id")
    if not isinstance(carried, dict) or not isinstance(request_id, int):
        return None
    upstream_id, approve, reason = carried.get("upstream_id"), carried.get("approve"), carried.get("reason")
    if not isinstance(upstream_id, str) or not isinstance(approve, bool) or not isinstance(reason, str):
        return None
    return Decision(request_id=request_id, approval_request_id=upstream_id, approve=approve, reason=reason)


def unsent(session_id: int) -> list[Decision]:
    """The session's decided requests whose answer has not gone upstream yet, oldest first."""
    return [
        Decision(request_id=r.pk, approval_request_id=r.upstream_id, approve=bool(r.approve), reason=r.reason)
        for r in ApprovalRequest.objects.unsent_decisions().filter(session_id=session_id)
    ]


# A deadline the Celery worker missed (killed and restarting, its broker gone) is applied by the
# relay that waits for the answer, this long after the deadline: the countdown task and the beat
# sweep normally come first, and all three call the same idempotent service, so whoever comes
# first decides and the others find nothing to do. Deadlines thus fire within deadline + 5 s while
# either a worker or the relay lives.
DEADLINE_BACKSTOP = timedelta(seconds=2)


def expire_missed_deadlines(session_id: int) -> int:
    """Apply the deadlines of this session's pending requests that are DEADLINE_BACKSTOP overdue.
    Returns how many it applied (0 when the worker kept up: one indexed query)."""
    overdue = (
        ApprovalRequest.objects.pending()
        .filter(session_id=session_id, deadline__lte=timezone.now() - DEADLINE_BACKSTOP)
        .values_list("pk", flat=True)
    )
    return sum(1 for pk in list(overdue) if services.expire_request(pk) is not None)


def mark_sent(request_ids: list[int]) -> None:
    for req in ApprovalRequest.objects.filter(pk__in=request_ids):
        services.mark_decision_sent(req)
