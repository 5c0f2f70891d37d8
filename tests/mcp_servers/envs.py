"""The virtualenvs of the third-party Python MCP servers the probe tests start (tests/probe): `fastmcp`
4.x and the `mcp` 1.x SDK, which are no dependencies of Countersign (it runs mcp 2.x). Each lives in
var/mcp-servers/<name>/, made from its pinned requirements file here with pip from PyPI, and is made
again when that file changes.

    python -m tests.mcp_servers.envs        # make them all (.ci/run does)

The tests call python_of(name), which makes a missing one the same way; when that is impossible (no
network, no PyPI) it raises Unavailable with the reason, and the tests skip, or fail in CI.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1] / "var" / "mcp-servers"
ENVS = {"fastmcp4": HERE / "requirements-fastmcp4.txt", "mcp1": HERE / "requirements-mcp1.txt"}
INSTALL_TIMEOUT = 900


class Unavailable(Exception):
    """The virtualenv could not be made; the message says why."""


def python_of(name: str) -> Path:
    """The python of virtualenv `name`, made first if missing or out of date."""
    requirements = ENVS[name]
    venv = ROOT / name
    python = venv / "bin" / "python"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = venv / ".requirements-sha256"
    ROOT.mkdir(parents=True, exist_ok=True)
    with open(ROOT / f".{name}.lock", "w") as lock:  # one maker at a time (test processes, .ci/run)
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and stamp.exists() and stamp.read_text() == digest:
            return python
        shutil.rmtree(venv, ignore_errors=True)
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(requirements)],
        ]
        for argv in steps:
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise Unavailable(f"{' '.join(argv[:4])}… failed: {exc}") from exc
            if done.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                raise Unavailable(f"{' '.join(argv[:4])}… exited {done.returncode}: {done.stderr.strip()[-600:]}")
        stamp.write_text(digest)
    return python


def main() -> None:
    for name in ENVS:
        print(f"{name}: {python_of(name)}")


if __name__ == "__main__":
    main()
