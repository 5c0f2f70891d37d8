"""Decisions: a person decides (alone, or toward a quorum), or the deadline of the request's
step applies what the step says (deny, approve, escalate). Of two at once exactly one wins
(the conditional UPDATE in `_transition.transition`); the other is told, or skips."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from approvals import events
from approvals.models import ApprovalRequest, AuditKind
from approvals.policy import Requires
from approvals.services import grants
from approvals.services._common import (
    BY_DEADLINE,
    MAX_INTERNAL_NOTE_LENGTH,
    MAX_REASON_LENGTH,
    RequirementMissing,
    Status,
    TransitionError,
    closed_message,
    user_label,
)
from approvals.services._transition import audience, reached, transition
from approvals.services.passkeys import StepUp, step_up_record, verify_step_up

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def _check_reason(reason: str) -> str:
    reason = reason.strip()
    if len(reason) > MAX_REASON_LENGTH:
        raise ValueError(f"The reason is longer than {MAX_REASON_LENGTH} characters.")
    return reason


def _check_internal_note(note: str) -> str:
    note = note.strip()
    if len(note) > MAX_INTERNAL_NOTE_LENGTH:
        raise ValueError(f"The internal note is longer than {MAX_INTERNAL_NOTE_LENGTH} characters.")
    return note


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


def decide(
    req: ApprovalRequest,
    *,
    approve: bool,
    by: User,
    reason: str = "",
    confirmed: bool = False,
    step_up: StepUp | None = None,
    guest_note: str = "",
    internal_note: str = "",
    arguments: str = "",
    scope: str = "call",
    minutes: int | None = None,
    constraints: dict[str, Any] | None = None,
) -> ApprovalRequest:
    """A person approves or denies a pending request before its deadline, if check_may_decide
    lets them. One denial decides; an approval decides once the step's quorum of distinct people
    approved, else it is counted (audit VOTED) and the request stays pending. `guest_note` (or
    `reason`, its older name) goes upstream as the answer's reason; `internal_note` only into
    the audit. What the rule froze into the plan must be given (a note, `confirmed`, `step_up`).
    `arguments` approves with changes, `scope` (+ `minutes`, `constraints`) grants the tool
    beyond this call (services/grants.py; never under a quorum rule).
    Side effects: audit DECIDED (or VOTED; GRANT_CREATED), after commit the relay nudge and a
    dashboard event. Raises RequirementMissing, StepUpRequired (a PermissionDenied),
    PermissionDenied, TransitionError (no longer pending, past its deadline, or already
    approved by this person) or ValueError (a note too long, an edit or grant refused).
    Nothing is changed when it raises."""
    # Every log line from here on names the request and its session (observability/logs.py).
    structlog.contextvars.bind_contextvars(
        approval_request_id=req.pk, session_id=req.session_id, user=by.get_username()
    )
    note = _check_reason(guest_note or reason)
    internal_note = _check_internal_note(internal_note)
    if not (by.is_active and by.is_staff):
        # Checked again here, not only in the view: the decider is part of the audit record.
        raise PermissionDenied("Only staff can decide approval requests.")
    edited, spec = _beyond_yes(req, approve, by, arguments, scope, minutes, constraints)
    extra = _check_requirements(req, approve=approve, by=by, note=note, confirmed=confirmed, step_up=step_up)
    if internal_note:
        extra["internal_note"] = internal_note
    for _attempt in range(3):
        if edited or spec is not None:
            outcome = _decide_and_grant(req, by=by, note=note, extra=extra, edited=edited, spec=spec)
        elif req.quorum <= 1 or not approve:
            outcome = _decide_at_once(req, approve=approve, by=by, reason=note, extra=extra)
        else:
            outcome = _vote(req, by=by, reason=note, extra=extra)
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


def _beyond_yes(
    req: ApprovalRequest,
    approve: bool,
    by: User,
    arguments: str,
    scope: str,
    minutes: int | None,
    constraints: dict[str, Any] | None,
) -> tuple[str, grants.GrantSpec | None]:
    """The edited arguments (canonical JSON, or "") and the grant asked for, checked; nothing
    when the decision is a plain yes or no."""
    if not arguments and scope in ("", "call"):
        return "", None
    if not approve:
        raise ValueError("Only an approval can change the arguments or grant more than this call.")
    if req.status == Status.PENDING:
        check_may_decide(req, by)  # who may decide comes before what is wrong with their edit
    if arguments and scope not in ("", "call"):
        raise ValueError("An approval with changes covers the one changed call: choose this call only.")
    if arguments and req.quorum > 1:
        raise ValueError("A rule with more than one approver cannot approve with changes: approve or deny.")
    if arguments:
        return grants.check_edited_arguments(req, arguments), None
    return "", grants.check_scope(req, scope=scope, minutes=minutes, constraints=constraints)


def _decide_and_grant(
    req: ApprovalRequest, *, by: User, note: str, extra: dict[str, Any], edited: str, spec: grants.GrantSpec | None
) -> ApprovalRequest | None:
    """An approval with changes, or an approval with a grant: the decision and its grant in one
    transaction (a lost decision makes no grant). None when it lost."""
    with transaction.atomic():
        if edited:
            extra = {**extra, "approved_with_changes": True, "asked_arguments": req.arguments, "arguments": edited}
            reason = grants.edit_reason(req, edited, note)
            done = _decide_at_once(req, approve=False, by=by, reason=reason, extra=extra, edited=edited)
        else:
            done = _decide_at_once(req, approve=True, by=by, reason=note, extra=extra)
        if done is None:
            return None
        grants.make_grant(done, by=by, now=done.decided_at or timezone.now(), spec=spec, edited=edited)
    return done


def decide_all(
    reqs: list[ApprovalRequest], *, by: User, guest_note: str = "", confirmed: bool = False
) -> list[tuple[ApprovalRequest, str | None]]:
    """Approve all: each request through decide() on its own (its own transaction and audit
    rows, its own permission, requirement, step-up and quorum checks), in order. `confirmed`:
    the person confirmed the whole batch, which stands for each rule's confirmation. Returns
    (request as it is now, None) for each one decided or counted toward its quorum, and
    (request, why in words) for each one that could not be; never raises for one of them."""
    results: list[tuple[ApprovalRequest, str | None]] = []
    for req in reqs:
        try:
            results.append((decide(req, approve=True, by=by, guest_note=guest_note, confirmed=confirmed), None))
        except (TransitionError, PermissionDenied, ValueError) as exc:
            # RequirementMissing is a ValidationError, StepUpRequired a PermissionDenied: a
            # passkey proves one decision, so such a request is decided on its own card.
            why = str(exc)
            if isinstance(exc, PermissionDenied) and Requires.from_plan(req.plan).step_up:
                why = _("This rule needs your passkey: approve this request on its own.")
            results.append((req, why))
        except RequirementMissing as exc:
            results.append((req, str(exc)))
    return results


def _check_requirements(
    req: ApprovalRequest, *, approve: bool, by: User, note: str, confirmed: bool, step_up: StepUp | None
) -> dict[str, Any]:
    """What the request's rule requires of a decision, checked in the order a person fixes it
    (type the note, confirm, touch the passkey); the step-up last, since checking it uses up
    its one-time challenge. Returns what the audit row records of it."""
    record: dict[str, Any] = {}
    if req.status != Status.PENDING:
        return record  # the transition refuses it and says who decided: that is the news
    requires = Requires.from_plan(req.plan)
    if requires:
        # Who may decide comes first: someone who may not is not told to type a note.
        check_may_decide(req, by)
    if not note and (requires.reason_on_approve if approve else requires.reason_on_deny):
        message = (
            _("This rule needs a note to the guest to approve: say why.")
            if approve
            else _("This rule needs a note to the guest to deny: say why.")
        )
        raise RequirementMissing(message, code="reason_required", field="reason")
    if requires.confirm:
        if not confirmed:
            raise RequirementMissing(
                _("This rule asks you to confirm the decision."), code="confirm_required", field="confirmed"
            )
        record["confirmed"] = True
    if requires.step_up:
        passkey = verify_step_up(req, user=by, step_up=step_up)
        record["step_up"] = step_up_record(passkey)
    return record


def _decide_at_once(
    req: ApprovalRequest, *, approve: bool, by: User, reason: str, extra: dict[str, Any], edited: str = ""
) -> ApprovalRequest | None:
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
        fields={
            "decided_at": now,
            "decided_by": by,
            "decided_by_label": label,
            "reason": reason,
            **({"edited_arguments": edited} if edited else {}),
        },
        rows=[
            {
                "kind": AuditKind.DECIDED,
                "actor": by,
                "actor_label": label,
                "payload": {"approve": approve, "reason": reason, "stage": req.stage, **extra},
            }
        ],
        now=now,
    )
    if not won:
        return None
    req.refresh_from_db()
    return req


def _vote(req: ApprovalRequest, *, by: User, reason: str, extra: dict[str, Any]) -> ApprovalRequest | None:
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
        payload: dict[str, Any] = {"approve": True, "reason": reason, "stage": locked.stage, **extra}
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
    structlog.contextvars.bind_contextvars(approval_request_id=req.pk, session_id=req.session_id)
    stages = (req.plan or {}).get("stages") or []
    step = stages[req.stage] if req.stage < len(stages) else {}
    step_seconds = step.get("deadline_seconds") or round((req.deadline - req.created_at).total_seconds())
    # For the record (audit), with the rule's label; the guest is told the real wait instead.
    why = f"No decision within {step_seconds} s at step {req.stage + 1}"
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


def wait_in_words(seconds: float) -> str:
    """A wait as a guest hears it: "45 s", "1 min 30 s", "2 min"."""
    total = max(0, round(seconds))
    minutes, rest = divmod(total, 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def guest_deadline_message(*, approve: bool, waited_seconds: float) -> str:
    """What the guest is told when nobody decided in time: the real total wait since the call
    was asked (over every step), in plain words, never a rule's label."""
    # English on purpose, not gettext: it goes upstream as the answer's reason for the model,
    # which speaks the guest's language; it must not depend on whichever staff member's
    # language is active when the deadline happens to be applied in their request.
    waited = wait_in_words(waited_seconds)
    if approve:
        return (
            f"Nobody from the staff answered in time (waited {waited}); the hotel's rules allow this without "
            "a confirmation, so it was done."
        )
    return f"Nobody from the staff could confirm this in time (waited {waited}), so it was not done."


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
    """Answer a request whose last step timed out as the step says: approve, or deny (expired).
    The guest hears the real wait (guest_deadline_message); the audit keeps the step and rule."""
    waited = (now - req.created_at).total_seconds()
    reason = guest_deadline_message(approve=approve, waited_seconds=waited)
    record = f"{why}: {'approved' if approve else 'denied'} by deadline{_rule_note(req)}"
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
                "payload": {
                    "approve": approve,
                    "reason": reason,
                    "deadline": deadline,
                    "record": record,
                    "rule": req.rule_label or None,
                    "waited_seconds": round(waited),
                },
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
