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
from _setup import BASE_DIR, PYTHON, ServerProcess, bench_env, free_port, percentile, setup_django


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
        check=True,
        timeout=seconds + 120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["rtts"]


def rss_kb(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 200])
    args = parser.parse_args()

    sim_key = "sk-bench"
    sim_port, pipe_port, web_port = free_port(), free_port(), free_port()
    env = bench_env(OPENAI_API_KEY=sim_key, OPENAI_BASE_URL=f"http://127.0.0.1:{sim_port}/v1")
    setup_django()
    from approvals import services

    _, token = services.issue_token(label="Bench room", metadata={"room": "1204"})
    sim = ServerProcess(
        [PYTHON, "-m", "simulator", "--port", str(sim_port), "--api-key", sim_key],
        port=sim_port,
        env=env,
        name="simulator",
    )
    pipe = ServerProcess(
        [PYTHON, "bench/bare_pipe.py", str(pipe_port), f"ws://127.0.0.1:{sim_port}/v1/realtime", sim_key],
        port=pipe_port,
        env=env,
        name="pipe",
    )
    web = ServerProcess(
        [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(web_port), "config.asgi:application"],
        port=web_port,
        env=env,
        name="daphne",
    )
    procs = [sim, pipe, web]
    try:
        for proc in procs:
            proc.start()
        paths = {
            "direct": (f"ws://127.0.0.1:{sim_port}/v1/realtime?model=gpt-realtime", sim_key),
            "pipe": (f"ws://127.0.0.1:{pipe_port}/v1/realtime?model=gpt-realtime", sim_key),
            "relay": (f"ws://127.0.0.1:{web_port}/v1/realtime?model=gpt-realtime", token),
        }
        print(f"relay overhead: probe round trips under 50 frames/s per session, {args.seconds:.0f} s per path (ms)")
        for n in args.sessions:
            stats = {}
            for name, (url, key) in paths.items():
                rtts = load(url, key, n, args.seconds)
                stats[name] = (percentile(rtts, 50), percentile(rtts, 99), len(rtts))
                p50, p99, count = stats[name]
                print(f"  {n:>3} sessions  {name:<6} p50 {p50:7.2f}  p99 {p99:7.2f}  ({count} probes)", flush=True)
            for q, label in ((0, "p50"), (1, "p99")):
                pipe_adds = stats["pipe"][q] - stats["direct"][q]
                relay_adds = stats["relay"][q] - stats["direct"][q]
                ratio = relay_adds / pipe_adds if pipe_adds > 0 else float("inf")
                print(
                    f"  {n:>3} sessions  {label}: pipe adds {pipe_adds:6.2f}, relay adds {relay_adds:6.2f}"
                    f"  -> relay/pipe {ratio:4.2f} (target <= 1.25)"
                )

        assert web.proc is not None
        before = rss_kb(web.proc.pid)
        idle = subprocess.Popen(
            [
                PYTHON,
                "bench/_load_client.py",
                "--url",
                paths["relay"][0],
                "--key",
                token,
                "--sessions",
                "200",
                "--idle",
            ],
            cwd=BASE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert idle.stdout is not None and idle.stdin is not None
        idle.stdout.readline()
        time.sleep(3)
        after = rss_kb(web.proc.pid)
        idle.stdin.close()
        idle.wait(60)
        print(
            f"  memory: Daphne {before / 1024:.1f} MB → {after / 1024:.1f} MB with 200 idle relayed sessions: "
            f"{(after - before) / 200:.0f} KB per session (target ≤ 350 KB)"
        )
    finally:
        for proc in reversed(procs):
            proc.stop()


if __name__ == "__main__":
    main()
