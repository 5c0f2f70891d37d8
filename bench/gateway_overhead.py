"""The latency Countersign's MCP gateway adds to a `tools/call`, against calling the hotel MCP
server directly.

    python -m config.embedded exec .venv/bin/python bench/gateway_overhead.py [--calls 1000] [--rounds 10]

Real processes on a scratch database (SQLite, or a scratch PostgreSQL database beside
DATABASE_URL): the demo hotel MCP server, and `run_gateway` in front of it with the hotel in
gateway mode. One official `mcp` client per path, each keeping its connection, times --calls
`tools/call`s (after 50 warm-up calls), in --rounds interleaved slices so that both paths see the
same machine:

  direct     client → hotel MCP server (`get_room_status`, with the hotel's X-API-Key)
  approved   client → gateway (a session's capability token, as OpenAI calls it) → hotel:
             `unlock_door`, each call matched to one of --calls approvals of that session, consumed
             once, run, recorded and audited (the enforcement path)
  allowed    client → gateway (the same token) → hotel: `get_room_status`, which a policy rule
             allows without asking, run, recorded and audited

"Adds" = the path's p50 (p99) minus the direct p50 (p99). Target: <= 5 ms added at p50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from contextlib import AsyncExitStack
from typing import Any

from _setup import PYTHON, ServerProcess, bench_env, free_port, percentile, setup_django

HOTEL_KEY = "bench-hotel-key"
WARM_UP = 50


class Path:
    def __init__(self, name: str, url: str, headers: dict[str, str], tool: str, arguments: dict[str, Any]) -> None:
        self.name, self.url, self.headers, self.tool, self.arguments = name, url, headers, tool, arguments
        self.samples: list[float] = []
        self.client: Any = None

    async def open(self, stack: AsyncExitStack) -> None:
        import httpx2
        from mcp.client import Client
        from mcp.client.streamable_http import streamable_http_client

        http = httpx2.AsyncClient(headers=self.headers, timeout=httpx2.Timeout(10, read=60))
        self.client = await stack.enter_async_context(
            Client(streamable_http_client(self.url, http_client=http), cache=None)
        )

    async def run(self, calls: int, *, keep: bool = True) -> None:
        for _ in range(calls):
            started = time.perf_counter()
            result = await self.client.call_tool(self.tool, self.arguments)
            elapsed = (time.perf_counter() - started) * 1000
            if result.is_error:
                raise SystemExit(f"{self.name}: the call failed: {result.content}")
            if keep:
                self.samples.append(elapsed)


def prepare(hotel_url: str, gateway_url: str, approvals: int) -> str:
    """Register the hotel in gateway mode with its tools, a rule allowing get_room_status, a
    session with `approvals` approved unlock_door requests; return the session's gateway token."""
    from django.contrib.auth.models import User

    from approvals import events, services
    from approvals.services import _transition

    # Nothing leaves the process while preparing: no dashboards, no Celery.
    events.send_request = lambda req: True
    events.request_changed = lambda pk: True  # type: ignore[assignment]
    events.relay_decision = lambda **kw: True
    _transition.schedule_expiry = lambda *a, **kw: None

    server, _ = services.register_mcp_server(
        label="hotel", url=hotel_url, headers={"X-API-Key": HOTEL_KEY}, gateway_mode=True
    )
    if not services.probe_mcp_server(server, by=None).ok:
        raise SystemExit("the hotel MCP server did not list its tools")
    services.import_policies(
        "rules:\n  - {label: room-status, server: hotel, tool: get_room_status, outcome: allow}\n",
        by=None,
        source="bench",
    )
    mia = User.objects.create_user("mia", is_staff=True, first_name="Mia")
    session = services.open_session(kind="relay", label="Room 1204", metadata={"room": "1204"})
    arguments = json.dumps({"room": "1204"})
    for n in range(approvals):
        req, _ = services.open_request(
            session=session,
            upstream_id=f"mcpr_bench_{n}",
            server_label="hotel",
            tool_name="unlock_door",
            arguments=arguments,
            raw_item={"type": "mcp_approval_request", "name": "unlock_door", "arguments": arguments},
        )
        services.decide(req, approve=True, by=mia, confirmed=True)
    return services.gateway_token_for(session, server)


