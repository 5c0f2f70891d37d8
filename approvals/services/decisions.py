"""Decisions: a person decides (alone, or toward a quorum), or the deadline of the request's
step applies what the step says (deny, approve, escalate). Of two at once exactly one wins
(the conditional UPDATE in `_transition.transition`); the other is told, or skips."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from approvals import events
from approvals.models import ApprovalRequest, AuditKind
from approvals.services._common import (
    BY_DEADLINE,
    MAX_REASON_LENGTH,
    Status,
    TransitionError,
    closed_message,
    user_label,
)
from approvals.services._transition import audience, reached, transition

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def _check_reason(reason: str) -> str:
    reason = reason.strip()
    if len(reason) > MAX_REASON_LENGTH:
        raise ValueError(f"The reason is longer than {MAX_REASON_LENGTH} characters.")
    return reason


def check_may_decide(req: ApprovalRequest, user: User) -> None:
    """The one check of who may decide, used by every path that records a person's decision
    (at once, a vote toward a quorum; the dashboard, and the Slack and push channels, which all
    call decide()). Duties do not mix: a member of the compliance group never decides (nor a
    superuser who is one), nor does whoever started the request's session; otherwise the
    current step's groups may (any staff member when it names none; superusers always).
    Reads the user's groups and the session (a query each, unless loaded). No side effects.
    Raises PermissionDenied with the reason in words for that person."""
    refusal = req.decision_refusal(user)
    if refusal is not None:
        raise PermissionDenied(refusal)


def decide(req: ApprovalRequest, *, approve: bool, by: User, reason: str = "") -> ApprovalRequest:
    """A person approves or denies a pending request before its deadline. Only those
    check_may_decide lets through may: members of the groups its current step names (anyone
    on staff when it names none; superusers always), never a compliance reviewer, never whoever
    started the session. One denial decides; an approval decides once the step's quorum of distinct people approved,
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


def _decide_at_once(req: ApprovalRequest, *, approve: bool, by: User, reason: str) -> ApprovalRequest | None:
    """One conditional UPDATE: of two clicks, or a click and the deadline, exactly one matches.
    The deadline and the step are part of the guard, so a step that has passed or moved on
    cannot be decided by a stale page. None when it lost."""
    check_may_decide(req, by)
    now = timezone.now()
    label = user_label(by)
    won = transition(
        req,
        to=Status.APPROVED if approve else Status.DENIED,
        guard={"deadline__gt": now, "stage": req.stage},
        fields={"decided_at": now, "decided_by": by, "decided_by_label": label, "reason": reason},
        rows=[
            {
                "kind": AuditKind.DECIDED,
                "actor": by,
                "actor_label": label,
                "payload": {"approve": approve, "reason": reason, "stage": req.stage},
            }
        ],
        now=now,
    )
    if not won:
        return None
    req.refresh_from_db()
    return req


def _vote(req: ApprovalRequest, *, by: User, reason: str) -> ApprovalRequest | None:
    """An approval toward a quorum (two-person rule): counted once per person and request,
    under the row lock so that two approvers at once are counted in turn. None when the
    request is no longer pending at this step."""
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
        check_may_decide(locked, by)
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
        payload: dict[str, Any] = {"approve": True, "reason": reason, "stage": locked.stage}
        fields: dict[str, Any] = {"votes": votes}
        if len(approvers) < locked.quorum:
            # Counted, still pending: the row lock above makes this change ours.
            to = Status.PENDING
            row = {
                "kind": AuditKind.VOTED,
                "payload": {**payload, "count": len(approvers), "quorum": locked.quorum},
            }
        else:
            to = Status.APPROVED
            fields.update(decided_at=now, decided_by=by, decided_by_label=" and ".join(approvers)[:150], reason=reason)
            row = {"kind": AuditKind.DECIDED, "payload": {**payload, "approvers": approvers}}
        transition(locked, to=to, fields=fields, rows=[{**row, "actor": by, "actor_label": label}], now=now)
    req.refresh_from_db()
    return req


