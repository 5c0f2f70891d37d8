"""Every change of an approval's state, and of the records around it (house rule 1).

Views, the dashboard consumer, Celery tasks, management commands, the admin and the relay
(realtime_bridge) call these functions and never save these models themselves. Each
transition is one conditional UPDATE guarded by the states it may leave (so of two racing
callers exactly one wins), writes its AuditEvent in the same transaction, and registers
whatever leaves the process (dashboard events, the relay nudge, the deadline task) with
`on_commit`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals import audit, events, policy, probe, tasks
from approvals.models import (
    ApprovalRequest,
    AuditEvent,
    ClientToken,
    ConversationLine,
    McpServer,
    McpTool,
    PolicyRule,
    PolicyVersion,
    RealtimeSession,
    tool_definition_hash,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

# The longest reason a person may type; it is read aloud by the assistant, so keep it short.
MAX_REASON_LENGTH = 500
# Who decided, when no person did.
BY_DEADLINE = "deadline"
BY_SESSION_END = "session ended"
DEFAULT_CANCEL_REASON = "The session ended before a decision."
# Celery measures a countdown on the worker's clock; firing a hair before the deadline would
# make the task a no-op and leave the request to the sweep (up to 2 s later), so aim just after.
EXPIRY_SLACK_SECONDS = 0.2

Status = ApprovalRequest.Status


class TransitionError(Exception):
    """The request is not in a state that allows the change. The message says what it is now
    ("This request was already approved by Alice"); `request` is its current row."""

    def __init__(self, message: str, *, request: ApprovalRequest | None = None) -> None:
        super().__init__(message)
        self.request = request


def user_label(user: User) -> str:
    """A person's name as cards and the audit show it."""
    return user.get_full_name() or user.get_username()


def closed_message(req: ApprovalRequest) -> str:
    """What a request that can no longer be decided is, in words, for a person who tried."""
    if req.status == Status.APPROVED:
        return f"This request was already approved by {req.decided_by_label}."
    if req.status == Status.DENIED:
        return f"This request was already denied by {req.decided_by_label}."
    if req.status == Status.EXPIRED:
        return f"This request has expired: {req.reason}"
    if req.status == Status.CANCELLED:
        return f"This request was cancelled because the session ended ({req.reason})"
    return "This request is still pending."


def _on_commit(func: Callable[[], Any]) -> None:
    # Everything that leaves the process waits for the commit: a dashboard must never show,
    # nor the relay send, a decision that was rolled back. robust=True: a broker or Redis
    # outage after commit is logged, not raised at the person whose decision did commit, and
    # the remaining callbacks still run (the sweep and the snapshots heal what was missed).
    if isinstance(func, partial) and not hasattr(func, "__qualname__"):
        # Django names the callback in its log line when it fails; a partial has no name.
        func.__qualname__ = getattr(func.func, "__qualname__", repr(func.func))  # type: ignore[attr-defined]
    transaction.on_commit(func, robust=True)


def _schedule_expiry(request_id: int, deadline: datetime) -> None:
    countdown = max(0.0, (deadline - timezone.now()).total_seconds()) + EXPIRY_SLACK_SECONDS
    tasks.expire_request.apply_async((request_id,), countdown=countdown)


def _notify_new(request_id: int, created: ApprovalRequest | None = None) -> None:
    """After commit of a new request: put it on every dashboard, then record that staff were
    notified. The audit row follows the broadcast (its own transaction): it records an event
    that happened outside the database, and only once it has happened. `created` is the row as
    the committed transaction wrote it (with its session and server): no need to read it back."""
    req = created if created is not None else ApprovalRequest.objects.for_one().filter(pk=request_id).first()
    if req is not None and events.send_request(req):
        audit.record(
            kind=AuditEvent.Kind.NOTIFIED,
            request_id=request_id,
            session_id=req.session_id,
            payload={"group": events.DASHBOARD, "audience": req.audience_groups or "any staff"},
        )


def _announce_answer(req: ApprovalRequest, *, approve: bool, reason: str) -> None:
    """After commit of an answered state: nudge the relay first (a guest is waiting) with the
    answer this transaction committed, then tell the dashboards."""
    decision = {"upstream_id": req.upstream_id, "approve": approve, "reason": reason}
    _on_commit(partial(events.relay_decision, session_id=req.session_id, request_id=req.pk, decision=decision))
    _on_commit(partial(events.request_changed, req.pk))


# Sessions ------------------------------------------------------------------------------------


