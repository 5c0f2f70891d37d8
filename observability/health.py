"""What makes /healthz say "degraded" (config/health.py): parts that answer, but late."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from approvals.models import ApprovalRequest


def degraded_reasons() -> list[str]:
    """Why the approval loop is behind, in words; [] when it is not. Two reads on indexed columns.

    - the outbox: more answers committed and not yet sent upstream than HEALTH_OUTBOX_MAX
      (the relay or run_bridge holding those sessions is stuck or gone);
    - the deadlines: a pending request past its deadline by more than
      HEALTH_DEADLINE_LATE_SECONDS (no Celery worker or beat is applying deadlines)."""
    reasons = []
    backlog = ApprovalRequest.objects.owed_upstream().count()
    if backlog > settings.HEALTH_OUTBOX_MAX:
        reasons.append(f"outbox: {backlog} answers not yet sent upstream (more than {settings.HEALTH_OUTBOX_MAX})")
    now = timezone.now()
    oldest = ApprovalRequest.objects.pending().overdue(now).order_by("deadline").values_list("deadline", flat=True)
    first = oldest.first()
    if first is not None:
        late = (now - first).total_seconds()
        if late > settings.HEALTH_DEADLINE_LATE_SECONDS:
            reasons.append(
                f"deadlines: a pending request is {late:.0f} s past its deadline"
                f" (more than {settings.HEALTH_DEADLINE_LATE_SECONDS} s)"
            )
    return reasons
