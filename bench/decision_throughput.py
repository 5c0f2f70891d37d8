"""Sustained decisions per second on PostgreSQL, end to end, beside a bare database loop.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
      python -m config.embedded exec .venv/bin/python bench/decision_throughput.py [--requests 2000]

Starts `run_relay` (the guests' sessions, against a scripted upstream in this process that
records every `mcp_approval_response` reaching "OpenAI") and K Daphne web processes; opens G guest
sessions through the relay; has upstream ask R approvals spread over them; logs S staff members in;
then the S staff decide all R at once, each POSTing its share one after the other to the web
processes in turn, exactly as the dashboard's Approve does. Each decision is the whole thing: the
conditional UPDATE, its audit rows on the hash chain in the same transaction, the outbox, and the
answer sent upstream by the relay (and marked sent, with its own audit row).

Prints:
- decisions/s committed (first POST → last POST answered) and answered upstream (→ last
  `mcp_approval_response` received), with POST latency p50/p99;
- the same database's bare rate: S connections each doing, per decision, a conditional UPDATE and
  an INSERT in one transaction (what a decision cannot do with less), and the ratio;
- where the time went: CPU seconds per process kind (web, relay, PostgreSQL, this process) over
  the run, and the PostgreSQL wait events sampled every 10 ms (a lock on the audit chain's head
  shows as `Lock:transactionid`/`Lock:tuple`);
- whether the audit chain still verifies.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from _setup import BASE_DIR, PYTHON, asgi_server, bench_env, free_port, percentile, setup_django

from tests.plugins.upstream import ThreadedUpstream

PASSWORD = "bench-password-123"


def login(base: str, username: str) -> dict[str, str]:
    with httpx.Client(base_url=base, timeout=30) as http:
        http.get("/accounts/login/")
        response = http.post(
            "/accounts/login/",
            data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": http.cookies["csrftoken"]},
        )
        assert response.status_code == 302, response.text
        return {"sessionid": http.cookies["sessionid"], "csrftoken": http.cookies["csrftoken"]}


async def open_guests(relay: str, tokens: list[str]) -> list:
    from websockets.asyncio.client import connect

    sockets = []
    for token in tokens:
        ws = await connect(
            f"{relay}/v1/realtime?model=gpt-realtime", additional_headers={"Authorization": f"Bearer {token}"}
        )
        sockets.append(ws)
    return sockets


async def drain(ws) -> None:
    try:
        async for _ in ws:
            pass
    except Exception:
        pass


async def decide_all(shares: list[tuple[str, dict[str, str], list[int]]]) -> tuple[float, float, list[float]]:
    latencies: list[float] = []

    async def staff(base: str, cookies: dict[str, str], pks: list[int]) -> None:
        async with httpx.AsyncClient(base_url=base, cookies=cookies, timeout=120) as http:
            for pk in pks:
                started = time.perf_counter()
                response = await http.post(
                    f"/requests/{pk}/decide/",
                    data={"decision": "approve", "reason": "bench"},
                    headers={"X-CSRFToken": cookies["csrftoken"]},
                )
                latencies.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text

    started = time.perf_counter()
    await asyncio.gather(*(staff(base, cookies, pks) for base, cookies, pks in shares))
    return started, time.perf_counter(), latencies


def bare_rate(url: str, n: int, connections: int) -> float:
    """Per decision: a conditional UPDATE and an INSERT, one transaction, on `connections` connections."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_req, bench_audit")
        conn.execute("CREATE TABLE bench_req (id bigint PRIMARY KEY, status varchar(10) NOT NULL)")
        conn.execute("CREATE TABLE bench_audit (id bigserial PRIMARY KEY, req_id bigint, payload jsonb)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO bench_req VALUES (%s, 'pending')", [(i,) for i in range(n)])

    def worker(ids: list[int]) -> None:
        with psycopg.connect(url) as conn:
            for i in ids:
                with conn.transaction():
                    conn.execute("UPDATE bench_req SET status = 'approved' WHERE id = %s AND status = 'pending'", (i,))
                    conn.execute("INSERT INTO bench_audit (req_id, payload) VALUES (%s, '{\"approve\": true}')", (i,))

    threads = [threading.Thread(target=worker, args=(list(range(k, n, connections)),)) for k in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return n / (time.perf_counter() - started)


def _chain_worker(ids: list[int], ready: Any, go: Any, done: Any) -> None:
    """One writer of chain_rate, in a process of its own (spawned: Django set up afresh)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connection, transaction

    from audit import writer

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")  # connected
    ready.put(1)
    go.wait()
    for i in ids:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE bench_req SET status = 'approved' WHERE id = %s AND status = 'pending'", [i])
            writer.record(kind="decided", actor_label="bench", payload={"approve": True, "reason": "bench", "n": i})
    done.put(len(ids))


def chain_rate(url: str, n: int, processes: int) -> float:
    """Per decision: the conditional UPDATE and its audit row on the hash chain (audit.writer, the
    chain lock included), one transaction, in `processes` Django processes: what the chain costs
    without the web server's work around it."""
    import multiprocessing

    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE bench_req SET status = 'pending'")
    spawn = multiprocessing.get_context("spawn")
    ready, go, done = spawn.Queue(), spawn.Event(), spawn.Queue()
    workers = [
        spawn.Process(target=_chain_worker, args=(list(range(k, n, processes)), ready, go, done))
        for k in range(processes)
    ]
    for w in workers:
        w.start()
    for _ in workers:
        ready.get(timeout=300)  # Django set up and connected in every worker
    started = time.perf_counter()
    go.set()
    total = sum(done.get(timeout=600) for _ in workers)
    elapsed = time.perf_counter() - started
    for w in workers:
        w.join(60)
    return total / elapsed


class Sampler(threading.Thread):
    """PostgreSQL wait events of this database's backends, every 10 ms."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.counts: collections.Counter[str] = collections.Counter()
        self.samples = 0
        self.stop = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                rows = conn.execute(
                    "SELECT coalesce(wait_event_type, 'CPU') || ':' || coalesce(wait_event, 'running'), state "
                    "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchall()
                self.samples += 1
                for event, state in rows:
                    if state == "active":
                        self.counts[event] += 1
                time.sleep(0.01)


def cpu_seconds(kinds: dict[str, list[psutil.Process]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for kind, processes in kinds.items():
        total = 0.0
        for p in processes:
            try:
                # This process's children are the servers, counted under their own kinds.
                for q in [p] if p.pid == os.getpid() else [p, *p.children(recursive=True)]:
                    t = q.cpu_times()
                    total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        out[kind] = total
    return out


def postgres_backends(url: str) -> list[psutil.Process]:
    """The PostgreSQL backends serving this benchmark's database (the server is shared: other
    databases' backends are not this run's work). With the per-process pools they live for the run."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    out = []
    for (pid,) in pids:
        try:
            out.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--staff", type=int, default=32, help="staff members deciding at once")
    parser.add_argument("--web-processes", type=int, default=3)
    parser.add_argument("--relay-workers", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=20, help="guest sessions the requests come from")
    parser.add_argument(
        "--database-only", action="store_true", help="only the bare and chain-only rates (no web processes)"
    )
    parser.add_argument("--chain-processes", type=int, default=8, help="writers of the chain-only rate")
    parser.add_argument("--profile", metavar="DIR", help="py-spy record each web process over the decisions into DIR")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("Set DATABASE_URL to a PostgreSQL server: this benchmark measures the production stack.")

    if args.database_only:
        bench_env()
        setup_django()
        url = os.environ["DATABASE_URL"]
        bare = bare_rate(url, args.requests, args.staff)
        chained = chain_rate(url, args.requests, args.chain_processes)
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"  bare UPDATE+INSERT ({args.staff} connections): {bare:8.1f} /s")
        print(f"  UPDATE + audit row on the chain ({args.chain_processes} processes): {chained:8.1f} /s")
        return
    upstream = ThreadedUpstream().start()
    env = bench_env(OPENAI_API_KEY="sk-bench", OPENAI_BASE_URL=upstream.base_url, APPROVAL_TIMEOUT_SECONDS="3600")
    setup_django()
    from django.contrib.auth import get_user_model

    from approvals import services
    from approvals.models import ApprovalRequest

    users = []
    for i in range(args.staff):
        user, _ = get_user_model().objects.get_or_create(username=f"staff{i}", defaults={"is_staff": True})
        user.set_password(PASSWORD)
        user.save()
        users.append(user.username)
    tokens = [services.issue_token(label=f"Room {100 + i}", metadata={})[1] for i in range(args.sessions)]

    relay_port = free_port()
    web_ports = [free_port() for _ in range(args.web_processes)]
    processes = [asgi_server(f"run_relay-{args.relay_workers}", relay_port, env)]
    processes += [asgi_server("daphne", port, env) for port in web_ports]
    for p in processes:
        p.start()
    loop = asyncio.new_event_loop()
    drains: list[asyncio.Task[None]] = []
    try:
        bases = [f"http://127.0.0.1:{port}" for port in web_ports]
        cookies = [login(bases[i % len(bases)], name) for i, name in enumerate(users)]
        sockets = loop.run_until_complete(open_guests(f"ws://127.0.0.1:{relay_port}", tokens))
        drains += [loop.create_task(drain(ws)) for ws in sockets]
        runner = threading.Thread(target=loop.run_forever, daemon=True)
        runner.start()
        upstream.wait_for(lambda: len(upstream.sessions) == args.sessions, timeout=60)

        ids = [f"mcpr_bench{i}" for i in range(args.requests)]
        for i, approval_id in enumerate(ids):
            upstream.request_approval(i % args.sessions, approval_id)
        deadline = time.monotonic() + 300
        while ApprovalRequest.objects.filter(upstream_id__in=ids).count() < len(ids):
            if time.monotonic() > deadline:
                raise SystemExit("the requests did not all arrive")
            time.sleep(0.2)
        pks = list(ApprovalRequest.objects.filter(upstream_id__in=ids).order_by("pk").values_list("pk", flat=True))
        shares = [(bases[k % len(bases)], cookies[k], pks[k :: args.staff]) for k in range(args.staff)]

        pids = [p.proc.pid for p in processes if p.proc is not None]
        kinds = {
            "web (Daphne)": [psutil.Process(pid) for pid in pids[1:]],
            "relay": [psutil.Process(pids[0])],
            "PostgreSQL (this database's backends)": postgres_backends(os.environ["DATABASE_URL"]),
            "bench client + upstream": [psutil.Process()],
        }
        sampler = Sampler(os.environ["DATABASE_URL"])
        sampler.start()
        spies: list[subprocess.Popen[bytes]] = []
        if args.profile:
            os.makedirs(args.profile, exist_ok=True)
            for pid in pids[1:]:
                out = os.path.join(args.profile, f"web-{pid}.txt")
                argv = [str(Path(PYTHON).parent / "py-spy"), "record", "--pid", str(pid), "--rate", "200"]
                spies.append(
                    subprocess.Popen(
                        [*argv, "--format", "raw", "--output", out],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            time.sleep(2)  # py-spy attached
        load = os.getloadavg()
        cpu_before = cpu_seconds(kinds)
        started, posts_done, latencies = asyncio.run(decide_all(shares))
        upstream.wait_for(lambda: len(upstream.approval_responses()) >= args.requests, timeout=600)
        upstream_done = time.perf_counter()
        cpu_after = cpu_seconds(kinds)
        for spy in spies:
            spy.send_signal(2)  # SIGINT: py-spy writes its profile and exits
            spy.wait(60)
        sampler.stop.set()
        sampler.join()

        n = args.requests
        committed = n / (posts_done - started)
        answered = n / (upstream_done - started)
        bare = bare_rate(os.environ["DATABASE_URL"], n, args.staff)
        chained = chain_rate(os.environ["DATABASE_URL"], n, args.chain_processes)
        print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1, 5, 15 min)")
        print(
            f"decisions over {n} requests, {args.staff} staff, {args.web_processes} Daphne, "
            f"run_relay --workers {args.relay_workers}, {args.sessions} sessions, PostgreSQL (target >= 500/s)"
        )
        print(
            f"  committed:          {committed:8.1f} /s   POST p50 {percentile(latencies, 50):.1f} ms, "
            f"p99 {percentile(latencies, 99):.1f} ms"
        )
        print(f"  answered upstream:  {answered:8.1f} /s")
        print(f"  bare UPDATE+INSERT: {bare:8.1f} /s   (decisions end to end = {answered / bare:.3f} of it)")
        print(
            f"  UPDATE + audit row on the chain (audit.writer, {args.chain_processes} processes, no web server): "
            f"{chained:8.1f} /s   ({chained / bare:.3f} of bare)"
        )
        wall = upstream_done - started
        print(f"  CPU over the {wall:.1f} s run (2 cores = {2 * wall:.1f} CPU s available):")
        for kind in kinds:
            used = cpu_after[kind] - cpu_before[kind]
            print(f"    {kind:<38} {used:7.1f} s   {1000 * used / n:6.1f} ms per decision")
        total = sum(sampler.counts.values()) or 1
        print(f"  PostgreSQL active backends by wait event ({sampler.samples} samples):")
        for event, count in sampler.counts.most_common(6):
            print(f"    {event:<36} {100 * count / total:5.1f} %")
        sent = ApprovalRequest.objects.filter(upstream_id__in=ids, decision_sent_at__isnull=False).count()
        print(f"  marked sent: {sent} of {n}; upstream answers: {len(upstream.approval_responses())}")
        verify = subprocess.run(
            [PYTHON, "manage.py", "verify_audit"], cwd=BASE_DIR, env=env, capture_output=True, text=True
        )
        print(f"  verify_audit: exit {verify.returncode}: {verify.stdout.strip().splitlines()[-1:]}")
    finally:
        loop.call_soon_threadsafe(loop.stop)
        del drains
        for p in processes:
            p.stop()
        upstream.stop()


if __name__ == "__main__":
    main()
