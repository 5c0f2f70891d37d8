"""Countersign's Prometheus metrics (README "Observability"; deploy/grafana/countersign.json).

Two kinds:
- Events, counted where they happen (decisions, upstream errors, notification deliveries) in
  whichever process they happen: the web processes, the relay, the Celery worker. Under
  PROMETHEUS_MULTIPROC_DIR (set by config/embedded.py, the test stack and the deployment)
  prometheus_client keeps each process's values in files there, and /metrics adds them up.
- States, read when Prometheus scrapes (`StateCollector`): pending requests per group, open
  sessions and the outbox from the database, the Celery queue from Redis. The database is the
  truth, so no process has to keep a gauge in step with it (and a dead process leaves none behind).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.db.models import Count
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from approvals.models import ApprovalRequest, RealtimeSession

logger = logging.getLogger(__name__)

# Who or what decided, as ApprovalRequest.decided_by_label records it (approvals/services).
DECIDERS = ("staff", "policy", "grant", "deadline", "other")
# Seconds: a policy answers in milliseconds, people in seconds to minutes, deadlines at 60 s+.
DECISION_BUCKETS = (0.05, 0.25, 1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 300, 600, 1800)
# How long after its deadline a request was answered by the deadline: the countdown task aims
# 0.2 s after it, the beat sweep (every 2 s) heals a lost task.
LATENESS_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300)

DECISIONS = Counter(
    "countersign_decisions",
    "Approval requests answered, by outcome and by who or what decided.",
    ["outcome", "decided_by"],
)
TIME_TO_DECISION = Histogram(
    "countersign_time_to_decision_seconds",
    "From the request's arrival to its answer, by who or what decided.",
    ["decided_by"],
    buckets=DECISION_BUCKETS,
)
DEADLINE_LATENESS = Histogram(
    "countersign_deadline_lateness_seconds",
    "How long after its deadline a request was answered by the deadline (task or sweep).",
    buckets=LATENESS_BUCKETS,
)
UPSTREAM_ERRORS = Counter(
    "countersign_upstream_errors",
    "Error events from OpenAI and failures of upstream connections, by type.",
    ["type"],
)
NOTIFICATIONS = Counter(
    "countersign_notification_deliveries",
    "Notification tasks (push, email, Slack) by channel and outcome (done, retry, failed).",
    ["channel", "outcome"],
)


def decider(req: ApprovalRequest) -> str:
    """staff / policy / grant / deadline / other, from what the services record."""
    label = req.decided_by_label or ""
    if req.decided_by_id is not None:
        return "staff"
    if label == "deadline":
        return "deadline"
    if label.startswith("policy"):
        return "policy"
    if label.startswith("grant"):
        return "grant"
    return "other"


def on_decision_committed(*, request_id: int, **_: Any) -> None:
    """approvals.events.decision_committed: count the answer, its time and, for a deadline's
    answer, its lateness. Runs after commit in the process that decided, after the relay nudge
    (registered first, so the guest's answer never waits for this); one read by primary key."""
    fields = ("status", "created_at", "decided_at", "deadline", "decided_by_id", "decided_by_label", "session_id")
    req = ApprovalRequest.objects.filter(pk=request_id).only(*fields).first()
    if req is None or req.decided_at is None:
        return
    by = decider(req)
    DECISIONS.labels(outcome=req.status, decided_by=by).inc()
    TIME_TO_DECISION.labels(decided_by=by).observe(max(0.0, (req.decided_at - req.created_at).total_seconds()))
    if by == "deadline":
        DEADLINE_LATENESS.observe(max(0.0, (req.decided_at - req.deadline).total_seconds()))
    logger.info(
        "decision committed: request %s %s by %s",
        request_id,
        req.status,
        by,
        extra={"outcome": str(req.status), "decided_by": by},
    )


def on_upstream_error(*, error_type: str, **_: Any) -> None:
    """approvals.events.upstream_error (sent by the relay)."""
    UPSTREAM_ERRORS.labels(type=error_type or "unknown").inc()


# Notification tasks (notify/tasks.py) by name, and the channel each delivers on.
NOTIFY_TASK_CHANNELS = {
    "notify.tasks.push_request": "push",
    "notify.tasks.email_reminder": "email",
    "notify.tasks.slack_post": "slack",
    "notify.tasks.slack_update": "slack",
}


def on_task_outcome(task_name: str, outcome: str) -> None:
    channel = NOTIFY_TASK_CHANNELS.get(task_name)
    if channel is not None:
        NOTIFICATIONS.labels(channel=channel, outcome=outcome).inc()


class StateCollector(Collector):
    """The gauges read at scrape time (one query each, all on indexed columns)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield self._pending()
        yield self._sessions()
        yield from self._outbox()
        yield self._queue()

    def _pending(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "countersign_pending_requests",
            'Requests waiting for people, by group of their current step ("*": any staff).',
            labels=["group"],
        )
        counts: dict[str, int] = {}
        rows = ApprovalRequest.objects.pending().values("audience").annotate(n=Count("pk")).order_by()
        for row in rows:
            for group in [name for name in row["audience"].split(",") if name] or ["*"]:
                counts[group] = counts.get(group, 0) + row["n"]
        for group, n in sorted(counts.items()):
            family.add_metric([group], n)
        return family

    def _sessions(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "countersign_sessions_open",
            "Sessions open now, by kind (relay: relayed WebSockets; sideband: calls; responses: runs).",
            labels=["kind"],
        )
        counts = dict(
            RealtimeSession.objects.filter(status=RealtimeSession.Status.OPEN)
            .values_list("kind")
            .annotate(n=Count("pk"))
            .order_by()
        )
        for kind in RealtimeSession.Kind.values:
            family.add_metric([kind], counts.get(kind, 0))
        return family

    def _outbox(self) -> Iterable[GaugeMetricFamily]:
        from django.utils import timezone

        backlog = GaugeMetricFamily(
            "countersign_outbox_backlog", "Answers committed but not yet sent upstream (open sessions)."
        )
        oldest = GaugeMetricFamily(
            "countersign_outbox_oldest_seconds", "Age of the oldest answer not yet sent upstream (0: none)."
        )
        unsent = ApprovalRequest.objects.owed_upstream()
        backlog.add_metric([], unsent.count())
        first = unsent.values_list("decided_at", flat=True).first()
        oldest.add_metric([], max(0.0, (timezone.now() - first).total_seconds()) if first else 0.0)
        return [backlog, oldest]

    def _queue(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "countersign_celery_queue_depth", "Tasks waiting in the Celery queue on Redis (LLEN).", labels=["queue"]
        )
        queue = settings.CELERY_TASK_DEFAULT_QUEUE
        try:
            family.add_metric([queue], celery_queue_depth(queue))
        except Exception:  # a scrape must still answer while Redis is away; healthz says why
            logger.warning("Celery queue depth unavailable: Redis did not answer", exc_info=True)
        return family


# kombu's Redis transport keeps one list per priority step: the queue's name for priority 0,
# then name + "\x06\x16" + priority (kombu.transport.redis.Channel._q_for_pri).
PRIORITY_STEPS = (0, 3, 6, 9)


def celery_queue_depth(queue: str) -> int:
    import redis

    prefix = str(settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", ""))
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        with client.pipeline(transaction=False) as pipe:
            for pri in PRIORITY_STEPS:
                pipe.llen(f"{prefix}{queue}" + (f"\x06\x16{pri}" if pri else ""))
            return sum(int(n) for n in pipe.execute())
    finally:
        client.close()
