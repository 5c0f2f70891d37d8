"""Channel-layer groups and event shapes: the only module that knows them (house rule 10).

Events are hints, sent at most once: a dashboard re-reads a snapshot when it (re)connects and
the relay re-reads its outbox, so a lost event never loses a decision. That is why the
helpers below log and swallow channel-layer errors instead of failing the caller: they run
after commit, when the database already holds the truth.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from approvals.models import ApprovalRequest

logger = logging.getLogger(__name__)

# Every staff dashboard joins this group.
DASHBOARD = "approvals.dashboard"
# Message types (the consumer handler is the type with "." replaced by "_").
REQUEST_CHANGED = "approvals.request_changed"
RELAY_DECISION = "relay.decision"


def session_group(session_id: int) -> str:
    """The group of the one process that holds this session's upstream socket."""
    return f"relay.session.{session_id}"


def request_changed_message(request_dict: dict[str, Any], *, audience: str = "") -> dict[str, Any]:
    # The browser frame is serialised once here, not once per dashboard: with a hundred staff
    # screens open that is a hundred json.dumps less on the event loop that relays voice.
    # `audience` (ApprovalRequest.audience: "" = any staff, else ",group,…,") lets each
    # dashboard consumer keep the frame from people who may not decide the request.
    frame = json.dumps({"type": "request_changed", "request": request_dict}, separators=(",", ":"))
    return {"type": REQUEST_CHANGED, "frame": frame, "id": request_dict["id"], "audience": audience}


def request_removed_frame(request_id: int) -> str:
    """For a dashboard whose person may no longer decide the request (it escalated away)."""
    return json.dumps({"type": "request_removed", "id": request_id}, separators=(",", ":"))


def relay_decision_message(request_id: int, decision: dict[str, Any] | None = None) -> dict[str, Any]:
    """`decision` ({"upstream_id", "approve", "reason"}), when given, is what the transaction that
    sends this message committed (it is sent only after that commit), so the relay may send it
    upstream without reading it back; the outbox read stays the fallback."""
    message: dict[str, Any] = {"type": RELAY_DECISION, "request_id": request_id}
    if decision is not None:
        message["decision"] = decision
    return message


def _group_send(group: str, message: dict[str, Any]) -> bool:
    layer = get_channel_layer()
    if layer is None:
        logger.warning("No channel layer configured: %s to %s not sent", message["type"], group)
        return False
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        # The DB is the truth and every listener re-syncs from it; a broken Redis must not
        # turn a committed decision into a 500 for the person who made it.
        logger.exception("Channel layer error: %s to %s not sent", message["type"], group)
        return False
    return True


def request_changed(request_id: int) -> bool:
    """Tell every dashboard the request's current state (reloaded now, so it is never staler
    than the commit that triggered it)."""
    req = ApprovalRequest.objects.for_one().filter(pk=request_id).first()
    if req is None:
        return False
    return send_request(req)


def send_request(req: ApprovalRequest) -> bool:
    """Tell every dashboard this request's state (`req` loaded with for_one() or for_display())."""
    return _group_send(DASHBOARD, request_changed_message(req.to_dict(), audience=req.audience))


def relay_decision(*, session_id: int, request_id: int, decision: dict[str, Any] | None = None) -> bool:
    """Nudge the relay holding the session: it sends the committed `decision` at once, or reads
    the outbox and sends what it finds."""
    return _group_send(session_group(session_id), relay_decision_message(request_id, decision))


def session_requests_changed(session_id: int) -> None:
    """Re-send the cards of a session's pending requests (e.g. a new conversation line)."""
    for pk in ApprovalRequest.objects.filter(session_id=session_id).pending().values_list("pk", flat=True):
        request_changed(pk)
