"""The one place where an approval request changes state (house rules 1-4).

A change is one conditional UPDATE guarded by the states the request may leave (of two racing
callers exactly one matches: the database serialises them on the row lock), its audit rows in
the same transaction under one take of the chain lock, and what leaves the process registered
after commit. What leaves depends only on what the request became:

- answered (approved, denied, expired): the relay nudge first (a guest is waiting), then the
  dashboards, then `events.decision_committed` (a waiting Responses run resumes);
- a new pending request: the dashboards (then audit NOTIFIED) and its deadline task;
- anything else (cancelled, escalated, a vote counted): the dashboards, and the deadline task
  when the change set a new deadline.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from functools import partial
from typing import Any

from celery import current_app
from django.db import transaction
from django.utils import timezone

from approvals import events
from approvals.models import ApprovalRequest, AuditKind
from approvals.services._common import Status, on_commit
from audit import writer

# The deadline task, named rather than imported: approvals.tasks calls these services, so they
# must not import it back (approvals/apps.py imports the tasks module in every process, which
# registers the task with the Celery app under this name).
EXPIRE_REQUEST_TASK = "approvals.tasks.expire_request"
# Celery measures a countdown on the worker's clock; firing a hair before the deadline would
# make the task a no-op and leave the request to the sweep (up to 2 s later), so aim just after.
EXPIRY_SLACK_SECONDS = 0.2

AuditRow = dict[str, Any]


def audience(groups: list[str]) -> str:
    """The stored form of the groups a step names (ApprovalRequest.audience)."""
    return f",{','.join(groups)}," if groups else ""


def reached(earlier: str, groups: list[str]) -> str:
    """ApprovalRequest.reached_audience after a step of `groups` ([] = any staff, kept as "*")
    on top of `earlier` (its stored form, or the first step's audience)."""
    names = [name for name in earlier.split(",") if name] or (["*"] if earlier == "" else [])
    for name in groups or ["*"]:
        if name not in names:
            names.append(name)
    return f",{','.join(names)},"


def transition(
    req: ApprovalRequest,
    *,
    to: str,
    rows: list[AuditRow],
    now: datetime,
    fields: dict[str, Any] | None = None,
    allowed_from: Collection[str] = (Status.PENDING,),
    guard: dict[str, Any] | None = None,
    inserted: bool = False,
) -> bool:
    """Move `req` to status `to` (setting `fields`), if it is still in one of `allowed_from` and
    matches `guard` (e.g. its deadline and step). `rows` are its audit rows (kind, actor,
    actor_label, payload); `inserted`: the caller has just inserted the row in state `to` in
    its transaction, so there is nothing to update. Returns False, having changed nothing,
    when another change won; the caller raises or skips. On success `req` carries the new
    values. Side effects: the audit rows now, the effects of the module docstring on commit."""
    fields = dict(fields or {})
    if not inserted and (to != Status.PENDING or "stage" in fields):
        # A claim is on the request at its current step: a decision or an escalation ends it
        # (the DECIDED / ESCALATED row says why; no CLAIM_RELEASED row of its own).
        fields.update(claimed_by=None, claimed_by_label="", claimed_at=None)
    # No savepoint of its own: inside a caller's transaction a failure here must fail that
    # whole change anyway, and every savepoint costs two statements on the decision path.
    with transaction.atomic(savepoint=False):
        if not inserted:
            won = ApprovalRequest.objects.filter(pk=req.pk, status__in=list(allowed_from), **(guard or {})).update(
                status=to, **fields
            )
            if won != 1:
                return False
            for name, value in {**fields, "status": to}.items():
                setattr(req, name, value)
        writer.record_many(
            [{**row, "request_id": req.pk, "session_id": req.session_id, "created_at": now} for row in rows]
        )
        _after_commit(req, kind=str(rows[-1]["kind"]), inserted=inserted, new_deadline="deadline" in fields)
    return True


def _after_commit(req: ApprovalRequest, *, kind: str, inserted: bool, new_deadline: bool) -> None:
    if req.status in ApprovalRequest.ANSWERED:
        decision = {"upstream_id": req.upstream_id, "approve": req.status == Status.APPROVED, "reason": req.reason}
        on_commit(partial(events.relay_decision, session_id=req.session_id, request_id=req.pk, decision=decision))
        on_commit(partial(events.request_changed, req.pk))
        on_commit(
            partial(
                events.decision_committed.send,
                request_id=req.pk,
                session_id=req.session_id,
                status=str(req.status),
                kind=kind,
            )
        )
    elif inserted:
        on_commit(partial(notify_new, req.pk, req))
        on_commit(partial(schedule_expiry, req.pk, req.deadline))
        on_commit(partial(events.request_opened.send, request_id=req.pk))
        on_commit(partial(skip_step_if_nobody_online, req.pk))
    else:
        on_commit(partial(events.request_changed, req.pk))
        if new_deadline:
            on_commit(partial(schedule_expiry, req.pk, req.deadline))
            if kind == AuditKind.ESCALATED:
                on_commit(partial(events.request_escalated.send, request_id=req.pk))
            on_commit(partial(skip_step_if_nobody_online, req.pk))


def skip_step_if_nobody_online(request_id: int) -> None:
    """After a pending request reached a step (routed, or escalated): tell events.step_reached,
    whose receiver (services.decisions.escalate_if_nobody_online, connected in approvals/apps.py)
    escalates at once when the step says so and nobody of its groups is reachable. A hook rather
    than an import: decisions imports this module, the one place of transitions."""
    events.step_reached.send(request_id=request_id)


def schedule_expiry(request_id: int, deadline: datetime) -> None:
    """Hand the deadline task to Celery, to fire just after `deadline` (call after commit)."""
    countdown = max(0.0, (deadline - timezone.now()).total_seconds()) + EXPIRY_SLACK_SECONDS
    current_app.tasks[EXPIRE_REQUEST_TASK].apply_async((request_id,), countdown=countdown)


def notify_new(request_id: int, created: ApprovalRequest | None = None) -> None:
    """After commit of a new request: put it on every dashboard, then record that staff were
    notified. The audit row follows the broadcast (its own transaction): it records an event
    that happened outside the database, and only once it has happened. `created` is the row as
    the committed transaction wrote it (with its session and server): no need to read it back."""
    req = created if created is not None else ApprovalRequest.objects.for_one().filter(pk=request_id).first()
    if req is not None and events.send_request(req):
        writer.record(
            kind=AuditKind.NOTIFIED,
            request_id=request_id,
            session_id=req.session_id,
            payload={"group": events.DASHBOARD, "audience": req.audience_groups or "any staff"},
        )
