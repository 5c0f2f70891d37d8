"""What observability costs: a /metrics scrape, the decision hook's count, a JSON log line.

    python -m config.embedded exec .venv/bin/python bench/metrics_overhead.py [--pending 1000] [--groups 5]

On a scratch database (SQLite unless DATABASE_URL is set): --pending requests wait for --groups
groups (each routed to two of them), a fifth as many are decided. Then, in this process:

- a scrape of /metrics (Django's test client: the view, its four reads and Redis's LLEN), p50/p99;
- observability.metrics.on_decision_committed, what every decision adds after its commit, p50/p99;
- one log line through the JSON formatter with four bound ids, mean.
"""

from __future__ import annotations

import argparse
import io
import logging
import time

from _setup import bench_env, percentile, setup_django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pending", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=5)
    parser.add_argument("--scrapes", type=int, default=100)
    args = parser.parse_args()
    bench_env(OPENAI_API_KEY="sk-bench")
    setup_django()

    import structlog
    from django.contrib.auth.models import Group, User
    from django.test import Client

    from approvals import services
    from approvals.models import ApprovalRequest
    from observability.logs import json_formatter
    from observability.metrics import on_decision_committed

    names = [f"group-{n}" for n in range(args.groups)]
    for name in names:
        Group.objects.get_or_create(name=name)
    rules = "\n".join(
        f"  - {{label: r{n}, tool: tool_{n}, outcome: ask, approvers: [{name}, {names[(n + 1) % len(names)]}],"
        " deadline_seconds: 3600}"
        for n, name in enumerate(names)
    )
    services.import_policies(f"rules:\n{rules}\n", by=None, source="bench")
    boss = User.objects.create_superuser("boss", "boss@example.org", "x")
    session = services.open_session(kind="relay", label="Bench", metadata={})
    decided = []
    for i in range(args.pending + args.pending // 5):
        req, _ = services.open_request(
            session=session,
            upstream_id=f"mcpr_{i}",
            server_label="hotel",
            tool_name=f"tool_{i % len(names)}",
            arguments="{}",
            raw_item={},
        )
        if i >= args.pending:
            decided.append(services.decide(req, approve=True, by=boss).pk)

    client = Client(HTTP_HOST="127.0.0.1")
    scrapes = []
    for _ in range(args.scrapes):
        started = time.perf_counter()
        response = client.get("/metrics")
        scrapes.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    hook = []
    for pk in decided:
        started = time.perf_counter()
        on_decision_committed(request_id=pk)
        hook.append((time.perf_counter() - started) * 1000)

    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(json_formatter())
    logger = logging.getLogger("bench.json")
    logger.propagate = False
    logger.addHandler(handler)
    structlog.contextvars.bind_contextvars(request_id="r" * 32, session_id=1, approval_request_id=2, user="boss")
    lines = 10_000
    started = time.perf_counter()
    for n in range(lines):
        logger.warning("decision committed: request %s approved by staff", n, extra={"outcome": "approved"})
    per_line_us = (time.perf_counter() - started) / lines * 1e6

    pending = ApprovalRequest.objects.pending().count()
    print(f"pending requests: {pending} over {len(names)} groups; decided: {len(decided)}")
    print(f"/metrics scrape: p50 {percentile(scrapes, 50):.1f} ms, p99 {percentile(scrapes, 99):.1f} ms")
    print(f"decision hook (count + log line): p50 {percentile(hook, 50):.2f} ms, p99 {percentile(hook, 99):.2f} ms")
    print(f"JSON log line with 4 bound ids: {per_line_us:.1f} µs")


if __name__ == "__main__":
    main()
