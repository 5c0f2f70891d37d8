"""Celery adapters for Responses API runs (house rule 7): ids in, one call into runs.py.

Both triggers call the same idempotent step (`runs.advance` claims the run with a conditional
UPDATE): the task queued when a run starts, and the beat sweep that resumes the waiting runs
whose approvals are all decided (nobody listens to a Responses session's relay nudge).
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from realtime_bridge import runs


@shared_task(acks_late=True, ignore_result=True)
def advance_run(pk: int) -> None:
    runs.advance(pk)


@shared_task(acks_late=True, ignore_result=True)
def sweep_runs() -> None:
    for pk in runs.runs_to_advance(now=timezone.now()):
        advance_run.delay(pk)
