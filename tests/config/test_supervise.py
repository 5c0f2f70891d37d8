"""config/supervise.py, the supervisor of `make run`: a process that exits is restarted and
the others keep running; SIGTERM stops them all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from config.supervise import read_procfile
from tests.plugins.processes import BASE_DIR

PROCFILE = """\
# comment lines and blank lines are skipped

crasher: {python} -c "import sys, time; print('crasher up', flush=True); time.sleep(0.3); sys.exit(3)"
steady: {python} -c "import time; print('steady up', flush=True); time.sleep(600)"
"""


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_read_procfile_keeps_the_order_and_skips_comments(tmp_path: Path) -> None:
    path = tmp_path / "Procfile"
    path.write_text(PROCFILE.format(python="py"))
    assert list(read_procfile(path)) == ["crasher", "steady"]
    assert read_procfile(path)["steady"].startswith("py -c ")


def test_a_crashed_process_is_restarted_the_others_keep_running_and_sigterm_stops_all(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text(PROCFILE.format(python=sys.executable))
    log = tmp_path / "out.log"
    with open(log, "wb") as log_file:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "config.supervise", "-f", str(procfile)],
            cwd=BASE_DIR,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:

        def text() -> str:
            return log.read_text(errors="replace")

        # Started, crashed, restarted (after a growing pause), crashed again: twice is enough.
        wait_for(lambda: text().count("crasher.1 exited (rc=3)") >= 2, 60, "two restarts of the crasher")
        wait_for(lambda: text().count("crasher.1 started") >= 3, 60, "the crasher's third start")
        assert supervisor.poll() is None
        out = text()
        assert re.search(r"^\d\d:\d\d:\d\d crasher\.1 +\| crasher up$", out, re.M), out
        assert re.search(r"^\d\d:\d\d:\d\d steady\.1 +\| steady up$", out, re.M), out
        assert out.count("steady.1 started") == 1 and "steady.1 exited" not in out
        pids = [int(pid) for pid in re.findall(r"started \(pid=(\d+)\)", out)]

        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(30) == 0
        out = text()
        assert "SIGTERM received, stopping all processes" in out
        assert "steady.1 stopped" in out
        wait_for(lambda: not any(alive(pid) for pid in pids), 10, "every child to be gone")
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
