"""Celery adapters for Responses API runs (house rule 7): ids in, one call into runs.py.

Every trigger calls the same idempotent step (`runs.advance` claims the run with a conditional
UPDATE and a lease): the task queued when a run starts, the one queued after commit of a
decision on one of its requests (`runs.on_decision`), the retry countdown after a
transient error, and the beat sweep, which heals all of them: waiting runs whose approvals are
all decided, running runs whose lease expired (a dead worker, a retry that is due), queued
runs whose task was lost. acks_late: a task whose worker died is delivered again, and finds the
step done or takes it up (runs.py says which steps may be sent again). runs.py queues
`advance_run` by its name (`runs.queue_step`): this module imports runs.py, never the reverse.
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from approvals import services
from realtime_bridge import runs


@shared_task(name=runs.ADVANCE_RUN_TASK, acks_late=True, ignore_result=True)
def advance_run(pk: int) -> None:
    runs.advance(pk)


@shared_task(acks_late=True, ignore_result=True)
def sweep_runs() -> None:
    for pk in runs.runs_to_advance(now=timezone.now()):
        advance_run.delay(pk)


@shared_task(ignore_result=True)
def sweep_relay_leases() -> None:
    """Close the relay sessions whose process died (their lease ran out; realtime_bridge/leases.py)."""
    services.close_lapsed_sessions(now=timezone.now())
