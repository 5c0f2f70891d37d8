"""`manage.py run_relay --workers 2`: two processes share the port under a supervisor that
restarts a worker that dies and stops them all on SIGTERM. A real subprocess, against the
scripted upstream of this test's event loop."""

from __future__ import annotations

import asyncio
import json
import signal
import socket

import psutil
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from websockets.asyncio.client import ClientConnection, connect

from tests.plugins.processes import PYTHON, ServerProcess, free_port
from tests.plugins.stack import django_env
from tests.realtime_bridge.conftest import UPSTREAM_KEY

pytestmark = pytest.mark.django_db(transaction=True)


async def open_session(url: str, token: str) -> ClientConnection:
    ws = await connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10)
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "session.created"
    return ws


def serving(pid: int, port: int) -> int:
    """How many guest connections process `pid` holds on `port`."""
    conns = psutil.Process(pid).net_connections(kind="tcp")
    return sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)


async def wait_for(predicate, timeout: float = 15):
    """Poll `predicate` (process state has no event to wait on) until it returns a true value."""
    async with asyncio.timeout(timeout):
        while True:
            if value := predicate():
                return value
            await asyncio.sleep(0.1)


async def test_workers_share_the_port_are_restarted_and_stop_together(upstream, client_token):
    port = free_port()
    # 28 sessions on one token: above the per-token limit, which is not what this test is about.
    env = django_env(
        OPENAI_BASE_URL=settings.OPENAI_BASE_URL, OPENAI_API_KEY=UPSTREAM_KEY, RELAY_MAX_SESSIONS_PER_TOKEN="0"
    )
    relay = ServerProcess(
        [PYTHON, "manage.py", "run_relay", "--port", str(port), "--workers", "2", "--loop", "uvloop"],
        port=port,
        env=env,
        name="run_relay",
    )
    await asyncio.to_thread(relay.start)
    try:
        assert relay.proc is not None
        supervisor = psutil.Process(relay.proc.pid)
        workers = await wait_for(lambda: len(supervisor.children()) == 2 and supervisor.children())
        url = f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime"

        # The kernel spreads sessions over both workers (all 24 in one: 1 chance in 8 million).
        guests = [await open_session(url, client_token[1]) for _ in range(24)]
        counts = {w.pid: serving(w.pid, port) for w in workers}
        assert sum(counts.values()) == 24 and all(counts.values()), counts
        assert len(upstream.connections) == 24

        # A worker that dies takes only its own sessions; the supervisor starts another.
        dead = workers[0]
        dead.send_signal(signal.SIGKILL)
        await asyncio.to_thread(dead.wait, 10)
        replaced = await wait_for(
            lambda: len(kids := supervisor.children()) == 2 and dead.pid not in {k.pid for k in kids} and kids
        )
        await wait_for(lambda: sum(g.close_code is not None for g in guests) == counts[dead.pid])
        survivors = [g for g in guests if g.close_code is None]
        assert len(survivors) == counts[workers[1].pid]
        # New guests keep coming in, to either worker.
        late = [await open_session(url, client_token[1]) for _ in range(4)]
        assert sum(serving(w.pid, port) for w in replaced) == len(survivors) + 4

        # SIGTERM to the supervisor: every worker closes its guests (1001, going away) and exits.
        supervisor.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(relay.proc.wait, 15)
        assert code == 0
        for guest in [*survivors, *late]:
            await asyncio.wait_for(guest.wait_closed(), 5)
            assert guest.close_code == 1001
        assert not any(psutil.pid_exists(w.pid) and psutil.Process(w.pid).status() != "zombie" for w in replaced)
        assert "uvloop loop" in relay.output(tail=0)
    finally:
        relay.stop()


def test_workers_on_a_port_in_use_fail_at_once_with_a_clear_message():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"Cannot serve on 127.0.0.1:{port}: Address already in use"):
            call_command("run_relay", "--port", str(port), "--workers", "2")


def test_workers_must_be_at_least_one():
    with pytest.raises(CommandError, match="at least 1"):
        call_command("run_relay", "--workers", "0")
