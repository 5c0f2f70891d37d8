"""Approval requests: opened from an `mcp_approval_request` through the policy (which may decide
it at once), or recorded from an `mcp_call` that ran without one; then what happens around the
decision: shown to a person, sent upstream once, and the call that followed kept on the row.
Deciding is in decisions.py; every status change goes through `_transition.transition`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals import events, policy
from approvals.models import ApprovalRequest, AuditKind, ConversationLine, Grant, McpServer, RealtimeSession
from approvals.services import grants
from approvals.services._common import (
    Status,
    on_commit,
    user_label,
)
from approvals.services._transition import audience, transition
from audit import writer
from audit.models import AuditEvent

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


def _route(
    session: RealtimeSession, server_label: str, tool_name: str, arguments: str, now: datetime
) -> policy.Routing:
    """What the policy in force says about this call in this session now (drift included)."""
    return policy.current().route(
        policy.Call(
            server_label=server_label,
            tool_name=tool_name,
            arguments=arguments,
            session_label=session.label,
            session_kind=session.kind,
            metadata=session.metadata or {},
            at=now,
        ),
        drifted=policy.is_drifted(server_label, tool_name),
    )


def _call_output(item: dict[str, Any]) -> str | None:
    """An mcp_call item's output as stored: text as given, anything else as JSON."""
    output = item.get("output")
    return output if output is None or isinstance(output, str) else json.dumps(output)


def _insert_once(
    session: RealtimeSession, upstream_id: str, write: Callable[[], ApprovalRequest]
) -> tuple[ApprovalRequest, bool]:
    """Run `write` (a request row's insert, its audit rows, its after-commit work) in a
    savepoint: if a concurrent insert of the same (session, upstream_id) wins the unique
    constraint, only this insert rolls back, never the caller's transaction, and the row that
    won comes back with False. Anything else surfaces (e.g. the session row is gone)."""
    try:
        with transaction.atomic():
            return write(), True
    except IntegrityError:
        existing = ApprovalRequest.objects.filter(session=session, upstream_id=upstream_id).first()
        if existing is None:
            raise
        return existing, False


# Opening --------------------------------------------------------------------------------------


# What the assistant is told when a rule without a `reason` of its own decides at once.
ALLOWED_BY_POLICY = "The hotel's rules allow this."
DENIED_BY_POLICY = "The hotel's rules do not allow this."


def _routed_fields(routing: policy.Routing, now: datetime) -> dict[str, Any]:
    """The columns a new request takes from its routing: waiting for the first step's groups,
    or already decided by the rule."""
    first = routing.steps[0]
    fields: dict[str, Any] = {
        "rule_label": routing.rule,
        "policy_version": routing.version,
        "policy_outcome": routing.outcome,
        "plan": routing.plan(),
    }
    if routing.outcome == policy.ASK:
        fields.update(
            status=Status.PENDING,
            deadline=now + timedelta(seconds=first.seconds()),
            audience=audience(list(first.groups)),
            reached_audience=audience(list(first.groups) or ["*"]),
            quorum=first.quorum,
        )
        return fields
    approve = routing.outcome == policy.ALLOW
    fields.update(
        status=Status.APPROVED if approve else Status.DENIED,
        deadline=now,
        decided_at=now,
        decided_by_label=_by_policy(routing),
        # The reason goes upstream, where the assistant reads it out: the rule's own words for
        # the guest, else a plain sentence; never the rule's label (it is in the audit rows).
        reason=routing.reason or (ALLOWED_BY_POLICY if approve else DENIED_BY_POLICY),
    )
    return fields


def _by_policy(routing: policy.Routing) -> str:
    return f"policy ({routing.rule})" if routing.rule else "policy"


