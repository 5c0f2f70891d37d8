"""How fast the review search answers on 100,000 requests: the common searches through the real
view (form, count, one page rendered), each run REPEAT times, p50 and p95 printed.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/review_search.py

A scratch database is made beside the configured one (bench/_setup.py) and dropped at the end.
Target: p95 under 300 ms on PostgreSQL.
"""

from __future__ import annotations

import os
import random
import sys
import time
from datetime import timedelta
from typing import Any

from _setup import bench_env, percentile, setup_django

N_REQUESTS = int(os.environ.get("BENCH_REQUESTS", "100000"))
N_SESSIONS = N_REQUESTS // 5
REPEAT = int(os.environ.get("BENCH_REPEAT", "20"))
TOOLS = ["refund_minibar_charge", "unlock_door", "set_lights", "book_spa", "late_checkout", "charge_room", "order_food"]


def generate() -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.utils import timezone

    from approvals.models import ApprovalRequest, RealtimeSession

    rng = random.Random(6)
    users = [
        get_user_model().objects.create_user(f"staff{i}", is_staff=True, first_name=f"Staff {i}") for i in range(12)
    ]
    reviewer = get_user_model().objects.create_user("reviewer")
    reviewer.groups.add(Group.objects.get(name="compliance"))
    now = timezone.now()
    start = now - timedelta(days=90)
    sessions = RealtimeSession.objects.bulk_create(
        [
            RealtimeSession(
                label=f"Room {room}", metadata={"room": str(room)}, status="closed", opened_at=start, closed_at=start
            )
            for room in (rng.randint(100, 1999) for _ in range(N_SESSIONS))
        ],
        batch_size=5000,
    )
    batch: list[ApprovalRequest] = []
    statuses = ["approved"] * 6 + ["denied"] * 2 + ["expired", "cancelled"]
    for i in range(N_REQUESTS):
        created = start + timedelta(seconds=rng.uniform(0, 90 * 86400))
        status = rng.choice(statuses)
        person = rng.choice(users) if status in ("approved", "denied") else None
        decided = created + timedelta(seconds=rng.expovariate(1 / 8))
        tool = rng.choice(TOOLS)
        args = f'{{"room": "{rng.randint(100, 1999)}", "amount": {rng.randint(1, 500)}, "note": "req {i}"}}'
        batch.append(
            ApprovalRequest(
                session=rng.choice(sessions),
                upstream_id=f"mcpr_{i}",
                server_label=rng.choice(["hotel", "spa", "pos"]),
                tool_name=tool,
                arguments=args,
                raw_item={},
                status=status,
                created_at=created,
                deadline=created + timedelta(seconds=60),
                decided_at=decided,
                decided_by=person,
                decided_by_label=person.first_name if person else "deadline",
                call_arguments=args if status == "approved" else "",
                call_output="ok" if status == "approved" else None,
                call_recorded_at=decided if status == "approved" else None,
            )
        )
        if len(batch) == 5000:
            ApprovalRequest.objects.bulk_create(batch)
            batch = []
    ApprovalRequest.objects.bulk_create(batch)
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return {"reviewer": reviewer, "staff": users[3], "now": now}


def main() -> int:
    bench_env()
    setup_django()
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()
    t0 = time.perf_counter()
    data = generate()
    print(f"generated {N_REQUESTS} requests in {time.perf_counter() - t0:.1f} s")
    client = Client()
    client.force_login(data["reviewer"])
    now = data["now"]
    week_ago = (now - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
    searches = {
        "newest first, page 1": {},
        "page 500 (deep page)": {"page": "500"},
        "last 7 days": {"start": week_ago},
        "tool": {"tool": "unlock_door"},
        "room (session metadata)": {"meta": "room=1204"},
        "session label": {"session": "Room 12"},
        "decided by one person": {"decided_by": str(data["staff"].pk)},
        "denied, sorted by decision time": {"decision": "denied", "sort": "decision_time"},
        "text in the arguments": {"text": "req 4242"},
        "tool call error": {"outcome": "error"},
        "under 2 s (rubber stamps)": {"fast": "on"},
        "tool + denied + 7 days": {"tool": "refund_minibar_charge", "decision": "denied", "start": week_ago},
    }
    from django.db import connection

    client.get("/review/")  # warm up: templates compiled, connection open
    print(f"database: {connection.vendor}; {REPEAT} runs each; times of the whole view (ms)")
    print(f"{'search':40} {'rows':>7} {'p50':>8} {'p95':>8}")
    worst = 0.0
    all_times: list[float] = []
    for name, params in searches.items():
        times = []
        count = 0
        for _ in range(REPEAT):
            t = time.perf_counter()
            response = client.get("/review/", params)
            times.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200, response.status_code
            count = response.context["page"].paginator.count
        all_times += times
        worst = max(worst, percentile(times, 95))
        print(f"{name:40} {count:>7} {percentile(times, 50):>8.1f} {percentile(times, 95):>8.1f}")
    t = time.perf_counter()
    client.get("/review/metrics/")
    print(f"metrics page (last 30 days): {(time.perf_counter() - t) * 1000:.0f} ms")
    print(f"all searches: p50 {percentile(all_times, 50):.1f} ms, p95 {percentile(all_times, 95):.1f} ms")
    print(f"worst p95 {worst:.1f} ms: {'OK' if worst < 300 else 'OVER'} the 300 ms target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
