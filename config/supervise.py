"""The process supervisor of `make run` (config/embedded.py): the Procfile's processes, each
restarted when it exits, until Ctrl-C or SIGTERM stops them all.

    python -m config.supervise [-f Procfile] [NAME ...]

One process exiting is no reason to stop the others: a worker that died with Redis would take
the web, the bridge and beat with it, and every guest and dashboard would be dropped. A process
that exits is logged and started again after a pause that grows while it keeps failing
(RESTART_DELAYS), reset once it has run for STABLE_SECONDS.

Output is prefixed with the time and the process's name, as honcho does (`10:20:24 web.1 | ...`).
Each process runs in a process group of its own, so that stopping it also stops its children
(a Celery pool, the shell a Procfile line runs in).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_SECONDS = 30.0
STOP_TIMEOUT = 10.0


@dataclass
class Program:
    """One supervised process. `command`: a Procfile line, run by /bin/sh, or an argv.
    `quiet`: its output is not shown (Redis writes its own log file). `last`: stopped after the
    others (Redis, so that the web and the worker can still shut down cleanly)."""

    name: str
    command: str | Sequence[str]
    quiet: bool = False
    last: bool = False
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    restarts: int = 0
    label: str = field(init=False)

    def __post_init__(self) -> None:
        self.label = f"{self.name}.1"


def read_procfile(path: Path) -> dict[str, str]:
    """`name: command` lines, in order; blank lines and `#` comments skipped."""
    entries: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        name, _, command = line.partition(":")
        entries[name.strip()] = command.strip()
    return entries


class Supervisor:
    """Starts the programs, restarts those that exit, and stops all on SIGINT/SIGTERM."""

    def __init__(self, programs: Sequence[Program], env: dict[str, str] | None = None, *, out: IO[str] | None = None):
        self.programs = list(programs)
        self.env = dict(os.environ if env is None else env)
        self.out = out or sys.stdout
        self.width = max([len(p.label) for p in self.programs] + [len("system")])
        self.stopping = threading.Event()
        self._write_lock = threading.Lock()

    # --- Output ---------------------------------------------------------------------------

    def write(self, label: str, text: str) -> None:
        with self._write_lock:
            self.out.write(f"{time.strftime('%H:%M:%S')} {label.ljust(self.width)} | {text}\n")
            self.out.flush()

    def log(self, text: str) -> None:
        self.write("system", text)

    def _pump(self, program: Program, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.write(program.label, raw.decode(errors="replace").rstrip("\n"))
        stream.close()

    # --- Processes --------------------------------------------------------------------------

    def start(self, program: Program) -> None:
        """Start (or restart) one program."""
        if isinstance(program.command, str):
            # `exec`: the shell becomes the command, which then gets the signals itself.
            argv: list[str] = ["/bin/sh", "-c", f"exec {program.command}"]
        else:
            argv = list(program.command)
        output = subprocess.DEVNULL if program.quiet else subprocess.PIPE
        proc = subprocess.Popen(
            argv,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        program.proc, program.started_at, program.restart_at = proc, time.monotonic(), None
        if proc.stdout is not None:
            threading.Thread(target=self._pump, args=(program, proc.stdout), daemon=True).start()
        self.log(f"{program.label} started (pid={proc.pid})")

    def _exited(self, program: Program, code: int) -> None:
        """Schedule the restart of a program that exited on its own."""
        ran = time.monotonic() - program.started_at
        if ran >= STABLE_SECONDS:
            program.failures = 0
        delay = RESTART_DELAYS[min(program.failures, len(RESTART_DELAYS) - 1)]
        program.failures += 1
        program.restart_at = time.monotonic() + delay
        program.proc = None
        self.log(f"{program.label} exited (rc={code}) after {ran:.1f} s; restarting in {delay:.0f} s")

    def tick(self) -> None:
        """One round: note programs that exited, restart those whose pause is over."""
        for program in self.programs:
            if program.proc is not None:
                code = program.proc.poll()
                if code is not None and not self.stopping.is_set():
                    self._exited(program, code)
            elif program.restart_at is not None and time.monotonic() >= program.restart_at:
                program.restarts += 1
                self.start(program)

    def run(self, poll: float = 0.2) -> int:
        """Supervise until SIGINT or SIGTERM; then stop everything. Returns 0."""
        previous = {signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            for program in self.programs:
                if program.proc is None:
                    self.start(program)
                else:  # started by the caller (the embedded Redis): supervised from now on
                    program.started_at = time.monotonic()
            while not self.stopping.wait(poll):
                self.tick()
        finally:
            self.stop_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self.stopping.is_set():
            self.log(f"{signal.Signals(signum).name} received, stopping all processes")
        self.stopping.set()

    def stop_all(self) -> None:
        self.stopping.set()
        self._stop([p for p in self.programs if not p.last])
        self._stop([p for p in self.programs if p.last])

    def _stop(self, programs: list[Program]) -> None:
        running = [p for p in programs if p.proc is not None and p.proc.poll() is None]
        for program in running:
            _killpg(program, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for program in running:
            assert program.proc is not None
            try:
                program.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log(f"{program.label} did not stop within {STOP_TIMEOUT:.0f} s; killing it")
                _killpg(program, signal.SIGKILL)
                program.proc.wait()
            self.log(f"{program.label} stopped (rc={program.proc.returncode})")
        for program in programs:
            if program.proc is not None:
                _killpg(program, signal.SIGKILL)  # what outlived its leader (a Celery pool child)


def _killpg(program: Program, signum: int) -> None:
    assert program.proc is not None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(program.proc.pid, signum)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.supervise", description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--procfile", type=Path, default=Path("Procfile"))
    parser.add_argument("names", nargs="*", help="processes to run (default: all)")
    args = parser.parse_args(argv)
    entries = read_procfile(args.procfile)
    unknown = [name for name in args.names if name not in entries]
    if unknown:
        parser.error(f"not in {args.procfile}: {', '.join(unknown)}")
    names = args.names or list(entries)
    return Supervisor([Program(name, entries[name]) for name in names]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