def _opening_rows(req: ApprovalRequest, routing: policy.Routing, raw_item: dict[str, Any]) -> list[dict[str, Any]]:
    """REQUESTED and POLICY_ROUTED, and DECIDED when the rule decided at once."""
    by_policy = _by_policy(routing)
    asks = routing.outcome == policy.ASK
    rows: list[dict[str, Any]] = [
        {
            "kind": AuditKind.REQUESTED,
            "actor_label": req.session.label,
            "payload": {"item": raw_item, "timeout_seconds": routing.steps[0].seconds() if asks else 0},
        },
        {
            "kind": AuditKind.POLICY_ROUTED,
            "actor_label": by_policy,
            "payload": {
                "outcome": routing.outcome,
                "rule": routing.rule or None,
                "version": routing.version,
                "summary": routing.summary(),
                "note": routing.note,
                "plan": req.plan,
            },
        },
    ]
    if not asks:
        rows.append(
            {
                "kind": AuditKind.DECIDED,
                "actor_label": by_policy,
                "payload": {"approve": routing.outcome == policy.ALLOW, "reason": req.reason, "rule": routing.rule},
            }
        )
    return rows


def open_request(
    *,
    session: RealtimeSession,
    upstream_id: str,
    server_label: str,
    tool_name: str,
    arguments: str,
    raw_item: dict[str, Any],
) -> tuple[ApprovalRequest, bool]:
    """Put an `mcp_approval_request` through the policy (approvals/policy.py): a rule may allow
    or deny it at once, else it waits in the queue of the groups the rule names, with the first
    step's deadline. Idempotent on (session, upstream_id): a replayed frame returns the existing
    row and False. Precondition: the session is open. Side effects: audit REQUESTED and
    POLICY_ROUTED (and DECIDED for allow/deny); after commit, for a pending request a dashboard
    event and the deadline task, for a decided one the relay nudge and a dashboard event."""
    # No look-up first: a replayed frame (rare) is caught by the unique constraint below, and
    # the one query fewer is on the path of every card.
    now = timezone.now()
    routing = _route(session, server_label, tool_name, arguments, now)
    server = McpServer.objects.filter(label=server_label).first()
    fields = _routed_fields(routing, now)
    fields["turn"] = _turn(session)
    # A live grant (an edited call, the tool for this session or guest) approves what the policy
    # would ask about, before anyone is asked. Never what a rule allows or denies at once.
    grant = (
        grants.find_grant(session=session, server_label=server_label, tool_name=tool_name, arguments=arguments, now=now)
        if routing.outcome == policy.ASK
        else None
    )

    def write() -> ApprovalRequest:
        req = ApprovalRequest.objects.create(
            session=session,
            upstream_id=upstream_id,
            mcp_server=server,
            server_label=server_label,
            tool_name=tool_name,
            arguments=arguments,
            raw_item=raw_item,
            created_at=now,
            **fields,
        )
        rows = _opening_rows(req, routing, raw_item)
        # Inside the savepoint: a one-time grant another call took first leaves this one asking.
        used = grants.take(grant, now=now) if grant is not None else None
        if grant is not None and used is not None:
            _approve_by_grant(req, grant, rows, now=now)
            rows.append(used)
        # Inside the savepoint: on a lost race the audit rows and the after-commit work are
        # dropped with the insert.
        transition(req, to=req.status, rows=rows, now=now, inserted=True)
        return req

    return _insert_once(session, upstream_id, write)


def _turn(session: RealtimeSession) -> str:
    """The model's turn a request belongs to: the session and its latest guest line (requests
    with no guest line between them came from one turn; Realtime items carry no response id)."""
    line = (
        ConversationLine.objects.filter(session=session, role=ConversationLine.Role.USER)
        .order_by("-created_at", "-pk")
        .values_list("pk", flat=True)
        .first()
    )
    return f"{session.pk}:{line or 0}"


