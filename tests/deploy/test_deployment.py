"""The deployment of deploy/, run rather than described: every process started with its systemd
unit's command (two web processes, the relay with two workers, the bridge, a Celery worker and
beat) behind a real nginx from deploy/'s template with a self-signed certificate. Through it, end
to end: a guest on the official SDK over wss://, a staff dashboard over wss://, the decision by a
POST over HTTPS, the hotel's door opened by the simulator's MCP call."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from websockets.sync.client import connect

from approvals.models import ApprovalRequest
from tests.deploy.topology import DEPLOY, Nginx, exec_start, localize, nginx_binary, self_signed
from tests.e2e.test_browser_approval import SIM_KEY, UNLOCK, hotel_registered, open_guest, sim_url  # noqa: F401
from tests.plugins.processes import BASE_DIR, free_port
from tests.plugins.stack import Stack

pytestmark = pytest.mark.e2e

UNIT_OF_SERVICE = {
    "web1": "countersign-web@.service",
    "relay": "countersign-relay.service",
    "gateway": "countersign-gateway.service",
    "bridge": "countersign-bridge.service",
    "worker": "countersign-worker.service",
    "beat": "countersign-beat.service",
}


def normalized(argv: list[str]) -> list[str]:
    """A command without its install path, host and port: what must agree between the two files."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("-b", "-p", "--host", "--port"):
            skip = True
            continue
        if arg == "%i":
            continue
        out.append(arg.rsplit("/", 1)[-1] if arg.startswith("/opt/countersign/.venv/bin/") else arg)
    return out


def test_compose_and_the_systemd_units_run_the_same_commands():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    for service, unit in UNIT_OF_SERVICE.items():
        (unit_argv,) = exec_start(unit)
        compose_argv = compose["services"][service]["command"].split()
        assert normalized(compose_argv) == normalized(unit_argv), service
    # Three web processes in both, and exactly one beat.
    assert {"web1", "web2", "web3"} <= set(compose["services"])
    target = (DEPLOY / "systemd" / "countersign.target").read_text()
    assert len(re.findall(r"countersign-web@\d+\.service", target)) == 3 and "countersign-beat.service" in target


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


@pytest.fixture
def nginx_dir(tmp_path: Path) -> Path:
    path = tmp_path / "nginx"
    path.mkdir()
    return path


@pytest.fixture
def topology(stack: Stack, sim_url, tls, nginx_dir: Path, tmp_path: Path) -> Iterator[Nginx]:  # noqa: F811
    if nginx_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is missing in CI (.ci/run installs Debian's nginx)")
        pytest.skip("Debian's nginx is not installed (apt-get install nginx)")
    cert, key = tls
    port = free_port()
    origin = f"https://localhost:{port}"
    env = {
        "OPENAI_BASE_URL": sim_url,
        "OPENAI_API_KEY": SIM_KEY,
        "SECURE_SSL": "True",
        "CSRF_TRUSTED_ORIGINS": origin,
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "APPROVAL_TIMEOUT_SECONDS": "90",
    }
    # The migrate unit's second step: nginx serves the static files from disk.
    (_migrate, collect) = exec_start("countersign-migrate.service")
    subprocess.run([*localize(collect), "-v", "0"], check=True, cwd=BASE_DIR, env={**os.environ, **stack.env})
    var_dir = str(tmp_path / "var")
    Path(var_dir).mkdir()

    web_ports = [free_port(), free_port()]
    (web,) = exec_start("countersign-web@.service")
    for web_port in web_ports:
        stack.run(localize(web, instance=str(web_port)), name=f"web-{web_port}", port=web_port, **env)
    relay_port = free_port()
    (relay,) = exec_start("countersign-relay.service")
    stack.run(localize(relay, port=str(relay_port)), name="relay", port=relay_port, **env)
    (bridge,) = exec_start("countersign-bridge.service")
    stack.run(localize(bridge), name="bridge", **env)
    (worker,) = exec_start("countersign-worker.service")
    stack.run(localize(worker), name="celery-worker", ready_log=" ready.", **env)
    (beat,) = exec_start("countersign-beat.service")
    stack.run(localize(beat, var_dir=var_dir), name="celery-beat", **env)

    server = Nginx(nginx_dir, port, web_ports, relay_port, cert, key).start()
    yield server
    server.stop()


def test_the_approval_loop_runs_through_nginx_over_tls(
    topology: Nginx,
    tls,
    hotel_registered,  # noqa: F811
    alice,
    password,
    monkeypatch,
):
    cert, _ = tls
    origin = f"https://localhost:{topology.port}"
    # Plain HTTP is sent to HTTPS.
    redirect = httpx.get(f"http://127.0.0.1:{topology.http_port}/", follow_redirects=False)
    assert redirect.status_code == 308 and redirect.headers["location"].startswith("https://")

    context = ssl.create_default_context(cafile=str(cert))
    staff = httpx.Client(base_url=origin, verify=context, headers={"Origin": origin}, timeout=20)
    assert staff.get("/healthz").status_code == 200
    # Static files come from disk through nginx.
    css = staff.get("/static/favicon.ico")
    assert css.status_code == 200 and css.content
    page = staff.get("/accounts/login/")
    assert page.status_code == 200
    login = staff.post(
        "/accounts/login/",
        data={"username": "alice", "password": password, "csrfmiddlewaretoken": staff.cookies["csrftoken"]},
    )
    # Secure cookies and the redirect after login: Django knows it is behind TLS.
    assert login.status_code == 302, login.text
    assert login.headers["location"] == "/"

    cookies = "; ".join(f"{k}={v}" for k, v in staff.cookies.items())
    with connect(
        f"wss://localhost:{topology.port}/ws/dashboard/",
        ssl=context,
        additional_headers={"Cookie": cookies, "Origin": origin},
        open_timeout=20,
    ) as dashboard:
        first = json.loads(dashboard.recv(timeout=20))
        assert first["type"] == "snapshot"

        # The guest's SDK trusts the self-signed certificate as it would a real one.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        guest = open_guest(origin, UNLOCK)
        pk = None
        deadline = time.monotonic() + 60
        while pk is None:
            assert time.monotonic() < deadline, "no card reached the dashboard over wss://"
            frame = json.loads(dashboard.recv(timeout=60))
            request = frame.get("request") or {}
            if request.get("tool_name") == "unlock_door":
                pk = request["id"]

        decided = staff.post(
            f"/requests/{pk}/decide/",
            data={"decision": "approve", "reason": "ID checked at the desk"},
            headers={"X-CSRFToken": staff.cookies["csrftoken"]},
        )
        assert decided.status_code == 200, decided.text

    assert guest.finished.wait(60), "the guest never heard back"
    assert guest.error is None, guest.error
    ((_, call),) = guest.items("mcp_call")
    assert call.output and not call.error
    assert hotel_registered.state()["rooms"]["1204"]["door_locked"] is False
    req = ApprovalRequest.objects.get(pk=pk)
    assert req.status == "approved" and req.decided_by == alice

    # Both sockets and the POST went through nginx (its access log), the relay's by its upgrade.
    log = (topology.directory / "access.log").read_text()
    assert '"GET /v1/realtime?model=gpt-realtime HTTP/1.1" 101' in log, topology.log()
    assert '"GET /ws/dashboard/ HTTP/1.1" 101' in log
    assert f'"POST /requests/{pk}/decide/ HTTP/' in log
