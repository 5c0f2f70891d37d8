"""The latency the relay adds to a live voice session, and its memory per idle session.

    make bench        (or: python -m config.embedded exec .venv/bin/python bench/relay_overhead.py)

Three paths to the same upstream (the simulator), measured in one run, each in processes of
their own (load clients | relay or pipe | simulator):
  direct  clients → simulator
  pipe    clients → a bare `websockets` pipe (bench/bare_pipe.py, no Django) → simulator
  relay   clients → Countersign's relay on one Daphne → simulator
for 1 and 200 concurrent sessions, each streaming 50 audio frames/s (20 ms of 24 kHz PCM16,
base64) with a probe every 10th frame whose answer times the round trip (bench/_load_client.py).
"Adds" = the path's round trip minus the direct one, at p50 and p99. Target: relay adds
<= 1.25 x what the pipe adds. Memory: Daphne's RSS with 200 idle relayed sessions open, minus
before, divided by 200 (target <= 350 KB).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time

import psutil
from _setup import BASE_DIR, PYTHON, ServerProcess, asgi_server, bench_env, free_port, percentile, setup_django


def load(url: str, key: str, sessions: int, seconds: float) -> list[float]:
    out = subprocess.run(
        [
            PYTHON,
            "bench/_load_client.py",
            "--url",
            url,
            "--key",
            key,
            "--sessions",
            str(sessions),
            "--seconds",
            str(seconds),
        ],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=seconds + 300,
    )
    if out.returncode != 0:
        raise SystemExit(f"load client failed on {url}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["rtts"]


def rss_kb(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 200])
    servers = ["daphne", "uvicorn", "run_relay"]
    parser.add_argument("--servers", nargs="+", default=servers, choices=servers)
    args = parser.parse_args()

    sim_key = "sk-bench"
    sim_port, pipe_port = free_port(), free_port()
    env = bench_env(OPENAI_API_KEY=sim_key, OPENAI_BASE_URL=f"http://127.0.0.1:{sim_port}/v1")
    setup_django()
    from approvals import services

    _, token = services.issue_token(label="Bench room", metadata={"room": "1204"})
    sim = ServerProcess(
        [PYTHON, "-m", "simulator", "--port", str(sim_port), "--api-key", sim_key], port=sim_port, env=env, name="sim"
    )
    pipe = ServerProcess(
        [PYTHON, "bench/bare_pipe.py", str(pipe_port), f"ws://127.0.0.1:{sim_port}/v1/realtime", sim_key],
        port=pipe_port,
        env=env,
        name="pipe",
    )
    with sim, pipe:
        print(f"relay overhead: probe round trips under 50 audio frames/s per session, {args.seconds:.0f} s each (ms)")
        for n in args.sessions:
            stats = {}
            paths = [
                ("direct", f"ws://127.0.0.1:{sim_port}/v1/realtime?model=gpt-realtime", sim_key, None),
                ("pipe", f"ws://127.0.0.1:{pipe_port}/v1/realtime?model=gpt-realtime", sim_key, None),
            ]
            paths += [(f"relay/{server}", "", token, server) for server in args.servers]
            for name, url, key, server in paths:
                if server is None:
                    rtts = load(url, key, n, args.seconds)
                else:
                    port = free_port()
                    with asgi_server(server, port, env):
                        rtts = load(f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime", key, n, args.seconds)
                stats[name] = (percentile(rtts, 50), percentile(rtts, 99), len(rtts))
                p50, p99, count = stats[name]
                print(f"  {n:>3} sessions  {name:<14} p50 {p50:8.2f}  p99 {p99:8.2f}  ({count} probes)", flush=True)
            for q, label in ((0, "p50"), (1, "p99")):
                pipe_adds = stats["pipe"][q] - stats["direct"][q]
                for server in args.servers:
                    relay_adds = stats[f"relay/{server}"][q] - stats["direct"][q]
                    ratio = relay_adds / pipe_adds if pipe_adds > 0 else float("inf")
                    print(
                        f"  {n:>3} sessions  {label}: pipe adds {pipe_adds:8.2f}, relay on {server:<7} adds"
                        f" {relay_adds:8.2f}  -> relay/pipe {ratio:5.2f} (target <= 1.25)"
                    )
        for server in args.servers:
            port = free_port()
            with asgi_server(server, port, env) as web:
                url = f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime"
                print(
                    f"  memory on {server}: {idle_memory_kb(web, url, token, 200):.0f} KB per idle relayed session"
                    " (target <= 350 KB)"
                )


def idle_memory_kb(web: ServerProcess, url: str, token: str, n: int) -> float:
    """RSS growth of a fresh relay process per idle session, after one warm-up session."""
    assert web.proc is not None
    warm = subprocess.Popen(
        [PYTHON, "bench/_load_client.py", "--url", url, "--key", token, "--sessions", "1", "--idle"],
        cwd=BASE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert warm.stdout is not None and warm.stdin is not None
    warm.stdout.readline()
    time.sleep(1)
    before = rss_kb(web.proc.pid)
    idle = subprocess.Popen(
        [PYTHON, "bench/_load_client.py", "--url", url, "--key", token, "--sessions", str(n), "--idle"],
        cwd=BASE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert idle.stdout is not None and idle.stdin is not None
    idle.stdout.readline()
    time.sleep(3)
    after = rss_kb(web.proc.pid)
    for proc in (idle, warm):
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(60)
    return (after - before) / n


if __name__ == "__main__":
    main()
