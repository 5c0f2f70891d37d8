"""The latency the relay adds to a live voice session, and its memory per idle session.

    make bench        (or: python -m config.embedded exec .venv/bin/python bench/relay_overhead.py)

Paths to the same upstream (the simulator), each with the load clients, the process under test
and the simulator in processes of their own:
  direct            clients → simulator
  pipe              clients → a bare `websockets` pipe (bench/bare_pipe.py, no Django) → simulator
  pipe/uvloop       the same pipe on uvloop, the event loop `run_relay` uses
  relay/<server>    clients → Countersign's relay → simulator, on `run_relay` (one process, on
                    uvloop), `run_relay-2` (two worker processes sharing the port),
                    `run_relay-asyncio` (asyncio's own loop), Daphne or uvicorn
for 1 and 200 concurrent sessions, each streaming 50 audio frames/s (20 ms of 24 kHz PCM16,
base64) with a probe whose answer times the round trip (bench/_load_client.py): every 10th
frame, and every 2nd at 1 session (one idle session gives too few probes for a p99 otherwise).

Two shared cores carry all of it, so a path measured a minute later may see another machine:
each path runs --rounds times, interleaved (direct, pipe, relay, ..., in an order rotated every
round), each run in a fresh process, and the samples of all rounds are pooled. The per-round
ratios are printed too, so the spread shows. "Adds" = the path's round trip minus the direct
one, at p50 and p99. Target: the relay adds <= 1.25 x what the pipe adds. The CPU time the
process under test spends per client frame over the measured window is printed beside it: the
steadier figure of the work each path does.
Memory: RSS of a fresh relay (all its processes) with 200 idle sessions open, minus before (after
16 warm-up sessions), divided by 200 (target <= 350 KB).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import psutil
from _setup import BASE_DIR, PYTHON, ServerProcess, asgi_server, bench_env, free_port, percentile, setup_django

SERVERS = ["run_relay", "run_relay-asyncio", "run_relay-2", "daphne", "uvicorn"]


@dataclass
class Run:
    rtts: list[float]
    cpu_us_per_frame: float | None


@dataclass
class PathStats:
    runs: list[Run] = field(default_factory=list)

    @property
    def rtts(self) -> list[float]:
        return [rtt for run in self.runs for rtt in run.rtts]

    def q(self, q: float, run: Run | None = None) -> float:
        return percentile(run.rtts if run else self.rtts, q)

    @property
    def cpu(self) -> float | None:
        values = [run.cpu_us_per_frame for run in self.runs if run.cpu_us_per_frame is not None]
        return sum(values) / len(values) if values else None


def cpu_seconds(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [proc, *proc.children(recursive=True)])


def load(url: str, key: str, sessions: int, seconds: float, pid: int | None) -> Run:
    """Run the load client against `url`; CPU of process `pid` is read at the window's edges."""
    probe_every = "2" if sessions == 1 else "10"
    argv = [PYTHON, "bench/_load_client.py", "--url", url, "--key", key, "--sessions", str(sessions)]
    argv += ["--seconds", str(seconds), "--probe-every", probe_every]
    proc = subprocess.Popen(argv, cwd=BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(seconds + 300, proc.kill)
    watchdog.start()
    cpu: dict[str, float] = {}
    result: dict = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            message = json.loads(line)
            if "phase" in message:
                if pid is not None:
                    cpu[message["phase"]] = cpu_seconds(pid)
            else:
                result = message
        stderr = proc.stderr.read() if proc.stderr else ""
        proc.wait()
    finally:
        watchdog.cancel()
    if proc.returncode != 0 or "rtts" not in result:
        raise SystemExit(f"load client failed on {url}:\n{stderr[-3000:]}")
    per_frame = None
    if "measure" in cpu and "end" in cpu and result["frames"]:
        per_frame = (cpu["end"] - cpu["measure"]) / result["frames"] * 1e6
    return Run(result["rtts"], per_frame)


def rss_kb(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs of every path")
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 200])
    parser.add_argument("--servers", nargs="+", default=["run_relay", "run_relay-2", "daphne"], choices=SERVERS)
    args = parser.parse_args()

    sim_key = "sk-bench"
    sim_port = free_port()
    sim_url = f"ws://127.0.0.1:{sim_port}/v1/realtime"
    env = bench_env(OPENAI_API_KEY=sim_key, OPENAI_BASE_URL=f"http://127.0.0.1:{sim_port}/v1")
    setup_django()
    from approvals import services

    _, token = services.issue_token(label="Bench room", metadata={"room": "1204"})
    sim = ServerProcess(
        [PYTHON, "-m", "simulator", "--port", str(sim_port), "--api-key", sim_key], port=sim_port, env=env, name="sim"
    )

    @contextlib.contextmanager
    def middle(name: str) -> Iterator[tuple[str, str, int | None]]:
        """Start the process under test for one run: yields (url, key, pid)."""
        if name == "direct":
            yield f"{sim_url}?model=gpt-realtime", sim_key, None
            return
        port = free_port()
        if name.startswith("pipe"):
            argv = [PYTHON, "bench/bare_pipe.py", str(port), sim_url, sim_key]
            argv += ["uvloop"] if name == "pipe/uvloop" else []
            server = ServerProcess(argv, port=port, env=env, name="pipe")
            key = sim_key
        else:
            server = asgi_server(name.removeprefix("relay/"), port, env)
            key = token
        with server:
            assert server.proc is not None
            yield f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime", key, server.proc.pid

    names = ["direct", "pipe", "pipe/uvloop", *(f"relay/{server}" for server in args.servers)]
    with sim:
        print(
            f"relay overhead: probe round trips (ms) under 50 audio frames/s per session; {args.rounds} interleaved"
            f" rounds of {args.seconds:.0f} s per path; CPU = the process under test, per client frame"
        )
        for n in args.sessions:
            stats = {name: PathStats() for name in names}
            for r in range(args.rounds):
                shift = r % len(names)
                for name in names[shift:] + names[:shift]:
                    with middle(name) as (url, key, pid):
                        run = load(url, key, n, args.seconds, pid)
                    stats[name].runs.append(run)
                    cpu = f"  CPU {run.cpu_us_per_frame:6.1f} µs/frame" if run.cpu_us_per_frame is not None else ""
                    print(
                        f"  {n:>3} sessions  round {r + 1}  {name:<24} p50 {percentile(run.rtts, 50):8.2f}"
                        f"  p99 {percentile(run.rtts, 99):8.2f}  ({len(run.rtts)} probes){cpu}",
                        flush=True,
                    )
            report(n, stats, args.servers)
        for server in args.servers:
            port = free_port()
            with asgi_server(server, port, env) as web:
                url = f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime"
                print(
                    f"  memory on {server}: {idle_memory_kb(web, url, token, 200):.0f} KB per idle relayed session"
                    " (target <= 350 KB)"
                )