def open_session(
    *,
    kind: str,
    label: str,
    metadata: dict[str, Any],
    client_token: ClientToken | None = None,
    model: str = "",
    call_id: str = "",
) -> RealtimeSession:
    """Record a session the relay now sits in, named by `label`/`metadata` (copied from the
    client token by the caller). Side effects: audit SESSION_OPENED, the token's last_used_at.
    Raises ValueError on an unknown kind."""
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
        )
        if client_token is not None:
            # A one-column UPDATE rather than save(): an admin editing the token's label at
            # the same moment keeps their edit.
            ClientToken.objects.filter(pk=client_token.pk).update(last_used_at=now)
        audit.record(
            kind=AuditEvent.Kind.SESSION_OPENED,
            session=session,
            actor_label=label,
            payload={
                "kind": kind,
                "label": label,
                "metadata": session.metadata,
                "model": model,
                "call_id": call_id,
                "client_token_id": client_token.pk if client_token is not None else None,
            },
            created_at=now,
        )
    return session


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
        list(
            ApprovalRequest.objects.filter(session_id=session.pk)
            .pending()
            .select_for_update()
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        # Conditional: only the first close is recorded (the relay may close on an error path
        # and again in disconnect()).
        closed = RealtimeSession.objects.filter(pk=session.pk, status=RealtimeSession.Status.OPEN).update(
            status=RealtimeSession.Status.CLOSED, closed_at=now, close_code=code
        )
        if closed:
            audit.record(
                kind=AuditEvent.Kind.SESSION_CLOSED,
                session_id=session.pk,
                actor_label=session.label,
                payload={"code": code, "reason": reason},
                created_at=now,
            )
        # Also on a repeated close: a request that slipped in after the first one must not
        # stay pending forever.
        for pk in ApprovalRequest.objects.filter(session_id=session.pk).pending().values_list("pk", flat=True):
            req = _cancel_request(pk, now=now, reason=request_reason, code=code)
            if req is not None:
                cancelled.append(req)
    session.refresh_from_db(fields=["status", "closed_at", "close_code"])
    return cancelled


# Called by the lead's relay as close_session; cancel_session is the name the issue uses.
cancel_session = close_session


def _cancel_request(pk: int, *, now: datetime, reason: str, code: int | None) -> ApprovalRequest | None:
    # Conditional on pending: a decision that won the race a moment ago stays what it is.
    won = ApprovalRequest.objects.filter(pk=pk, status=Status.PENDING).update(
        status=Status.CANCELLED, decided_at=now, decided_by_label=BY_SESSION_END, reason=reason
    )
    if not won:
        return None
    req = ApprovalRequest.objects.get(pk=pk)
    audit.record(
        kind=AuditEvent.Kind.CANCELLED,
        request=req,
        session_id=req.session_id,
        actor_label=BY_SESSION_END,
        payload={"reason": reason, "code": code},
        created_at=now,
    )
    _on_commit(partial(events.request_changed, pk))
    return req


def add_conversation_line(*, session: RealtimeSession, role: str, text: str, item_id: str = "") -> ConversationLine:
    """Keep a line of what the guest or the assistant said, for the cards and the case.
    Side effect: after commit, the cards of the session's pending requests are re-sent so
    their conversation stays live. Raises ValueError on an unknown role."""
    if role not in ConversationLine.Role.values:
        raise ValueError(f"Unknown conversation role {role!r}")
    with transaction.atomic():
        line = ConversationLine.objects.create(session=session, role=role, text=text, item_id=item_id)
        _on_commit(partial(events.session_requests_changed, session.pk))
    return line


# Requests ------------------------------------------------------------------------------------


def _audience(groups: list[str]) -> str:
    return f",{','.join(groups)}," if groups else ""


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
    first = routing.steps[0]
    fields: dict[str, Any] = {
        "rule_label": routing.rule,
        "policy_version": routing.version,
        "policy_outcome": routing.outcome,
        "plan": routing.plan(),
    }
    by_policy = f"policy ({routing.rule})" if routing.rule else "policy"
    if routing.outcome == policy.ASK:
        fields.update(
            deadline=now + timedelta(seconds=first.seconds()),
            audience=_audience(list(first.groups)),
            quorum=first.quorum,
        )
    else:
        approve = routing.outcome == policy.ALLOW
        fields.update(
            status=Status.APPROVED if approve else Status.DENIED,
            deadline=now,
            decided_at=now,
            decided_by_label=by_policy,
            reason=routing.reason
            or (f"Allowed by rule {routing.rule}" if approve else f"Denied by rule {routing.rule}: not permitted"),
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
        rows: list[dict[str, Any]] = [
            {
                "kind": AuditEvent.Kind.REQUESTED,
                "actor_label": session.label,
                "payload": {
                    "item": raw_item,
                    "timeout_seconds": first.seconds() if routing.outcome == policy.ASK else 0,
                },
            },
            {
                "kind": AuditEvent.Kind.POLICY_ROUTED,
                "actor_label": by_policy,
                "payload": {
                    "outcome": routing.outcome,
                    "rule": routing.rule or None,
                    "version": routing.version,
                    "summary": routing.summary(),
                    "note": routing.note,
                    "plan": fields["plan"],
                },
            },
        ]
        if routing.outcome != policy.ASK:
            rows.append(
                {
                    "kind": AuditEvent.Kind.DECIDED,
                    "actor_label": by_policy,
                    "payload": {
                        "approve": routing.outcome == policy.ALLOW,
                        "reason": req.reason,
                        "rule": routing.rule,
                    },
                }
            )
        audit.record_many([{**row, "request": req, "session": session, "created_at": now} for row in rows])
        # Registered inside the savepoint so that they are dropped with it on a lost race.
        if routing.outcome == policy.ASK:
            _on_commit(partial(_notify_new, req.pk, req))
            _on_commit(partial(_schedule_expiry, req.pk, req.deadline))
        else:
            _announce_answer(req, approve=routing.outcome == policy.ALLOW, reason=req.reason)
        return req

    return _insert_once(session, upstream_id, write)


def _check_reason(reason: str) -> str:
    reason = reason.strip()
    if len(reason) > MAX_REASON_LENGTH:
        raise ValueError(f"The reason is longer than {MAX_REASON_LENGTH} characters.")
    return reason


def decide(req: ApprovalRequest, *, approve: bool, by: User, reason: str = "") -> ApprovalRequest:
    """A person approves or denies a pending request before its deadline. Only members of the
    groups its current step names may (anyone on staff when it names none; superusers always).
    One denial decides; an approval decides once the step's quorum of distinct people approved,
    else it is counted (audit VOTED) and the request stays pending. Side effects: audit DECIDED;
    after commit the relay nudge and a dashboard event. Raises TransitionError when it is no
    longer pending (or its deadline has passed, which then expires it) or this person already
    approved it, PermissionDenied, or ValueError for a reason that is too long."""
    reason = _check_reason(reason)
    if not (by.is_active and by.is_staff):
        # Checked again here, not only in the view: the decider is part of the audit record.
        raise PermissionDenied("Only staff can decide approval requests.")
    for _attempt in range(3):
        if req.quorum <= 1 or not approve:
            outcome = _decide_at_once(req, approve=approve, by=by, reason=reason)
        else:
            outcome = _vote(req, by=by, reason=reason)
        if outcome is not None:
            return outcome
        # Lost the conditional UPDATE. If the request is still pending its step changed under
        # us (an escalation): judge again against the new step.
        current = ApprovalRequest.objects.filter(pk=req.pk).first()
        if current is None or current.status != Status.PENDING or current.deadline <= timezone.now():
            break
        req = current
    # Lost. If it lost to a deadline whose task has not run yet, expire it now so that what we
    # tell the person is already true (a no-op when someone else won).
    expire_request(req.pk)
    current = ApprovalRequest.objects.for_one().get(pk=req.pk)
    raise TransitionError(closed_message(current), request=current)


def _not_allowed(req: ApprovalRequest) -> PermissionDenied:
    groups = " or ".join(req.audience_groups)
    return PermissionDenied(f"Only members of {groups} may decide this request.")


def _decide_at_once(req: ApprovalRequest, *, approve: bool, by: User, reason: str) -> ApprovalRequest | None:
    """One conditional UPDATE: of two clicks, or a click and the deadline, exactly one matches;
    the database serialises them on the row lock. The deadline and the step are part of the
    guard, so a step that has passed or moved on cannot be decided by a stale page."""
    if not req.may_decide(by):
        raise _not_allowed(req)
    now = timezone.now()
    label = user_label(by)
    with transaction.atomic():
        won = ApprovalRequest.objects.filter(
            pk=req.pk, status=Status.PENDING, deadline__gt=now, stage=req.stage
        ).update(
            status=Status.APPROVED if approve else Status.DENIED,
            decided_at=now,
            decided_by=by,
            decided_by_label=label,
            reason=reason,
        )
        if won:
            audit.record(
                kind=AuditEvent.Kind.DECIDED,
                request_id=req.pk,
                session_id=req.session_id,
                actor=by,
                actor_label=label,
                payload={"approve": approve, "reason": reason, "stage": req.stage},
                created_at=now,
            )
            _announce_answer(req, approve=approve, reason=reason)
    if not won:
        return None
    req.refresh_from_db()
    return req


def _vote(req: ApprovalRequest, *, by: User, reason: str) -> ApprovalRequest | None:
    """An approval toward a quorum (two-person rule): counted once per person and request,
    under the row lock so that two approvers at once are counted in turn."""
    now = timezone.now()
    label = user_label(by)
    with transaction.atomic():
        locked = (
            ApprovalRequest.objects.select_for_update()
            .filter(pk=req.pk, status=Status.PENDING, deadline__gt=now, stage=req.stage)
            .first()
        )
        if locked is None:
            return None
        if not locked.may_decide(by):
            raise _not_allowed(locked)
        if any(v.get("user_id") == by.pk for v in locked.votes or []):
            raise TransitionError(
                f"You have already approved this request: it needs {locked.quorum_label or 'another approver'}, "
                "and the same person cannot count twice.",
                request=ApprovalRequest.objects.for_one().get(pk=req.pk),
            )
        votes = [
            *(locked.votes or []),
            {"user_id": by.pk, "label": label, "stage": locked.stage, "at": now.isoformat()},
        ]
        approvers = [v["label"] for v in votes if v.get("stage") == locked.stage]
        if len(approvers) < locked.quorum:
            ApprovalRequest.objects.filter(pk=req.pk).update(votes=votes)
            audit.record(
                kind=AuditEvent.Kind.VOTED,
                request_id=req.pk,
                session_id=req.session_id,
                actor=by,
                actor_label=label,
                payload={
                    "approve": True,
                    "reason": reason,
                    "stage": locked.stage,
                    "count": len(approvers),
                    "quorum": locked.quorum,
                },
                created_at=now,
            )
            _on_commit(partial(events.request_changed, req.pk))
        else:
            ApprovalRequest.objects.filter(pk=req.pk).update(
                votes=votes,
                status=Status.APPROVED,
                decided_at=now,
                decided_by=by,
                decided_by_label=" and ".join(approvers)[:150],
                reason=reason,
            )
            audit.record(
                kind=AuditEvent.Kind.DECIDED,
                request_id=req.pk,
                session_id=req.session_id,
                actor=by,
                actor_label=label,
                payload={"approve": True, "reason": reason, "stage": locked.stage, "approvers": approvers},
                created_at=now,
            )
            _announce_answer(req, approve=True, reason=reason)
    req.refresh_from_db()
    return req


def expire_request(pk: int, *, now: datetime | None = None) -> ApprovalRequest | None:
    """Apply the deadline of a pending request's current step, once it has passed: what the
    step says (its plan, frozen when the request opened): deny (status expired), approve
    (approved, decided by "deadline"), or escalate (the next step's groups, quorum and deadline;
    the request stays pending). Idempotent; returns None when there was nothing to do. Side
    effects: audit EXPIRED/DECIDED/ESCALATED; after commit the relay nudge for an answer, a
    dashboard event, and for an escalation the next deadline task."""
    now = now or timezone.now()
    req = ApprovalRequest.objects.filter(pk=pk, status=Status.PENDING, deadline__lte=now).first()
    if req is None:
        return None
    stages = (req.plan or {}).get("stages") or []
    step = stages[req.stage] if req.stage < len(stages) else {}
    action = step.get("on_deadline", "deny")
    waited = step.get("deadline_seconds") or round((req.deadline - req.created_at).total_seconds())
    rule = f" (rule {req.rule_label})" if req.rule_label else ""
    guard = {"pk": pk, "status": Status.PENDING, "deadline__lte": now, "stage": req.stage}
    with transaction.atomic():
        if action == "escalate" and req.stage + 1 < len(stages):
            nxt = stages[req.stage + 1]
            groups = list(nxt.get("groups") or [])
            deadline = now + timedelta(seconds=int(nxt["deadline_seconds"]))
            # Conditional again: a person may have decided since the read above; then they won.
            won = ApprovalRequest.objects.filter(**guard).update(
                stage=req.stage + 1, audience=_audience(groups), quorum=int(nxt.get("quorum") or 1), deadline=deadline
            )
            if not won:
                return None
            audit.record(
                kind=AuditEvent.Kind.ESCALATED,
                request_id=pk,
                session_id=req.session_id,
                actor_label=BY_DEADLINE,
                payload={
                    "reason": f"No decision within {waited} s: escalated{rule}",
                    "from_groups": req.audience_groups,
                    "to_groups": groups,
                    "stage": req.stage + 1,
                    "quorum": int(nxt.get("quorum") or 1),
                    "deadline": deadline.isoformat(),
                },
                created_at=now,
            )
            _on_commit(partial(events.request_changed, pk))
            _on_commit(partial(_schedule_expiry, pk, deadline))
        else:
            approve = action == "approve"
            reason = f"No decision within {waited} s: {'approved' if approve else 'denied'} by deadline{rule}"
            won = ApprovalRequest.objects.filter(**guard).update(
                status=Status.APPROVED if approve else Status.EXPIRED,
                decided_at=now,
                decided_by_label=BY_DEADLINE,
                reason=reason,
            )
            if not won:
                return None
            audit.record(
                kind=AuditEvent.Kind.DECIDED if approve else AuditEvent.Kind.EXPIRED,
                request_id=pk,
                session_id=req.session_id,
                actor_label=BY_DEADLINE,
                payload={"approve": approve, "reason": reason, "deadline": req.deadline.isoformat()},
                created_at=now,
            )
            _announce_answer(req, approve=approve, reason=reason)
    req.refresh_from_db()
    return req


def expire_overdue(*, now: datetime) -> list[ApprovalRequest]:
    """The sweep: expire every pending request whose deadline is at or before `now`.
    Idempotent (each one goes through expire_request). Returns the requests expired now."""
    pks = ApprovalRequest.objects.pending().overdue(now).order_by("deadline", "pk").values_list("pk", flat=True)
    expired = []
    for pk in list(pks):
        req = expire_request(pk, now=now)
        if req is not None:
            expired.append(req)
    return expired


def mark_opened(req: ApprovalRequest, *, by: User) -> bool:
    """Record that a staff member's dashboard showed them this pending request (audit OPENED),
    once per person and request. Returns False when already recorded or no longer pending."""
    if not (by.is_active and by.is_staff):
        raise PermissionDenied("Only staff open approval requests.")
    with transaction.atomic():
        # Under the chain lock (audit.record takes it): two tabs of one person opening the same
        # card at once cannot both pass the check below.
        locked = ApprovalRequest.objects.select_for_update().filter(pk=req.pk, status=Status.PENDING).first()
        if (
            locked is None
            or not locked.may_decide(by)
            or AuditEvent.objects.filter(request_id=req.pk, kind=AuditEvent.Kind.OPENED, actor=by).exists()
        ):
            return False
        audit.record(
            kind=AuditEvent.Kind.OPENED,
            request_id=req.pk,
            session_id=req.session_id,
            actor=by,
            actor_label=user_label(by),
        )
    return True


def mark_decision_sent(req: ApprovalRequest) -> bool:
    """The outbox claim, made by the relay right before it sends the mcp_approval_response.
    True: the caller now owns the sending. False: already sent (or not answered), so the caller
    must NOT send. Side effect: audit SENT."""
    now = timezone.now()
    with transaction.atomic():
        # Conditional on decision_sent_at IS NULL: of two senders (a nudge and a reconnect,
        # or two processes) exactly one gets the row.
        won = ApprovalRequest.objects.filter(
            pk=req.pk, status__in=ApprovalRequest.ANSWERED, decision_sent_at__isnull=True
        ).update(decision_sent_at=now)
        if won:
            req.refresh_from_db(fields=["status", "reason", "decision_sent_at"])
            audit.record(
                kind=AuditEvent.Kind.SENT,
                request_id=req.pk,
                session_id=req.session_id,
                actor_label="relay",
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
            audit.record(
                kind=AuditEvent.Kind.MCP_CALL,
                request_id=req.pk,
                session_id=session.pk,
                actor_label=req.server_label,
                payload={"item": item},
                created_at=now,
            )
            _on_commit(partial(events.request_changed, req.pk))
    req.refresh_from_db()
    return req


def record_unasked_call(*, session: RealtimeSession, item: dict[str, Any]) -> tuple[ApprovalRequest, bool] | None:
    """Keep an `mcp_call` that ran without an approval request: a tool compiled into
    require_approval.never (the policy allows every call of it), or a server the admin set to
    never ask. It becomes a request row that is approved and already answered (nothing goes
    upstream), with the call's result, so reviewers see every tool call that ran. If the policy
    in force would not have allowed this call, the routing row says so. Idempotent on the call's
    item id. Returns (request, created) or None for an item without an id. Side effects: audit
    REQUESTED, POLICY_ROUTED and MCP_CALL; after commit a dashboard event."""
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
    output = _call_output(item)

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
            call_output=output,
            call_error=item.get("error"),
            call_recorded_at=now,
        )
        rows: list[dict[str, Any]] = [
            {
                "kind": AuditEvent.Kind.REQUESTED,
                "actor_label": session.label,
                "payload": {"item": item, "asked": False},
            },
            {
                "kind": AuditEvent.Kind.POLICY_ROUTED,
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
            {"kind": AuditEvent.Kind.MCP_CALL, "actor_label": server_label, "payload": {"item": item}},
        ]
        audit.record_many([{**row, "request": req, "session": session, "created_at": now} for row in rows])
        _on_commit(partial(events.request_changed, req.pk))
        return req

    req, created = _insert_once(session, item_id, write)
    if not created:
        return req, False
    if note:
        logger.warning("session %s: %s ran on %s without approval: %s", session.pk, tool_name, server_label, note)
    return req, True


# Client tokens and MCP servers ---------------------------------------------------------------


def issue_token(*, label: str, metadata: dict[str, Any], by: User | None = None) -> tuple[ClientToken, str]:
    """Create a client token and return it with its plaintext, which exists only in this return
    value: only the hash is stored. Side effect: audit TOKEN_ISSUED (without the secret)."""
    plaintext = ClientToken.generate()
    with transaction.atomic():
        token = ClientToken.objects.create(
            label=label,
            metadata=metadata,
            token_hash=ClientToken.hash(plaintext),
            prefix=plaintext[:12],
            created_by=by,
        )
        audit.record(
            kind=AuditEvent.Kind.TOKEN_ISSUED,
            actor=by,
            actor_label=user_label(by) if by is not None else "command line",
            payload={"token_id": token.pk, "label": label, "prefix": token.prefix, "metadata": metadata},
        )
    return token, plaintext


def revoke_token(token: ClientToken, *, by: User | None) -> bool:
    """Revoke a client token: no new session may open with it. Idempotent; False when it was
    already revoked. Side effect: audit TOKEN_REVOKED."""
    now = timezone.now()
    with transaction.atomic():
        # Conditional: revoking twice keeps the first time and writes one audit row.
        won = ClientToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
        if won:
            audit.record(
                kind=AuditEvent.Kind.TOKEN_REVOKED,
                actor=by,
                actor_label=user_label(by) if by is not None else "command line",
                payload={"token_id": token.pk, "label": token.label, "prefix": token.prefix},
                created_at=now,
            )
    token.refresh_from_db(fields=["revoked_at"])
    return bool(won)


def _server_audit_payload(server: McpServer) -> dict[str, Any]:
    # Never the secrets: whether an authorization is set, and the header names only.
    return {
        "server_id": server.pk,
        "label": server.label,
        "url": server.url,
        "transport": server.transport,
        "require_approval": server.require_approval,
        "description": server.description,
        "enabled": server.enabled,
        "authorization_set": bool(server.authorization),
        "header_names": sorted(server.headers or {}),
    }


def save_mcp_server(server: McpServer, *, by: User | None, created: bool) -> McpServer:
    """Save a registry entry edited elsewhere (the admin form). Side effect: audit SERVER_SAVED."""
    with transaction.atomic():
        server.save()
        audit.record(
            kind=AuditEvent.Kind.SERVER_SAVED,
            actor=by,
            actor_label=user_label(by) if by is not None else "command line",
            payload={"created": created, **_server_audit_payload(server)},
        )
    return server


def rules_naming(server: McpServer) -> list[str]:
    """The labels of the policy rules that name this server."""
    return list(PolicyRule.objects.filter(server_label=server.label).values_list("label", flat=True))


def delete_mcp_server(server: McpServer, *, by: User | None) -> None:
    """Remove a registry entry. Refused (ValidationError) while policy rules name it: deleting
    it would leave those rules matching nothing, silently. Side effect: audit SERVER_DELETED."""
    naming = rules_naming(server)
    if naming:
        raise ValidationError(
            f"Policy rule(s) {', '.join(naming)} name the server {server.label}: change or delete them first."
        )
    with transaction.atomic():
        payload = _server_audit_payload(server)
        server.delete()
        audit.record(
            kind=AuditEvent.Kind.SERVER_DELETED,
            actor=by,
            actor_label=user_label(by) if by is not None else "command line",
            payload=payload,
        )


def register_mcp_server(
    *,
    label: str,
    url: str,
    authorization: str | None = None,
    headers: dict[str, str] | None = None,
    require_approval: str | None = None,
    transport: str | None = None,
    description: str | None = None,
) -> tuple[McpServer, bool]:
    """Create the MCP server `label`, or update it; an option left as None keeps its current
    value. Returns (server, created?). Raises django's ValidationError on a bad label, URL or
    choice. Side effect: audit SERVER_SAVED (without the secrets)."""
    server = McpServer.objects.filter(label=label).first()
    created = server is None
    if server is None:
        server = McpServer(label=label)
    server.url = url
    if authorization is not None:
        server.authorization = authorization
    if headers is not None:
        server.headers = headers
    if require_approval is not None:
        server.require_approval = require_approval
    if transport is not None:
        server.transport = transport
    if description is not None:
        server.description = description
    server.full_clean()
    save_mcp_server(server, by=None, created=created)
    return server, created


def probe_mcp_server(server: McpServer, *, by: User | None) -> probe.ProbeResult:
    """Connect to `server` as OpenAI would, list its tools, and store what was found: the report
    on the server, and each listed tool with the hash of its definition (store_tools). Runs the
    network part first, outside any transaction. Side effect: audit SERVER_PROBED (causes and
    tool names only, never a credential). Call it from sync code (an admin action, a command)."""
    result = asyncio.run(
        probe.probe(
            url=server.url,
            transport=server.transport,
            authorization=server.authorization,
            headers=dict(server.headers or {}),
        )
    )
    now = timezone.now()
    with transaction.atomic():
        drifted: list[str] = []
        if result.reached:
            drifted = store_tools(server, result.tools, now=now)
        McpServer.objects.filter(pk=server.pk).update(probed_at=now, probe_ok=result.ok, probe_report=result.report())
        audit.record(
            kind=AuditEvent.Kind.SERVER_PROBED,
            actor=by,
            actor_label=user_label(by) if by is not None else "command line",
            payload={
                "server_id": server.pk,
                "label": server.label,
                "ok": result.ok,
                "problems": result.problems,
                "tools": [t["name"] for t in result.tools],
                "drifted": drifted,
            },
            created_at=now,
        )
    server.refresh_from_db(fields=["probed_at", "probe_ok", "probe_report"])
    return result


def _take_definition(tool: McpTool, definition: dict[str, Any], digest: str, *, now: datetime) -> bool:
    """A tool's definition changed (the caller saves): keep what an admin last reviewed next to
    what the server now says, side by side, and flag it; a change back to the reviewed
    definition clears the flag. Returns whether the tool is newly flagged."""
    newly = tool.drifted_at is None
    if newly:
        tool.previous_definition, tool.previous_hash = tool.definition, tool.definition_hash
        tool.drifted_at = now
    tool.definition, tool.definition_hash = definition, digest
    if tool.definition_hash == tool.previous_hash:
        # Changed back to what was last reviewed: nothing left to review.
        tool.drifted_at = None
        return False
    return newly


def store_tools(server: McpServer, definitions: list[dict[str, Any]], *, now: datetime) -> list[str]:
    """Record the tools a probe listed. A known name with a new definition hash keeps the old
    definition beside the new one and is flagged (drifted_at) until mark_tool_reviewed; a name
    no longer listed gets removed_at. Returns the names that drifted in this probe."""
    drifted = []
    known = {tool.name: tool for tool in McpTool.objects.select_for_update().filter(server=server)}
    listed = set()
    for definition in definitions:
        name = definition["name"]
        if name in listed:  # a duplicate name is a probe problem already; keep the first
            continue
        listed.add(name)
        digest = tool_definition_hash(definition)
        tool = known.get(name)
        if tool is None:
            McpTool.objects.create(
                server=server,
                name=name,
                definition=definition,
                definition_hash=digest,
                first_seen_at=now,
                last_seen_at=now,
            )
            continue
        tool.last_seen_at = now
        tool.removed_at = None
        if tool.definition_hash != digest:
            _take_definition(tool, definition, digest, now=now)
            drifted.append(name)
        tool.save()
    McpTool.objects.filter(server=server, removed_at__isnull=True).exclude(name__in=listed).update(removed_at=now)
    return drifted


def mark_tool_reviewed(tool: McpTool, *, by: User) -> bool:
    """Accept a drifted tool's current definition. False if it was not flagged (nothing done).
    Side effect: audit TOOL_REVIEWED with both definition hashes."""
    now = timezone.now()
    with transaction.atomic():
        won = McpTool.objects.filter(pk=tool.pk, drifted_at__isnull=False).update(
            drifted_at=None, reviewed_at=now, reviewed_by_label=user_label(by)
        )
        if won:
            audit.record(
                kind=AuditEvent.Kind.TOOL_REVIEWED,
                actor=by,
                actor_label=user_label(by),
                payload={
                    "server_id": tool.server_id,
                    "tool": tool.name,
                    "previous_hash": tool.previous_hash,
                    "definition_hash": tool.definition_hash,
                },
                created_at=now,
            )
    tool.refresh_from_db()
    return bool(won)


def observe_listed_tools(*, server_label: str, tools: list[dict[str, Any]]) -> list[str]:
    """Compare an `mcp_list_tools` item seen in a session with the registry: a known tool whose
    description or input schema changed is flagged for review (drift) exactly as a probe would
    flag it, which suspends the rules that let it run without a person. Tools the registry does
    not know are left to the probe (a listing shows only the tools allowed_tools let through,
    and OpenAI reports annotations in its own shape). Returns the names newly flagged. Side
    effect: audit TOOL_DRIFTED per newly flagged tool."""
    listed = {str(t.get("name")): t for t in tools if isinstance(t, dict) and t.get("name")}
    if not listed:
        return []
    now = timezone.now()
    flagged = []
    with transaction.atomic():
        for tool in McpTool.objects.select_for_update().filter(server__label=server_label, name__in=list(listed)):
            seen = listed[tool.name]
            stored = tool.definition or {}
            same = (seen.get("description") or "") == (stored.get("description") or "") and (
                seen.get("input_schema") or {}
            ) == (stored.get("input_schema") or {})
            if same:
                continue
            # The probe's shape, with what the listing shows replaced: a later probe that finds
            # the same change then sees no further drift.
            definition = {
                **stored,
                "description": seen.get("description") or "",
                "input_schema": seen.get("input_schema") or {},
            }
            digest = tool_definition_hash(definition)
            if digest == tool.definition_hash:
                continue
            tool.last_seen_at = now
            newly = _take_definition(tool, definition, digest, now=now)
            tool.save()
            if newly:
                flagged.append(tool.name)
                audit.record(
                    kind=AuditEvent.Kind.TOOL_DRIFTED,
                    actor_label="relay",
                    payload={
                        "server_id": tool.server_id,
                        "server": server_label,
                        "tool": tool.name,
                        "previous_hash": tool.previous_hash,
                        "definition_hash": digest,
                        "seen_in": "mcp_list_tools",
                    },
                    created_at=now,
                )
    return flagged


# Policies -------------------------------------------------------------------------------------


def publish_policy(*, by: User | None, source: str, rules: list[policy.Rule] | None = None) -> PolicyVersion | None:
    """Make the rules the new policy version: with `rules` (an import) they first replace every
    rule row; without, the rows as the admin left them are taken. Checked as a whole (names,
    conditions, escalation chains): raises policy.PolicyError and changes nothing when they do
    not hold. Returns the new version, or None when nothing changed. Side effect: audit
    POLICY_CHANGED with what changed."""
    with transaction.atomic():
        latest = PolicyVersion.objects.select_for_update().order_by("-number").first()
        if rules is not None:
            policy.write_rows(rules)
        new_doc = policy.document(policy.rules_from_rows())
        policy.parse_document(new_doc)  # raises PolicyError: the atomic block rolls back
        old_doc = latest.document if latest is not None else policy.document([])
        changes = policy.diff(old_doc, new_doc)
        if latest is not None and not changes:
            return None
        label = user_label(by) if by is not None else "command line"
        version = PolicyVersion.objects.create(
            number=(latest.number if latest is not None else 0) + 1,
            created_by=by,
            created_by_label=label,
            source=source[:200],
            changes=changes,
            document=new_doc,
        )
        audit.record(
            kind=AuditEvent.Kind.POLICY_CHANGED,
            actor=by,
            actor_label=label,
            payload={"version": version.number, "source": version.source, "changes": changes},
        )
    return version


def import_policies(text: str, *, by: User | None, source: str) -> PolicyVersion | None:
    """Replace the whole policy set with a YAML document (the format of export_policies).
    All or nothing: raises policy.PolicyError listing every problem, and then changes nothing."""
    rules = policy.parse_document(policy.load_yaml(text))
    return publish_policy(by=by, source=source, rules=rules)
