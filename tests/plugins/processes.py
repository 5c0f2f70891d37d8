"""Start real server processes for integration tests, and stop them cleanly.

    with ServerProcess([sys.executable, "-m", "demo.hotel_mcp", "--port", str(port)], port=port) as proc:
        ...

A process's output goes to a log file under var/test-logs/, printed when it fails to start
or when the test using it fails (the path is in the exception and in `proc.log_path`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

BASE_DIR = Path(__file__).resolve().parents[2]
LOG_DIR = BASE_DIR / "var" / "test-logs"
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class ServerProcess:
    """A subprocess that is ready once `port` accepts connections (and `ready_url`, if given,
    answers with `ready_status`; and `ready_log`, if given, is in its output)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
        ready_url: str | None = None,
        ready_status: int = 200,
        timeout: float = 60.0,
        name: str | None = None,
        fail_on: str | None = None,
        ready_log: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.port = port
        self.env = {**os.environ, **(env or {})}
        self.ready_url = ready_url
        self.ready_status = ready_status
        self.timeout = timeout
        self.name = name or Path(self.argv[2] if len(self.argv) > 2 else self.argv[0]).name
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{self.name}-{uuid.uuid4().hex[:8]}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        # Its base URL, for a server that has one (Stack.web sets it).
        self.url = ""
        # A line that, if the process ever logs it, fails the test that used it (checked on stop).
        self.fail_on = fail_on
        # A line the process logs once it serves (a Celery worker has no port to probe).
        self.ready_log = ready_log

    def start(self) -> ServerProcess:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=BASE_DIR, start_new_session=True
        )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")
            if self._ready():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {self.timeout:.0f} s:\n{self.output()}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        if self.ready_log is not None and self.ready_log not in self.output(tail=0):
            return False
        if self.port is not None and not port_open(self.port):
            return False
        if self.ready_url:
            try:
                return httpx.get(self.ready_url, timeout=5).status_code == self.ready_status
            except httpx.HTTPError:
                return False
        return True

    def output(self, tail: int = 8000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
            return text[-tail:] if tail else text
        except FileNotFoundError:
            return ""

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the process group, then SIGKILL what is left; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait()
        # Children that outlived the leader (e.g. a Celery pool) go too.
        self.signal(signal.SIGKILL)
        self._log.close()
        if self.fail_on:
            found = [line for line in self.output(tail=0).splitlines() if self.fail_on in line]
            if found:
                raise AssertionError(f"{self.name} logged {self.fail_on!r}:\n" + "\n".join(found[:5]))
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ThreadServer:
    """An ASGI app served by uvicorn in a thread of the test process, on a free port: for small
    test servers (MCP servers with odd behaviour, webhook receivers) that need no process."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
