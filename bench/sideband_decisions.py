"""Decisions delivered per second by one sideband bridge holding many calls, and its memory per call.

    python -m config.embedded exec .venv/bin/python bench/sideband_decisions.py [--calls 200] [--approve]

Starts the hotel MCP server, the simulator (as OpenAI, placing SIP calls), one Daphne (the
webhook endpoint that accepts them) and one `manage.py run_bridge`. Then:

1. places --calls SIP calls; Daphne accepts each with the routed config, the bridge attaches a
   sideband to each (`?call_id=`); the bridge's RSS before and after gives its memory per session;
2. has every caller ask for a tool that needs approval, and waits for all the requests;
3. decides them all at once (approvals.services.decide, as the decide view does): in one transaction
   by default, so that the bridge gets 200 nudges at once, or from --deciders threads; then reads
   from the simulator when each `mcp_approval_response` arrived (GET /sim/approvals).

Prints the delivery rate (decisions / (last arrival - first decision)), and p50/p99 of each
decision's commit → arrival latency. Denials by default: the rate is the bridge's, not the MCP
server's (`--approve` also runs the 200 tool calls).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
from _setup import PYTHON, ServerProcess, asgi_server, bench_env, free_port, percentile, setup_django

SECRET = "whsec_" + "YmVuY2gtc2lkZWJhbmQtc2VjcmV0LTAxMjM0NTY3ODk="
LINE = "+18005551212"
ASK = 'call hotel set_room_lighting {"room": "1204", "level": 40}'


def login(base: str, username: str, password: str) -> dict[str, str]:
    with httpx.Client(base_url=base, timeout=30) as http:
        http.get("/accounts/login/")
        response = http.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": http.cookies["csrftoken"]},
        )
        assert response.status_code == 302, response.text
        return {"sessionid": http.cookies["sessionid"], "csrftoken": http.cookies["csrftoken"]}


def rss_kb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 1024


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--deciders", type=int, default=16, help="concurrent staff POSTs")
    parser.add_argument("--burst", action="store_true", help="commit every decision in one transaction instead")
    parser.add_argument("--approve", action="store_true")
    args = parser.parse_args()

    sim_port, hotel_port, web_port = free_port(), free_port(), free_port()
    sim_key = "sk-bench-sideband"
    env = bench_env(
        OPENAI_API_KEY=sim_key,
        OPENAI_BASE_URL=f"http://127.0.0.1:{sim_port}/v1",
        OPENAI_WEBHOOK_SECRET=SECRET,
        APPROVAL_TIMEOUT_SECONDS="600",
    )
    setup_django()
    from django.contrib.auth.models import User
    from django.db import transaction

    from approvals import services
    from approvals.models import ApprovalRequest, RealtimeSession
    from realtime_bridge.models import SipRoute

    hotel = ServerProcess(
        [PYTHON, "-m", "demo.hotel_mcp", "--port", str(hotel_port), "--api-key", "bench-hotel"],
        port=hotel_port,
        name="hotel_mcp",
    ).start()
    sim = ServerProcess(
        [PYTHON, "-m", "simulator", "--port", str(sim_port), "--api-key", sim_key], port=sim_port, name="simulator"
    ).start()
    web = asgi_server("daphne", web_port, env).start()
    bridge = ServerProcess([PYTHON, "manage.py", "run_bridge"], env=env, name="run_bridge").start()
    try:
        server, _ = services.register_mcp_server(
            label="hotel", url=f"http://127.0.0.1:{hotel_port}/mcp", headers={"X-API-Key": "bench-hotel"}
        )
        route = SipRoute.objects.create(name="Bench", to_pattern=LINE, label="Bench line")
        route.mcp_servers.add(server)
        staff = User.objects.create_user("bench", password="bench-password", is_staff=True, first_name="Bench")
        simhttp = httpx.Client(
            base_url=f"http://127.0.0.1:{sim_port}", headers={"Authorization": f"Bearer {sim_key}"}, timeout=60
        )
        time.sleep(3)  # the bridge has imported Django and is idle
        before = rss_kb(bridge.proc.pid)  # type: ignore[union-attr]

        call_ids = []
        for _ in range(args.calls):
            placed = simhttp.post(
                "/sim/calls",
                json={
                    "to": LINE,
                    "webhook_url": f"http://127.0.0.1:{web_port}/webhooks/openai",
                    "webhook_secret": SECRET,
                },
            ).json()
            assert placed["deliveries"][0]["status_code"] == 200, placed
            call_ids.append(placed["call_id"])
        wait_until(
            lambda: (
                RealtimeSession.objects.filter(kind="sideband").exclude(upstream_session_id="").count() == args.calls
            ),
            60,
            "every sideband to attach",
        )
        time.sleep(2)
        after = rss_kb(bridge.proc.pid)  # type: ignore[union-attr]

        for call_id in call_ids:
            simhttp.post(f"/sim/calls/{call_id}/say", json={"text": ASK})
        wait_until(lambda: ApprovalRequest.objects.pending().count() == args.calls, 60, "every request")
        requests = list(ApprovalRequest.objects.pending())

        decided_at: dict[str, float] = {}
        start_box: list[float] = []
        if args.burst:
            # Every decision commits in one transaction: the bridge gets all of them at once.
            with transaction.atomic():
                transaction.on_commit(lambda: start_box.append(time.time()))
                for req in requests:
                    services.decide(req, approve=args.approve, by=staff, reason="bench")
            start = start_box[0]
            decided_at.update(dict.fromkeys((r.upstream_id for r in requests), start))
        else:
            # Staff clicking: POSTs to the decide view on Daphne, --deciders at a time.
            cookies = login(f"http://127.0.0.1:{web_port}", "bench", "bench-password")
            decision = "approve" if args.approve else "deny"

            def decide(req) -> None:
                decided_at[req.upstream_id] = time.time()  # the click: latency includes the POST
                with httpx.Client(base_url=f"http://127.0.0.1:{web_port}", cookies=cookies, timeout=60) as http:
                    response = http.post(
                        f"/requests/{req.pk}/decide/",
                        data={"decision": decision, "reason": "bench"},
                        headers={"X-CSRFToken": cookies["csrftoken"]},
                    )
                assert response.status_code == 200, response.text

            start = time.time()
            with ThreadPoolExecutor(args.deciders) as pool:
                list(pool.map(decide, requests))
        decided_by = time.time()

        def arrivals() -> dict[str, float]:
            data = simhttp.get("/sim/approvals").json()["data"]
            return {a["approval_request_id"]: a["at"] for a in data if a["approval_request_id"] in decided_at}

        def all_arrived() -> dict[str, float] | None:
            found = arrivals()
            return found if len(found) == args.calls else None

        got = wait_until(all_arrived, 60, "every decision upstream")
        last = max(got.values())
        latencies = [1000 * (got[k] - decided_at[k]) for k in got]
        print(f"sideband bridge, {args.calls} concurrent calls, approve={args.approve}")
        firsts = sorted(got.values())
        if not args.burst:
            print(
                f"  {args.deciders} staff POSTs at a time: all decided in {decided_by - start:.2f} s"
                f" ({args.calls / (decided_by - start):.0f}/s)"
            )
        else:
            print(
                "  decisions committed in one transaction (a burst); its after-commit nudges and dashboard"
                f" events took {decided_by - start:.2f} s to send"
            )
        print(
            f"  delivered: {args.calls / (last - start):.0f} decisions/s end to end "
            f"(first decision → last arrival at the simulator: {last - start:.2f} s); "
            f"{(args.calls - 1) / max(1e-9, firsts[-1] - firsts[0]):.0f}/s between the first and the last arrival"
        )
        p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
        print(f"  {'commit' if args.burst else 'click'} → upstream latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        print(
            f"  bridge memory: {before / 1024:.1f} MB idle, {after / 1024:.1f} MB with {args.calls} sessions: "
            f"{(after - before) / args.calls:.0f} KB per session"
        )
    finally:
        for proc in (bridge, web, sim, hotel):
            proc.stop()


if __name__ == "__main__":
    main()
