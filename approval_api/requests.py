"""Approval requests made over the API: the same services, policy, groups, quorum, deadlines,
notifications and audit as a Realtime session's, in a session of kind `api` named after the
client token (and the caller's own session id, when it gives one)."""

from __future__ import annotations

import json
import secrets
from typing import Any

from django.db import IntegrityError, transaction

from approvals import services
from approvals.models import ApprovalRequest, ClientToken, RealtimeSession


def api_session(token: ClientToken, *, external_id: str, label: str, metadata: dict[str, Any]) -> RealtimeSession:
    """The open API session of `token` with the caller's id `external_id` (a new one when there
    is none, or for every request when the caller gives no id)."""
    if external_id:
        found = RealtimeSession.objects.filter(
            client_token=token, external_id=external_id, kind=RealtimeSession.Kind.API
        ).first()
        if found is not None:
            return found
    try:
        with transaction.atomic():
            return services.open_session(
                kind=RealtimeSession.Kind.API,
                label=(label or token.label)[:100],
                metadata={**token.metadata, **metadata},
                client_token=token,
                external_id=external_id,
            )
    except IntegrityError:
        # Another request of the same caller session opened it a moment ago.
        return RealtimeSession.objects.get(client_token=token, external_id=external_id)


def create(
    token: ClientToken,
    *,
    server: str,
    tool: str,
    arguments: dict[str, Any],
    session: dict[str, Any],
    requester: dict[str, Any],
) -> ApprovalRequest:
    """Ask: the request goes through the policy like any other (it may be allowed or denied at
    once) and waits for staff otherwise. Raises services.TransitionError if the caller's
    session was closed."""
    metadata = dict(session.get("metadata") or {})
    if requester.get("name"):
        metadata["requester"] = requester["name"]
    sess = api_session(
        token, external_id=str(session.get("id") or ""), label=str(session.get("label") or ""), metadata=metadata
    )
    if sess.status != RealtimeSession.Status.OPEN:
        raise services.TransitionError("This session is closed: open a new one (another session id).")
    upstream_id = "apr_" + secrets.token_hex(12)
    req, _ = services.open_request(
        session=sess,
        upstream_id=upstream_id,
        server_label=server,
        tool_name=tool,
        arguments=json.dumps(arguments, ensure_ascii=False, separators=(",", ":")),
        raw_item={
            "type": "api_approval_request",
            "id": upstream_id,
            "server_label": server,
            "name": tool,
            "requester": requester,
            "via": token.label,
        },
    )
    return req


def of_token(token: ClientToken) -> Any:
    """The requests a token may see: those of its own sessions."""
    return ApprovalRequest.objects.filter(session__client_token=token).select_related("session")


def final(req: ApprovalRequest) -> bool:
    return req.status != ApprovalRequest.Status.PENDING


def to_api(req: ApprovalRequest) -> dict[str, Any]:
    """A request as the API shows it (never the MCP server's credentials, nor staff-only notes)."""
    session = req.session
    raw = req.raw_item if isinstance(req.raw_item, dict) else {}
    return {
        "id": req.pk,
        "status": req.status,
        "final": final(req),
        "approved": req.approve,
        "reason": req.reason,
        "server": req.server_label,
        "tool": req.tool_name,
        "arguments": req.parsed_arguments,
        "session": {"id": session.external_id or None, "label": session.label, "status": session.status},
        "requester": raw.get("requester") or {},
        "rule": req.rule_label,
        "created_at": req.created_at.isoformat(),
        "deadline": req.deadline.isoformat(),
        "decided_at": req.decided_at.isoformat() if req.decided_at else None,
        "decided_by": req.decided_by_label or None,
    }


def mark_read(req: ApprovalRequest) -> None:
    """The caller has the answer: recorded once, as the relay records an answer sent upstream."""
    if req.status in ApprovalRequest.ANSWERED and req.decision_sent_at is None:
        services.mark_decision_sent(req, via="approval API")
