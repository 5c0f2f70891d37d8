"""How fast an approval travels through Countersign, on real processes.

    make bench        (or: python -m config.embedded exec .venv/bin/python bench/approval_latency.py [--requests 200])

Starts the hotel MCP server, the simulator (as OpenAI) and one Daphne; connects N staff
dashboards (N = 10, then 100) and a guest on the official openai SDK through the relay; then,
for each of --requests approval requests, measures:

(a) card latency: the guest's device receiving the `mcp_approval_request` item (the relay
    forwards it to the client before it records the request, so this is no later than the
    relay's own receipt) → the card arriving on each of the N dashboards;
(b) decision latency: the Approve POST being sent → the `mcp_approval_response` reaching the
    simulator (the arrival time it records, GET /sim/approvals; same machine, same wall clock).

Prints p50/p99 per server (Daphne, as `make run` starts it, and uvicorn) and N.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from http.cookies import SimpleCookie

from _setup import PYTHON, ServerProcess, asgi_server, bench_env, free_port, percentile, setup_django

UPSTREAM_ID = re.compile(r'"upstream_id":"([^"]+)"')


async def login(base: str, username: str, password: str) -> str:
    import httpx

    async with httpx.AsyncClient(base_url=base) as http:
        await http.get("/accounts/login/")
        csrf = http.cookies["csrftoken"]
        response = await http.post(
            "/accounts/login/", data={"username": username, "password": password, "csrfmiddlewaretoken": csrf}
        )
        assert response.status_code == 302, response.text
        return f"sessionid={http.cookies['sessionid']}; csrftoken={http.cookies['csrftoken']}"


async def run(
    base: str,
    token: str,
    cookie: str,
    n_dashboards: int,
    n_requests: int,
    sim_base: str,
    sim_key: str,
    *,
    relay_base: str | None = None,
    dashboard_bases: list[str] | None = None,
) -> dict[str, list[float]]:
    """`base` takes the decisions' POSTs; the guest connects to `relay_base` (default: base) and
    the dashboards to `dashboard_bases` in turn (default: base)."""
    import httpx
    from openai import AsyncOpenAI
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidHandshake

    card_seen: dict[str, list[float]] = {}
    first_seen: dict[str, float] = {}
    ready: list[int] = []
    gate = asyncio.Semaphore(10)  # handshakes at a time: a thousand at once is a herd, not a steady state

    async def dashboard(on: str) -> None:
        async with gate:
            for attempt in range(10):
                try:
                    ws = await connect(
                        f"{on.replace('http://', 'ws://')}/ws/dashboard/",
                        additional_headers={"Cookie": cookie, "Origin": on},
                        max_size=None,
                        open_timeout=120,
                    )
                    break
                except (OSError, InvalidHandshake):
                    # Daphne drops a handshake it could not finish in 5 s (a busy machine, a
                    # thousand dashboards connecting): the dashboard's page reconnects, so does this.
                    if attempt == 9:
                        raise
                    await asyncio.sleep(1 + attempt)
            await ws.recv()  # its snapshot: this dashboard is subscribed
        ready.append(1)
        async with ws:
            async for frame in ws:
                now = time.monotonic()
                # A substring test, not json.loads: the 100 clients share this process and
                # their parsing would be counted as the console's latency.
                if (
                    isinstance(frame, str)
                    and frame.startswith('{"type":"request_changed"')
                    and '"status":"pending"' in frame
                ):
                    match = UPSTREAM_ID.search(frame)
                    if match:
                        card_seen.setdefault(match.group(1), []).append(now)

    spread = dashboard_bases or [base]
    dashboards = [asyncio.create_task(dashboard(spread[i % len(spread)])) for i in range(n_dashboards)]
    deadline = time.monotonic() + 600
    while len(ready) < n_dashboards:  # every dashboard connected and holding its snapshot
        if time.monotonic() > deadline or any(t.done() for t in dashboards):
            raise SystemExit(f"only {len(ready)} of {n_dashboards} dashboards connected")
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    cookies = SimpleCookie(cookie)
    http = httpx.AsyncClient(
        base_url=base,
        cookies={k: v.value for k, v in cookies.items()},
        headers={"X-CSRFToken": cookies["csrftoken"].value},
    )
    from approvals.models import ApprovalRequest

    sim_http = httpx.AsyncClient(base_url=sim_base, headers={"Authorization": f"Bearer {sim_key}"})
    a_ms: list[float] = []
    b_ms: list[float] = []
    client = AsyncOpenAI(api_key=token, base_url=f"{relay_base or base}/v1", max_retries=0)
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        async for event in conn:
            if event.type == "mcp_list_tools.completed":
                break
        for i in range(n_requests):
            level = i % 100
            await conn.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [
                        {
                            "type": "input_text",
                            "text": f'call hotel set_room_lighting {{"room": "1204", "level": {level}}}',
                        }
                    ],
                }
            )
            await conn.response.create()
            approval_id = None
            async for event in conn:
                if event.type == "conversation.item.done" and event.item.type == "mcp_approval_request":
                    approval_id = event.item.id
                    first_seen[approval_id] = time.monotonic()
                    break
            assert approval_id is not None
            deadline = time.monotonic() + 10
            # Polling, not an Event: the dashboards' tasks only append, and 1 ms is far below
            # what is measured.
            while len(card_seen.get(approval_id, [])) < n_dashboards and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            arrivals = card_seen.get(approval_id, [])
            a_ms.extend((t - first_seen[approval_id]) * 1000 for t in arrivals)
            pk = await asyncio.to_thread(
                ApprovalRequest.objects.values_list("pk", flat=True).get, upstream_id=approval_id
            )
            posted = time.time()  # wall clock: (b) ends at the simulator's own clock reading
            # The POST's answer comes after the view has also told every dashboard; the
            # decision's way upstream does not wait for that, so read the socket meanwhile.
            post = asyncio.create_task(http.post(f"/requests/{pk}/decide/", data={"decision": "approve"}))
            answered = follow_up_done = False
            async for event in conn:
                if (
                    event.type == "conversation.item.added"
                    and event.item.type == "mcp_approval_response"
                    and not answered
                ):
                    answered = True
                if answered and event.type == "response.done":
                    follow_up_done = True
                    break
            assert follow_up_done
            response = await post
            assert response.status_code == 200, response.text
            received = await sim_http.get("/sim/approvals")
            (arrival,) = [a for a in received.json()["data"] if a["approval_request_id"] == approval_id]
            b_ms.append((arrival["at"] - posted) * 1000)
    await http.aclose()
    await sim_http.aclose()
    for task in dashboards:
        task.cancel()
    return {"a": a_ms, "b": b_ms}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--dashboards", type=int, nargs="+", default=[10, 100])
    parser.add_argument(
        "--servers",
        nargs="+",
        default=["daphne", "uvicorn"],
        choices=["daphne", "uvicorn", "split"],
        help="split: the guest on run_relay, the dashboards over Daphne processes (POSTs to the first)",
    )
    parser.add_argument("--dashboard-processes", type=int, default=2, help="with split: how many Daphne processes")
    parser.add_argument(
        "--databases",
        nargs="+",
        choices=["sqlite", "postgresql"],
        help="run once per database, one after the other in this run, and print their figures side by side "
        "(postgresql: a scratch database beside DATABASE_URL's); default: DATABASE_URL's, or SQLite",
    )
    args = parser.parse_args()
    if args.databases:
        side_by_side(args)
        return

    sim_key = "sk-bench"
    hotel_port, sim_port = free_port(), free_port()
    env = bench_env(OPENAI_API_KEY=sim_key, OPENAI_BASE_URL=f"http://127.0.0.1:{sim_port}/v1")
    setup_django()
    from django.contrib.auth import get_user_model

    from approvals import services

    password = "bench-password-123"
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    user.is_staff = True
    user.set_password(password)
    user.save()
    services.register_mcp_server(
        label="hotel", url=f"http://127.0.0.1:{hotel_port}/mcp", headers={"X-API-Key": "bench-hotel"}
    )
    _, token = services.issue_token(label="Bench room", metadata={"room": "1204"})

    hotel = ServerProcess(
        [PYTHON, "-m", "demo.hotel_mcp", "--port", str(hotel_port), "--api-key", "bench-hotel"],
        port=hotel_port,
        env=env,
        name="hotel",
    )
    sim = ServerProcess(
        [PYTHON, "-m", "simulator", "--port", str(sim_port), "--api-key", sim_key], port=sim_port, env=env, name="sim"
    )
    with hotel, sim:
        print(f"approval latency over {args.requests} requests, ms (targets at N=100: p50 <= 15, p99 <= 50)")
        for server in args.servers:
            ports = [free_port() for _ in range(1 + args.dashboard_processes)]
            bases = [f"http://127.0.0.1:{p}" for p in ports]
            if server == "split":
                processes = [asgi_server("run_relay", ports[0], env)]
                processes += [asgi_server("daphne", port, env) for port in ports[1:]]
                base, relay_base, dashboard_bases = bases[1], bases[0], bases[1:]
            else:
                processes = [asgi_server(server, ports[0], env)]
                base, relay_base, dashboard_bases = bases[0], None, None
            with contextlib.ExitStack() as running:
                for process in processes:
                    running.enter_context(process)
                cookie = asyncio.run(login(base, "bench", password))
                for n in args.dashboards:
                    results = asyncio.run(
                        run(
                            base,
                            token,
                            cookie,
                            n,
                            args.requests,
                            f"http://127.0.0.1:{sim_port}",
                            sim_key,
                            relay_base=relay_base,
                            dashboard_bases=dashboard_bases,
                        )
                    )
                    a, b = results["a"], results["b"]
                    figures = {
                        "server": server,
                        "n": n,
                        "a50": percentile(a, 50),
                        "a99": percentile(a, 99),
                        "b50": percentile(b, 50),
                        "b99": percentile(b, 99),
                        "load": os.getloadavg()[0],
                    }
                    print("RESULT " + json.dumps(figures), flush=True)
                    print(
                        f"  {server:<7} N={n:>3}  (a) item -> card on every dashboard: p50 {percentile(a, 50):6.2f}"
                        f"  p99 {percentile(a, 99):6.2f} ({len(a)} cards)   (b) Approve POST -> upstream:"
                        f" p50 {percentile(b, 50):6.2f}  p99 {percentile(b, 99):6.2f} ({len(b)})",
                        flush=True,
                    )


def side_by_side(args: argparse.Namespace) -> None:
    """Each database in a run of its own (Django's settings are per process), one after the
    other, then one table: the figures of the same run beside each other."""
    url = os.environ.get("DATABASE_URL", "")
    if "postgresql" in args.databases and not url.startswith("postgres"):
        raise SystemExit("--databases postgresql needs DATABASE_URL=postgres://… (a scratch database is made by it)")
    argv = [sys.executable, __file__, "--requests", str(args.requests), "--dashboards", *map(str, args.dashboards)]
    argv += ["--servers", *args.servers, "--dashboard-processes", str(args.dashboard_processes)]
    rows: dict[str, list[dict[str, float]]] = {}
    for database in args.databases:
        env = dict(os.environ)
        if database == "sqlite":
            env.pop("DATABASE_URL", None)
        print(f"== {database}", flush=True)
        child = subprocess.run(argv, env=env, stdout=subprocess.PIPE, text=True)
        for line in child.stdout.splitlines():
            if line.startswith("RESULT "):
                rows.setdefault(database, []).append(json.loads(line.removeprefix("RESULT ")))
            else:
                print(line, flush=True)
        if child.returncode != 0:
            raise SystemExit(f"the {database} run failed (exit {child.returncode})")
    print(f"\nside by side, {args.requests} requests, ms (targets: p50 <= 15, p99 <= 50 at N=100; p99 <= 200 at 1000)")
    print("| server | N | database | (a) p50 | (a) p99 | (b) p50 | (b) p99 | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|")
    for i in range(len(rows[args.databases[0]])):
        for database in args.databases:
            r = rows[database][i]
            print(
                f"| {r['server']} | {r['n']} | {database} | {r['a50']:.1f} | {r['a99']:.1f} | {r['b50']:.1f} "
                f"| {r['b99']:.1f} | {r['load']:.2f} |"
            )


if __name__ == "__main__":
    main()
