from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"
    verbose_name = "Observability"

    def ready(self) -> None:
        # The after-commit hooks of approvals/events.py, connected by name (nothing below
        # observability imports it), and Celery's task signals for the tasks' logs and counts.
        from celery import signals

        from approvals import events
        from observability import metrics, tasklogs

        events.decision_committed.connect(metrics.on_decision_committed)
        events.upstream_error.connect(metrics.on_upstream_error)
        signals.task_prerun.connect(tasklogs.on_task_prerun, weak=False, dispatch_uid="observability_prerun")
        signals.task_postrun.connect(tasklogs.on_task_postrun, weak=False, dispatch_uid="observability_postrun")
        for signal, outcome in ((signals.task_success, "done"), (signals.task_retry, "retry")):
            signal.connect(_count(outcome), weak=False, dispatch_uid=f"observability_{outcome}")
        signals.task_failure.connect(_count("failed"), weak=False, dispatch_uid="observability_failed")


def _count(outcome: str) -> Any:
    from observability import metrics

    def receiver(sender: Any = None, request: Any = None, **kwargs: Any) -> None:
        # task_success and task_failure send the task; task_retry sends its request.
        name = getattr(sender, "name", None) or getattr(request, "task", None) or ""
        metrics.on_task_outcome(str(name), outcome)

    return receiver
