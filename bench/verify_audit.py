"""What the checks beyond the hashes cost verify_audit (compliance/integrity.py: purges against
their records, requests against their decision rows): the whole walk of a chain of decided
requests, a third of them purged by the retention job, with the checks and without them.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/verify_audit.py

A scratch database is made beside the configured one (bench/_setup.py) and dropped at the end.
BENCH_REQUESTS (default 20,000) requests, each with a `requested` and a `decided` row.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta

from _setup import bench_env, setup_django

N_REQUESTS = int(os.environ.get("BENCH_REQUESTS", "20000"))
BATCH = 1000


def generate() -> None:
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from approvals.models import ApprovalRequest, RealtimeSession
    from audit import writer
    from compliance import services

    staff = get_user_model().objects.create_user("staff", is_staff=True, first_name="Staff")
    session = RealtimeSession.objects.create(label="Room 1204", metadata={"room": "1204"}, status="closed")
    now = timezone.now()
    start = now - timedelta(days=90)
    for first in range(0, N_REQUESTS, BATCH):
        with transaction.atomic():
            requests, rows = [], []
            for i in range(first, min(N_REQUESTS, first + BATCH)):
                created = start + timedelta(seconds=i * 90 * 86400 // N_REQUESTS)
                decided = created + timedelta(seconds=8)
                requests.append(
                    ApprovalRequest(
                        session=session,
                        upstream_id=f"mcpr_{i}",
                        server_label="hotel",
                        tool_name="unlock_door",
                        arguments=f'{{"room": "1204", "n": {i}}}',
                        raw_item={"id": f"mcpr_{i}"},
                        created_at=created,
                        deadline=created + timedelta(minutes=2),
                        status="approved",
                        decided_at=decided,
                        decided_by=staff,
                        decided_by_label="Staff",
                        reason="ok",
                    )
                )
            ApprovalRequest.objects.bulk_create(requests)
            for req in requests:
                rows.append(
                    {
                        "kind": "requested",
                        "request": req,
                        "session": session,
                        "actor_label": "Room 1204",
                        "payload": {"item": req.raw_item},
                        "created_at": req.created_at,
                    }
                )
                rows.append(
                    {
                        "kind": "decided",
                        "request": req,
                        "session": session,
                        "actor": staff,
                        "actor_label": "Staff",
                        "payload": {"approve": True, "reason": "ok", "stage": 0},
                        "created_at": req.decided_at,
                    }
                )
            writer.record_many(rows)
    # Retention of 60 days over 90 days of requests: the oldest third goes.
    from django.conf import settings

    settings.AUDIT_RETENTION_DAYS = 60
    services.purge_expired(now=now)


def main() -> int:
    bench_env(AUDIT_SIGNING_KEY="")
    setup_django()
    from django.db import connection

    from audit import sealing, verify

    t0 = time.perf_counter()
    generate()
    sealing.ensure_sealed()
    print(f"generated {N_REQUESTS} requests in {time.perf_counter() - t0:.1f} s; database: {connection.vendor}")
    checks = list(verify._checks)
    variants = {"hashes, head and checkpoints only": [], "with the checks beyond": checks}
    best: dict[str, float] = {}
    rows = 0
    # Alternated, best of three each: other processes on the machine weigh on single runs.
    for _ in range(3):
        for label, registered in variants.items():
            verify._checks[:] = registered
            t = time.perf_counter()
            report = verify.verify_chain(trusted_keys=None)
            elapsed = time.perf_counter() - t
            assert report.ok, report.problem
            rows = report.rows
            best[label] = min(best.get(label, elapsed), elapsed)
    for label, elapsed in best.items():
        print(f"{label:36} {rows:>8} rows in {elapsed:6.2f} s ({rows / elapsed:>9,.0f} rows/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