async def measure(paths: list[Path], calls: int, rounds: int) -> None:
    async with AsyncExitStack() as stack:  # the clients close in the reverse order they opened
        for path in paths:
            await path.open(stack)
        for path in paths:
            # The approved path's approvals are for the measured calls; the allowed path warms the gateway.
            await path.run(WARM_UP if path.name != "approved" else 0, keep=False)
        per_round = calls // rounds
        for r in range(rounds):
            order = paths[r % len(paths) :] + paths[: r % len(paths)]
            for path in order:
                await path.run(per_round)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    env = bench_env()
    setup_django()

    hotel_port, gateway_port = free_port(), free_port()
    hotel_argv = [PYTHON, "-m", "demo.hotel_mcp", "--port", str(hotel_port), "--api-key", HOTEL_KEY]
    gateway_argv = [PYTHON, "manage.py", "run_gateway", "--port", str(gateway_port)]
    hotel_url = f"http://127.0.0.1:{hotel_port}/mcp"
    gateway_url = f"http://127.0.0.1:{gateway_port}/mcp-gateway/hotel/mcp"
    quiet = {**env, "LOG_LEVEL": "WARNING"}
    # The gateway logs at INFO, as in production (its line per call gives the stages below).
    with ServerProcess(hotel_argv, port=hotel_port, env=quiet, name="hotel_mcp"):
        token = prepare(hotel_url, gateway_url, args.calls)
        with ServerProcess(gateway_argv, port=gateway_port, env={**env, "LOG_LEVEL": "INFO"}, name="gateway") as gw:
            bearer = {"Authorization": f"Bearer {token}"}
            paths = [
                Path("direct", hotel_url, {"X-API-Key": HOTEL_KEY}, "get_room_status", {"room": "1204"}),
                Path("approved", gateway_url, bearer, "unlock_door", {"room": "1204"}),
                Path("allowed", gateway_url, bearer, "get_room_status", {"room": "1204"}),
            ]
            asyncio.run(measure(paths, args.calls, args.rounds))
            stages = re.findall(r"ran hotel/(\w+) .*admitted in ([\d.]+) ms, upstream ([\d.]+) ms", gw.output(tail=0))

    direct = paths[0]
    d50, d99 = percentile(direct.samples, 50), percentile(direct.samples, 99)
    print(f"\ntools/call latency over {len(direct.samples)} calls per path ({args.rounds} interleaved rounds), ms:")
    print(f"{'path':<10} {'p50':>8} {'p99':>8} {'adds p50':>9} {'adds p99':>9}")
    for path in paths:
        p50, p99 = percentile(path.samples, 50), percentile(path.samples, 99)
        adds = "" if path is direct else f"{p50 - d50:>9.2f} {p99 - d99:>9.2f}"
        print(f"{path.name:<10} {p50:>8.2f} {p99:>8.2f} {adds}")
    print("\nInside the gateway (its log line per call), p50 ms: before the upstream call (token, match,")
    print("consumption or policy, one commit) and the upstream call itself:")
    for tool in ("unlock_door", "get_room_status"):
        admitted = [float(a) for t, a, _ in stages if t == tool]
        upstream = [float(u) for t, _, u in stages if t == tool]
        print(f"  {tool:<16} admitted {percentile(admitted, 50):6.2f}   upstream {percentile(upstream, 50):6.2f}")
    added = percentile(paths[1].samples, 50) - d50
    verdict = "meets" if added <= 5.0 else "misses"
    print(f"\nThe enforcement path adds {added:.2f} ms at p50: {verdict} the target of <= 5 ms.")


if __name__ == "__main__":
    main()
