"""Binds each Celery task's ids for the logs (observability/logs.py): the task's name and id, and
for a task about one approval request, that request (the services bind its session)."""

from __future__ import annotations

from typing import Any

import structlog

# Tasks whose first argument is an ApprovalRequest's pk.
REQUEST_TASKS = frozenset(
    {
        "approvals.tasks.expire_request",
        "notify.tasks.push_request",
        "notify.tasks.email_reminder",
        "notify.tasks.slack_post",
        "notify.tasks.slack_update",
    }
)


def on_task_prerun(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    name = str(getattr(task, "name", ""))
    structlog.contextvars.bind_contextvars(task=name, task_id=task_id)
    if name in REQUEST_TASKS and args:
        structlog.contextvars.bind_contextvars(approval_request_id=args[0])


def on_task_postrun(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()
