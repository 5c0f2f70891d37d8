"""`python manage.py run_relay [--host H] [--port N] [--workers K] [--loop auto|uvloop|asyncio]`:
the relay on a plain websockets server (realtime_bridge/relay_server.py), for deployments whose
guests stream audio through Countersign.

With --workers K, K processes share the port (SO_REUSEPORT: the kernel hands each new session
to one of them) under a supervisor that restarts a worker that dies and passes SIGTERM/SIGINT on.
A session lives in one worker; decisions reach it through the channel layer from any process.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from realtime_bridge.relay_server import serve_relay

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop to serve on: uvloop (libuv) when installed or asked for, else asyncio's own.
    Every relayed audio frame is a socket read and a socket write; uvloop does those in C."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise CommandError("--loop uvloop: uvloop is not installed (pip install uvloop).") from None
        return None
    return uvloop.new_event_loop


def serve(host: str, port: int, factory: Callable[[], asyncio.AbstractEventLoop] | None, reuse_port: bool) -> None:
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve_relay(host, port, reuse_port=reuse_port))


def check_port(host: str, port: int) -> None:
    """Fail now, with one clear message, if the workers could not bind: a supervisor would
    otherwise restart them for ever."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server sets it
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CommandError(f"Cannot serve on {host}:{port}: {exc.strerror}.") from None


class Supervisor:
    """Forks `workers` processes running `target`, restarts one that dies, and stops them all
    on SIGTERM/SIGINT. Signals are blocked around each fork, so a child never runs the
    supervisor's handler before it has reset its own."""

    def __init__(self, workers: int, target: Callable[[], None]) -> None:
        self.workers = workers
        self.target = target
        self.children: set[int] = set()
        self.stopping = False

    def spawn(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                for signum in STOP_SIGNALS:
                    signal.signal(signum, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
                self._child()
            self.children.add(pid)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def _child(self) -> None:
        code = 0
        try:
            self.target()
        except BaseException:
            log.exception("run_relay: worker %s failed", os.getpid())
            code = 1
        finally:
            logging.shutdown()
            os._exit(code)

    def stop(self, signum: int, frame: object) -> None:
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def run(self) -> int:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.stop)
        for _ in range(self.workers):
            self.spawn()
        failures = 0
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            self.children.discard(pid)
            if not self.stopping:
                code = os.waitstatus_to_exitcode(status)
                log.warning("run_relay: worker %s exited with %s; starting another", pid, code)
                failures += 1
                time.sleep(min(5.0, 0.1 * failures))  # a worker that cannot start must not spin
                self.spawn()
        return 0


class Command(BaseCommand):
    help = "Serve the Realtime relay (/v1/realtime) on a plain websockets server."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.RELAY_PORT, help="Default: RELAY_PORT (8001).")
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            help="Processes sharing the port (SO_REUSEPORT), each holding the sessions the kernel gives it.",
        )
        parser.add_argument(
            "--loop",
            choices=["auto", "uvloop", "asyncio"],
            default="auto",
            help="Event loop: uvloop when installed (auto, the default), or asyncio's own.",
        )

    def handle(self, *args: Any, host: str, port: int, workers: int, loop: str, **options: Any) -> None:
        if workers < 1:
            raise CommandError("--workers must be at least 1.")
        factory = loop_factory(loop)
        if workers > 1:
            check_port(host, port)
        # Everything loaded so far (Django, the SDK, pydantic's models) lives as long as the
        # process. Frozen, it leaves the collector's full passes (50-90 ms each with this heap,
        # a stop of every stream), and the collector no longer writes to the pages that forked
        # workers share with the supervisor.
        gc.collect()
        gc.freeze()
        if workers == 1:
            serve(host, port, factory, reuse_port=False)
            return
        connections.close_all()  # no database connection may be shared across a fork
        Supervisor(workers, lambda: serve(host, port, factory, reuse_port=True)).run()