def _approve_by_grant(req: ApprovalRequest, grant: Grant, rows: list[dict[str, Any]], *, now: datetime) -> None:
    """Turn a request that was about to ask into one approved at once by `grant` (already
    taken): its row (an UPDATE of the row just inserted, in the same savepoint) and its audit
    rows, the DECIDED row naming the grant and the decision that made it."""
    label = grants.grant_label(grant)
    reason = f"Allowed by {label}: {grant.describe()}"
    ApprovalRequest.objects.filter(pk=req.pk).update(
        status=Status.APPROVED,
        deadline=now,
        decided_at=now,
        decided_by_label=label,
        reason=reason,
        grant=grant,
        audience="",
    )
    req.refresh_from_db()
    routed = rows[1]["payload"]
    routed["note"] = "; ".join(filter(None, [routed.get("note"), f"approved by {label} before asking"]))
    rows.append(
        {
            "kind": AuditKind.DECIDED,
            "actor_label": label,
            "payload": {
                "approve": True,
                "reason": reason,
                "grant": grant.pk,
                "scope": grant.scope,
                "source_request": grant.source_request_id,
            },
        }
    )


# Around the decision -----------------------------------------------------------------------------


def mark_opened(req: ApprovalRequest, *, by: User) -> bool:
    """Record that a staff member's dashboard showed them this pending request (audit OPENED),
    once per person and request. Returns False when already recorded or no longer pending."""
    if not (by.is_active and by.is_staff):
        raise PermissionDenied("Only staff open approval requests.")
    with transaction.atomic():
        # Under the chain lock (writer.record takes it): two tabs of one person opening the same
        # card at once cannot both pass the check below.
        locked = ApprovalRequest.objects.select_for_update().filter(pk=req.pk, status=Status.PENDING).first()
        if (
            locked is None
            # Routed to them, not "may decide": a compliance reviewer or whoever started the
            # session had the card in front of them too, without buttons.
            or not locked.in_audience_of(by)
            or AuditEvent.objects.filter(request_id=req.pk, kind=AuditKind.OPENED, actor=by).exists()
        ):
            return False
        writer.record(
            kind=AuditKind.OPENED,
            request_id=req.pk,
            session_id=req.session_id,
            actor=by,
            actor_label=user_label(by),
        )
    return True


def mark_decision_sent(req: ApprovalRequest, *, via: str = "relay") -> bool:
    """The outbox claim, made by the relay right before it sends the mcp_approval_response
    (`via`: who delivers it; the approval API when its caller has read the answer).
    True: the caller now owns the sending. False: already sent (or not answered), so the caller
    must NOT send. Side effect: audit SENT. Not a status change (the answer stays what it is),
    so not a transition: nothing leaves the process."""
    now = timezone.now()
    with transaction.atomic():
        # Conditional on decision_sent_at IS NULL: of two senders (a nudge and a reconnect,
        # or two processes) exactly one gets the row.
        won = ApprovalRequest.objects.filter(
            pk=req.pk, status__in=ApprovalRequest.ANSWERED, decision_sent_at__isnull=True
        ).update(decision_sent_at=now)
        if won:
            req.refresh_from_db(fields=["status", "reason", "decision_sent_at"])
            writer.record(
                kind=AuditKind.SENT,
                request_id=req.pk,
                session_id=req.session_id,
                actor_label=via,
                payload={"approve": req.approve, "reason": req.reason},
                created_at=now,
            )
    return bool(won)


def record_mcp_call(*, session: RealtimeSession, item: dict[str, Any]) -> ApprovalRequest | None:
    """Keep what actually ran: the final `mcp_call` item (id, arguments, output, error) on the
    request it followed. Recorded once; a replay is a no-op. Returns None when no request of
    this session has that approval_request_id. Side effects: audit MCP_CALL, dashboard event."""
    upstream_id = item.get("approval_request_id")
    if not upstream_id:
        return None
    req = ApprovalRequest.objects.filter(session=session, upstream_id=upstream_id).first()
    if req is None:
        return None
    output = _call_output(item)
    now = timezone.now()
    with transaction.atomic():
        # Conditional on call_recorded_at IS NULL: the first report of the call is the record;
        # a replayed frame must not rewrite it.
        won = ApprovalRequest.objects.filter(pk=req.pk, call_recorded_at__isnull=True).update(
            mcp_call_item_id=str(item.get("id") or ""),
            call_arguments=str(item.get("arguments") or ""),
            call_output=output,
            call_error=item.get("error"),
            call_recorded_at=now,
        )
        if won:
            writer.record(
                kind=AuditKind.MCP_CALL,
                request_id=req.pk,
                session_id=session.pk,
                actor_label=req.server_label,
                payload={"item": item},
                created_at=now,
            )
            on_commit(partial(events.request_changed, req.pk))
    req.refresh_from_db()
    return req


