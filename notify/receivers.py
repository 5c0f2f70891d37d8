"""What notifications do after a request's change commits: plain functions, connected to the
after-commit hooks of approvals/events.py in apps.py. They only read the request and enqueue
tasks (notify/tasks.py), so the process that committed never waits on a push service, SMTP or
Slack.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from approvals.models import ApprovalRequest
from notify import mail, push, slack, tasks
from notify.models import SlackMessage


def _pending(request_id: int) -> ApprovalRequest | None:
    req = ApprovalRequest.objects.filter(pk=request_id, status=ApprovalRequest.Status.PENDING).first()
    return req


def _schedule_half_deadline(req: ApprovalRequest) -> None:
    countdown = max(0.0, (mail.half_deadline_at(req) - timezone.now()).total_seconds())
    tasks.email_reminder.apply_async((req.pk, req.stage, mail.HALF_DEADLINE), countdown=countdown)


def on_request_opened(*, request_id: int, **_: Any) -> None:
    """A request now waits for staff: push to the routed staff now, email them at half the
    deadline if nobody has taken it, post it to their Slack channel."""
    req = _pending(request_id)
    if req is None:
        return
    if push.enabled():
        tasks.push_request.apply_async((req.pk, push.NEW))
    if mail.enabled():
        _schedule_half_deadline(req)
    if slack.enabled():
        tasks.slack_post.apply_async((req.pk,))


def on_request_escalated(*, request_id: int, **_: Any) -> None:
    """The request moved to its next step's groups: push and email them now (and remind them at
    half the new step), post it to their channel and mark the earlier channels' messages."""
    req = _pending(request_id)
    if req is None:
        return
    if push.enabled():
        tasks.push_request.apply_async((req.pk, push.ESCALATED))
    if mail.enabled():
        tasks.email_reminder.apply_async((req.pk, req.stage, mail.ESCALATED))
        _schedule_half_deadline(req)
    if slack.enabled():
        tasks.slack_post.apply_async((req.pk,))
        tasks.slack_update.apply_async((req.pk,))


def on_decision_committed(*, request_id: int, **_: Any) -> None:
    """The request was decided (by a person anywhere, the deadline or the policy), expired or
    cancelled: its Slack messages show the outcome and who decided."""
    if slack.enabled() and SlackMessage.objects.filter(request_id=request_id).exists():
        tasks.slack_update.apply_async((request_id,))
