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
from typing import Any

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


def mark_sent(request_ids: list[int]) -> None:
    for req in ApprovalRequest.objects.filter(pk__in=request_ids):
        services.mark_decision_sent(req)
