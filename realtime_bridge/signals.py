"""A decision on a request of a waiting Responses run queues the run's next step at once.

Nobody holds a socket for a Responses session, so the relay nudge that every answer sends
(approvals.events.relay_decision) reaches no one, and approvals/ changes its requests only through
approvals/services.py, which this app does not hook into. What every answer does write is its
audit row (DECIDED by a person, a quorum or a policy; EXPIRED by the deadline), in the transaction
of the answer: that row is the hook. The handler only registers an after-commit callback
(runs.on_decision); the beat sweep still resumes the run if the task is lost.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from approvals.models import AuditEvent
from realtime_bridge import runs


@receiver(post_save, sender=AuditEvent, dispatch_uid="realtime_bridge_resume_runs")
def resume_run_on_decision(sender: Any, instance: AuditEvent, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if created and not raw:
        runs.on_decision(kind=instance.kind, session_id=instance.session_id)