def record_unasked_call(*, session: RealtimeSession, item: dict[str, Any]) -> tuple[ApprovalRequest, bool] | None:
    """Keep an `mcp_call` that ran without an approval request: a tool compiled into
    require_approval.never (the policy allows every call of it), or a server the admin set to
    never ask. It becomes a request row that is approved and already answered (nothing goes
    upstream), with the call's result, so reviewers see every tool call that ran. If the policy
    in force would not have allowed this call, the routing row says so. Idempotent on the call's
    item id. Returns (request, created) or None for an item without an id. Side effects: audit
    REQUESTED, POLICY_ROUTED and MCP_CALL; after commit a dashboard event. Not a transition:
    nobody decides it, so neither the relay nor decision_committed hears of it."""
    item_id = str(item.get("id") or "")[:100]
    if not item_id:
        return None
    existing = ApprovalRequest.objects.filter(session=session, upstream_id=item_id).first()
    if existing is not None:
        return existing, False
    server_label = str(item.get("server_label") or "")[:64]
    tool_name = str(item.get("name") or "")[:128]
    arguments = str(item.get("arguments") or "")
    now = timezone.now()
    routing = _route(session, server_label, tool_name, arguments, now)
    server = McpServer.objects.filter(label=server_label).first()
    expected = routing.outcome == policy.ALLOW
    note = "" if expected else f"ran without asking, but the policy says {routing.summary()}"

    def write() -> ApprovalRequest:
        req = ApprovalRequest.objects.create(
            session=session,
            upstream_id=item_id,
            mcp_server=server,
            server_label=server_label,
            tool_name=tool_name,
            arguments=arguments,
            raw_item=item,
            created_at=now,
            deadline=now,
            status=Status.APPROVED,
            decided_at=now,
            decided_by_label="policy (no approval asked)",
            reason=f"Allowed without asking by rule {routing.rule}"
            if expected and routing.rule
            else "OpenAI ran it without asking (require_approval never)",
            decision_sent_at=now,  # nothing to send: OpenAI never asked
            rule_label=routing.rule,
            policy_version=routing.version,
            policy_outcome=policy.ALLOW,
            mcp_call_item_id=item_id,
            call_arguments=arguments,
            call_output=_call_output(item),
            call_error=item.get("error"),
            call_recorded_at=now,
        )
        rows = _unasked_rows(item, routing, session_label=session.label, server_label=server_label, note=note)
        writer.record_many([{**row, "request": req, "session": session, "created_at": now} for row in rows])
        on_commit(partial(events.request_changed, req.pk))
        return req

    req, created = _insert_once(session, item_id, write)
    if created and note:
        logger.warning("session %s: %s ran on %s without approval: %s", session.pk, tool_name, server_label, note)
    return req, created


def _unasked_rows(
    item: dict[str, Any], routing: policy.Routing, *, session_label: str, server_label: str, note: str
) -> list[dict[str, Any]]:
    return [
        {"kind": AuditKind.REQUESTED, "actor_label": session_label, "payload": {"item": item, "asked": False}},
        {
            "kind": AuditKind.POLICY_ROUTED,
            "actor_label": "policy",
            "payload": {
                "outcome": policy.ALLOW,
                "rule": routing.rule or None,
                "version": routing.version,
                "summary": "require_approval never: no approval was asked",
                "note": note,
                "policy_would": routing.outcome,
            },
        },
        {"kind": AuditKind.MCP_CALL, "actor_label": server_label, "payload": {"item": item}},
    ]