# The deadline ---------------------------------------------------------------------------------


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
    waited = step.get("deadline_seconds") or round((req.deadline - req.created_at).total_seconds())
    why = f"No decision within {waited} s"
    # Conditional again: a person may have decided since the read above; then they won.
    guard = {"deadline__lte": now, "stage": req.stage}
    if step.get("on_deadline", "deny") == "escalate" and req.stage + 1 < len(stages):
        won = _escalate(req, stages[req.stage + 1], now=now, guard=guard, why=why)
    else:
        won = _answer_at_deadline(req, approve=step.get("on_deadline") == "approve", now=now, guard=guard, why=why)
    if not won:
        return None
    req.refresh_from_db()
    return req


def _rule_note(req: ApprovalRequest) -> str:
    return f" (rule {req.rule_label})" if req.rule_label else ""


def escalate_if_nobody_online(pk: int, *, now: datetime | None = None) -> ApprovalRequest | None:
    """Escalate a pending request at once, without waiting out its step, when the step says
    `escalate_when_nobody_online` and nobody of its groups is reachable now
    (events.is_anyone_online: dashboard presence, and what the apps above register). Returns
    the escalated request, or None when there was nothing to do. Repeats for the next step
    (after commit, through the transition). Side effects: as expire_request's escalation."""
    now = now or timezone.now()
    req = ApprovalRequest.objects.filter(pk=pk, status=Status.PENDING, deadline__gt=now).first()
    if req is None:
        return None
    stages = (req.plan or {}).get("stages") or []
    if req.stage + 1 >= len(stages):
        return None
    step = stages[req.stage]
    if not step.get("escalate_when_nobody_online") or step.get("on_deadline") != "escalate":
        return None
    if events.is_anyone_online(req.audience_groups):
        return None
    who = " or ".join(req.audience_groups) or "staff"
    won = _escalate(
        req,
        stages[req.stage + 1],
        now=now,
        guard={"stage": req.stage, "deadline__gt": now},
        why=f"Nobody of {who} was online",
    )
    if not won:
        return None
    req.refresh_from_db()
    return req


def _escalate(req: ApprovalRequest, nxt: dict[str, Any], *, now: datetime, guard: dict[str, Any], why: str) -> bool:
    """Hand a request whose step timed out to the next step's groups, with a new deadline."""
    groups = list(nxt.get("groups") or [])
    quorum = int(nxt.get("quorum") or 1)
    deadline = now + timedelta(seconds=int(nxt["deadline_seconds"]))
    payload = {
        "reason": f"{why}: escalated{_rule_note(req)}",
        "from_groups": req.audience_groups,
        "to_groups": groups,
        "stage": req.stage + 1,
        "quorum": quorum,
        "deadline": deadline.isoformat(),
    }
    return transition(
        req,
        to=Status.PENDING,
        guard=guard,
        fields={
            "stage": req.stage + 1,
            "audience": audience(groups),
            "reached_audience": reached(req.reached_audience or req.audience, groups),
            "quorum": quorum,
            "deadline": deadline,
        },
        rows=[{"kind": AuditKind.ESCALATED, "actor_label": BY_DEADLINE, "payload": payload}],
        now=now,
    )


def _answer_at_deadline(req: ApprovalRequest, *, approve: bool, now: datetime, guard: dict[str, Any], why: str) -> bool:
    """Answer a request whose last step timed out as the step says: approve, or deny (expired)."""
    reason = f"{why}: {'approved' if approve else 'denied'} by deadline{_rule_note(req)}"
    deadline = req.deadline.isoformat()
    return transition(
        req,
        to=Status.APPROVED if approve else Status.EXPIRED,
        guard=guard,
        fields={"decided_at": now, "decided_by_label": BY_DEADLINE, "reason": reason},
        rows=[
            {
                "kind": AuditKind.DECIDED if approve else AuditKind.EXPIRED,
                "actor_label": BY_DEADLINE,
                "payload": {"approve": approve, "reason": reason, "deadline": deadline},
            }
        ],
        now=now,
    )


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
