"""What consulting grants costs on the path of every card (issue 14).

    python -m config.embedded exec .venv/bin/python bench/grant_lookup.py [--requests 300] [--grants 200]

On a scratch database (SQLite, or a scratch PostgreSQL database beside DATABASE_URL), opens
--requests approval requests through approvals.services.open_request in three situations and
prints p50/p99 of each call, the number of queries it made, and p50/p99 of the grant look-up
(services.find_grant) alone:

- no grants at all (what every install without grants pays: the turn and the grant look-ups);
- --grants live grants of other sessions for the same tool (the look-up filters them out);
- a live grant of this session for the tool (the call is approved at once by it).
"""

from __future__ import annotations

import argparse
import json
import time

from _setup import bench_env, percentile, setup_django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--grants", type=int, default=200)
    args = parser.parse_args()
    bench_env()
    setup_django()

    from django.contrib.auth.models import User
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from approvals import events, services
    from approvals.services import _transition

    # Nothing leaves the process: the dashboards and Celery are not what is measured here.
    events.send_request = lambda req: True
    events.request_changed = lambda pk: True  # type: ignore[assignment]
    events.relay_decision = lambda **kw: True
    events.grants_changed = lambda: True
    _transition.schedule_expiry = lambda *a, **kw: None

    server, _ = services.register_mcp_server(label="hotel", url="https://mcp.hotel.example/mcp")
    schema = {"type": "object", "properties": {"room": {"type": "string"}, "amount": {"type": "number"}}}
    services.store_tools(server, [{"name": "issue_refund", "input_schema": schema}], now=timezone.now())
    mia = User.objects.create_user("mia", is_staff=True, first_name="Mia")
    counter = iter(range(10**9))

    def open_one(session):
        n = next(counter)
        arguments = json.dumps({"room": "1204", "amount": n % 90 + 1})
        connection.queries_log.clear()
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            req, _ = services.open_request(
                session=session,
                upstream_id=f"mcpr_{n}",
                server_label="hotel",
                tool_name="issue_refund",
                arguments=arguments,
                raw_item={},
            )
        return (time.perf_counter() - started) * 1000, len(queries), req

    def lookup(session) -> float:
        started = time.perf_counter()
        services.find_grant(
            session=session,
            server_label="hotel",
            tool_name="issue_refund",
            arguments='{"amount": 7}',
            now=timezone.now(),
        )
        return (time.perf_counter() - started) * 1000

    def run(label: str, session) -> None:
        times, counts, looks, statuses = [], [], [], set()
        for _ in range(args.requests):
            ms, count, req = open_one(session)
            times.append(ms)
            counts.append(count)
            statuses.add(req.status)
            looks.append(lookup(session))
        print(
            f"{label:<44} open_request p50 {percentile(times, 50):6.2f} ms  p99 {percentile(times, 99):6.2f} ms  "
            f"queries {min(counts)}-{max(counts)}  find_grant p50 {percentile(looks, 50):5.2f} ms  "
            f"p99 {percentile(looks, 99):5.2f} ms  ({', '.join(sorted(statuses))})"
        )

    session = services.open_session(kind="relay", label="Room 1204", metadata={"room": "1204"})
    services.add_conversation_line(session=session, role="user", text="a refund please")
    run("no grants", session)
    for i in range(args.grants):
        other = services.open_session(kind="relay", label=f"Room {i}", metadata={"room": str(2000 + i)})
        req, _ = services.open_request(
            session=other, upstream_id="g", server_label="hotel", tool_name="issue_refund", arguments="{}", raw_item={}
        )
        services.decide(req, approve=True, by=mia, scope="session")
    run(f"{args.grants} grants of other sessions", session)
    req, _ = services.open_request(
        session=session, upstream_id="mine", server_label="hotel", tool_name="issue_refund", arguments="{}", raw_item={}
    )
    services.decide(req, approve=True, by=mia, scope="session")
    run("a grant of this session (approved at once)", session)


if __name__ == "__main__":
    main()
