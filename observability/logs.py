"""Structured logs: LOG_FORMAT=json writes one JSON object per line, with the ids of what the
line is about (README "Observability").

Every stdlib log line of every process goes through `json_formatter`, which adds the values
bound with structlog's contextvars: `request_id` and `user` (bound per HTTP request by
observability.middleware), `session_id` and `approval_request_id` (bound by the decide service,
the deadline service and the relay where they act on a request), `task` and `task_id` (bound per
Celery task by observability.apps). structlog's contextvars are a library, not a first-party
module: approvals/ and realtime_bridge/ bind their ids without importing anything upward.
"""

from __future__ import annotations

import logging

import structlog

# What each JSON line starts with: the time, level, logger and message ("event").
_PRE_CHAIN: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.ExtraAdder(),
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def json_formatter() -> logging.Formatter:
    """The `()` factory of the "json" formatter in settings.LOGGING."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_PRE_CHAIN,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False, default=str),
        ],
    )
