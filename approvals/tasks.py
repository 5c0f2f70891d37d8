"""Celery adapters (house rule 7): ids in, one service call, nothing else.

Both deadline triggers call the same idempotent service: the countdown task that
services.open_request schedules after commit fires on time, and the beat sweep
(CELERY_BEAT_SCHEDULE, every 2 s) heals a task that was lost or redelivered late.
acks_late is safe because a repeat is a no-op (the conditional UPDATE in the service).

The services schedule the deadline task by its name (services.EXPIRE_REQUEST_TASK), so that
they need not import this module, which imports them.
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from approvals import services


@shared_task(name=services.EXPIRE_REQUEST_TASK, acks_late=True, ignore_result=True)
def expire_request(pk: int) -> None:
    services.expire_request(pk)


@shared_task(acks_late=True, ignore_result=True)
def sweep_overdue() -> None:
    services.expire_overdue(now=timezone.now())


@shared_task(acks_late=True, ignore_result=True)
def sweep_claims_and_presence() -> None:
    # Claims older than CLAIM_SECONDS (the cards already ignore them) and presence rows of
    # dashboards whose process died without a disconnect. Two cheap queries when all is well.
    services.release_expired_claims()
    services.forget_stale_dashboards()
