"""Email reminders: to the routed staff who left email on, when a request is still unclaimed at
half its step's deadline, or when it escalates to them. Any SMTP server (Django's mail)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals.models import ApprovalRequest
from notify.models import EmailSent
from notify.services import is_claimed, routed_staff

HALF_DEADLINE = EmailSent.Kind.HALF_DEADLINE
ESCALATED = EmailSent.Kind.ESCALATED


def enabled() -> bool:
    return bool(settings.EMAIL_HOST)


def half_deadline_at(req: ApprovalRequest) -> datetime:
    """Halfway through the request's current step."""
    return req.deadline - timedelta(seconds=req.step_seconds / 2)


def _message(req: ApprovalRequest, *, kind: str, to: str) -> EmailMessage:
    session = req.session
    link = f"{settings.SITE_URL}/?request={req.pk}"
    local_deadline = timezone.localtime(req.deadline).strftime("%H:%M:%S %Z")
    if kind == ESCALATED:
        subject = f"Escalated to you: {req.tool_title} for {session.label}"
        opening = "A request that nobody decided in time is now yours to decide."
    else:
        subject = f"Still waiting: {req.tool_title} for {session.label}"
        opening = "Nobody has taken this request yet, and half of its time has passed."
    lines = [
        opening,
        "",
        f"{req.tool_title} on {req.server_title}, asked by {session.label}.",
        f"Rule: {req.rule_label or 'default'}. Decide by {local_deadline}, or the deadline decides.",
        "",
        f"Open it: {link}",
        "",
        "You receive this because you are on staff for this request and email notifications are on "
        f"(turn them off at {settings.SITE_URL}/notify/profile).",
    ]
    return EmailMessage(subject=subject, body="\n".join(lines), to=[to])


def ensure_reminder(request_id: int, *, stage: int, kind: str) -> int:
    """Email the staff the request's step `stage` is routed to (with email on and an address),
    once per (request, stage, kind): the marker row is claimed before sending, so a repeated
    task sends nothing; a failed send removes it again and raises for the task's retry.
    Nothing is sent when the request is decided, has moved to another step, or (for the
    half-deadline reminder) is claimed. Returns how many people were emailed."""
    req = ApprovalRequest.objects.for_one().filter(pk=request_id).first()
    if req is None or req.status != ApprovalRequest.Status.PENDING or req.stage != stage or not enabled():
        return 0
    if kind == HALF_DEADLINE and is_claimed(req):
        return 0
    addresses = sorted({email for email in routed_staff(req, channel="email").values_list("email", flat=True) if email})
    if not addresses:
        return 0
    try:
        with transaction.atomic():
            marker = EmailSent.objects.create(request=req, stage=stage, kind=kind, recipients=len(addresses))
    except IntegrityError:
        return 0  # sent (or being sent) by an earlier delivery of the same task
    try:
        # One message per person: staff do not see each other's addresses.
        with get_connection() as connection:
            connection.send_messages([_message(req, kind=kind, to=address) for address in addresses])
    except Exception:
        marker.delete()
        raise
    return len(addresses)
