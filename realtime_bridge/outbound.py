"""The outbox, seen from the bridge: decisions that must go upstream, each claimed once.

A decided request keeps `decision_sent_at` NULL until a bridge claims it with a conditional
UPDATE (`services.mark_decision_sent`). Claim first, then send: whoever wins the claim is the
only one that sends, so two nudges, a poll and a reconnect can never send one decision twice.
If the process dies between claim and send, its upstream socket dies with it, and the session
(a `?model=` session belongs to its socket) is gone anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from approvals import services
from approvals.models import ApprovalRequest


@dataclass(frozen=True)
class Decision:
    request_id: int
    approval_request_id: str
    approve: bool
    reason: str


def pending_decisions(session_id: int) -> list[ApprovalRequest]:
    return list(ApprovalRequest.objects.unsent_decisions().filter(session_id=session_id))


def claim_unsent(session_id: int) -> list[Decision]:
    """Claim every decided-but-unsent request of the session; the caller must send them all."""
    claimed = []
    for req in pending_decisions(session_id):
        if services.mark_decision_sent(req):
            claimed.append(
                Decision(
                    request_id=req.pk,
                    approval_request_id=req.upstream_id,
                    approve=bool(req.approve),
                    reason=req.reason,
                )
            )
    return claimed
