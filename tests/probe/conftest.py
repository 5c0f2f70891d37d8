"""Third-party MCP servers, each a real process on a free port, started once per test module on
first use: the reference server `@modelcontextprotocol/server-everything` from npm (run by Node), a
`fastmcp` 4.x server with ten tools and servers of the `mcp` 1.x SDK (each in its own virtualenv,
tests/mcp_servers/envs.py). `.ci/run` installs all of them; without them the tests skip locally and
fail in CI (CI=true)."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mcp_servers import envs
from tests.plugins.processes import ServerProcess, free_port

SERVERS_DIR = Path(__file__).resolve().parents[1] / "mcp_servers"
EVERYTHING = SERVERS_DIR / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why} in CI (.ci/run installs it)")
    pytest.skip(f"{why} (.ci/run installs it)")


def _python(name: str) -> str:
    try:
        return str(envs.python_of(name))
    except envs.Unavailable as exc:
        _unavailable(f"the {name} virtualenv could not be made: {exc}")
        raise  # unreachable: _unavailable raises


class ThirdParty:
    """Starts each named server once and keeps it for the session; `url(key)` is its MCP URL."""

    def __init__(self) -> None:
        self.started: dict[str, tuple[ServerProcess, str]] = {}

    def url(self, key: str) -> str:
        if key not in self.started:
            port = free_port()
            argv, path = self._argv(key, port)
            # PORT is how the npm package takes its port; the Python servers take --port.
            proc = ServerProcess(
                argv, port=port, env={"PORT": str(port)}, name="mcp-" + re.sub(r"[^A-Za-z0-9_-]+", "_", key), timeout=90
            ).start()
            self.started[key] = (proc, f"http://127.0.0.1:{port}{path}")
        return self.started[key][1]

    def _argv(self, key: str, port: int) -> tuple[list[str], str]:
        kind, _, variant = key.partition(":")
        if kind == "everything":
            if not (shutil.which("node") and EVERYTHING.is_file()):
                _unavailable("node or tests/mcp_servers/node_modules (npm ci) is missing")
            # "sse" serves /sse (and /message), "streamableHttp" serves /mcp.
            return ["node", str(EVERYTHING), variant], "/sse" if variant == "sse" else "/mcp"
        if kind == "fastmcp":
            transport, path, *flags = variant.split(",")
            argv = [_python("fastmcp4"), str(SERVERS_DIR / "fastmcp_ten.py"), "--transport", transport]
            return [*argv, "--port", str(port), "--path", path, *flags], path
        if kind == "mcp1":
            script = [_python("mcp1"), str(SERVERS_DIR / "mcp1_servers.py")]
            if variant in ("example", "example-sse", "oauth"):
                transport = "sse" if variant == "example-sse" else "streamable-http"
                name = "oauth" if variant == "oauth" else "example"
                path = "/sse" if transport == "sse" else "/mcp"
                return [*script, name, "--port", str(port), "--transport", transport], path
            tools, path = HANDMADE[variant]
            sse_path = path if path != "/mcp" else "/sse"
            argv = [*script, "handmade", "--port", str(port), "--tools", json.dumps(tools), "--sse-path", sse_path]
            return argv, path
        raise KeyError(key)

    def stop(self) -> None:
        for proc, _ in self.started.values():
            proc.stop()


OBJECT = {"type": "object", "properties": {"room": {"type": "string"}}, "required": ["room"]}
LONG_NAME = "look_up_the_complete_folio_history_of_a_guest_including_every_charge_x"  # 70 characters
HANDMADE: dict[str, tuple[list[dict[str, Any]], str]] = {
    # One tool with a non-object input schema among good ones, and a dotted name (MCP allows it).
    "mixed": (
        [
            {"name": "ring_bell", "inputSchema": OBJECT},
            {"name": "count_guests", "inputSchema": {"type": "string"}},
            {"name": "files.read", "inputSchema": {"type": "object"}},
            {"name": "get_status", "inputSchema": OBJECT, "annotations": {"readOnlyHint": True}},
        ],
        "/mcp",
    ),
    # Only tools OpenAI would refuse: the session's listing completes with none of them.
    "refused": (
        [{"name": "files.read", "inputSchema": {"type": "object"}}, {"name": LONG_NAME, "inputSchema": OBJECT}],
        "/mcp",
    ),
    # A server that lists no tools at all.
    "empty": ([], "/mcp"),
}


@pytest.fixture(scope="module")
def third_party() -> Iterator[ThirdParty]:
    """The servers, stopped when the module's tests are done (they are only needed here)."""
    servers = ThirdParty()
    yield servers
    servers.stop()