def report(n: int, stats: dict[str, PathStats], servers: list[str]) -> None:
    print(f"  {n:>3} sessions, all rounds pooled:")
    for name, path in stats.items():
        cpu = f"  CPU {path.cpu:6.1f} µs/frame" if path.cpu is not None else ""
        print(f"      {name:<24} p50 {path.q(50):8.2f}  p99 {path.q(99):8.2f}  ({len(path.rtts)} probes){cpu}")
    direct = stats["direct"]
    for baseline in ("pipe", "pipe/uvloop"):
        for q, label in ((50, "p50"), (99, "p99")):
            pipe_adds = stats[baseline].q(q) - direct.q(q)
            for server in servers:
                relay = stats[f"relay/{server}"]
                relay_adds = relay.q(q) - direct.q(q)
                rounds = [
                    ratio(relay.q(q, run) - direct.q(q, d), stats[baseline].q(q, p) - direct.q(q, d))
                    for run, d, p in zip(relay.runs, direct.runs, stats[baseline].runs, strict=True)
                ]
                print(
                    f"  {n:>3} sessions  {label}: {baseline:<11} adds {pipe_adds:8.2f}, relay/{server:<17} adds"
                    f" {relay_adds:8.2f}  -> ratio {ratio(relay_adds, pipe_adds):5.2f} (target <= 1.25;"
                    f" per round {' '.join(f'{x:.2f}' for x in rounds)})"
                )


def ratio(relay_adds: float, pipe_adds: float) -> float:
    return relay_adds / pipe_adds if pipe_adds > 0 else float("inf")


def idle_memory_kb(web: ServerProcess, url: str, token: str, n: int) -> float:
    """RSS growth of a fresh relay (all its processes) per idle session, after warm-up sessions
    (16, so that each worker of `run_relay-N` has served one)."""
    assert web.proc is not None
    warm = subprocess.Popen(
        [PYTHON, "bench/_load_client.py", "--url", url, "--key", token, "--sessions", "16", "--idle"],
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
