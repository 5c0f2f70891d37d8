"""A malicious MCP server answering the probe: a raw HTTP server here that answers each
JSON-RPC call (initialize, tools/list) with what Hypothesis draws: garbage status lines, wrong
content types, broken JSON and SSE, or a well-formed answer carrying hostile tools (wrong types,
huge descriptions, deep schemas, thousands of tools, duplicate names).

Invariant: `probe()` returns a result and never raises nor hangs past its time limit, its
report is plain text, nothing is written to the database, and a well-behaved server probed
afterwards is still reported as fine."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from hypothesis import strategies as st

from approvals import probe as probe_module
from approvals.models import McpServer, McpTool
from approvals.probe import probe
from audit.models import AuditEvent
from tests.hostile import surfaces

pytestmark = pytest.mark.django_db(transaction=True)

GOOD_TOOL = {"name": "lookup", "description": "Look up a room.", "inputSchema": {"type": "object", "properties": {}}}


def rpc_result(request_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def initialize_result(version: Any = "2025-06-18", name: Any = "evil") -> dict[str, Any]:
    return {"protocolVersion": version, "capabilities": {"tools": {}}, "serverInfo": {"name": name, "version": "1"}}


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


class Deep(dict[str, Any]):
    """A schema nested n levels deep, shown as one line: Hypothesis prints an example it reports
    by recursing into it, and would hit Python's recursion limit on the schema itself."""

    def __init__(self, n: int) -> None:
        schema: dict[str, Any] = {"type": "object"}
        for _ in range(n - 1):
            schema = {"type": "object", "properties": {"x": schema}}
        super().__init__(type="object", properties={"x": schema})
        self.n = n

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"<an object schema nested {self.n} levels deep>")


def _deep(n: int) -> dict[str, Any]:
    return Deep(n)


hostile_tools = st.one_of(
    st.fixed_dictionaries(
        {"name": st.text(max_size=80) | _json, "inputSchema": _json | st.just({"type": "object"})},
        optional={"description": st.text() | st.just("d" * 2_000_000) | _json, "annotations": _json},
    ),
    st.builds(lambda n: {**GOOD_TOOL, "inputSchema": _deep(n)}, st.integers(10, 3_000)),
    st.just(GOOD_TOOL),
)


@dataclass
class Answer:
    """How to answer one HTTP request: status, content type, body (already bytes)."""

    status: int = 200
    content_type: str = "application/json"
    body: bytes = b""


def framed(payload: Any, sse: bool) -> Answer:
    text = json.dumps(payload)
    if sse:
        return Answer(content_type="text/event-stream", body=f"event: message\ndata: {text}\n\n".encode())
    return Answer(body=text.encode())


@st.composite
def scripts(draw: st.DrawFn) -> dict[str, Any]:
    """What the server answers to initialize and to tools/list, as functions of the request id."""
    garbage = st.builds(
        Answer,
        status=st.sampled_from([200, 200, 201, 204, 301, 400, 401, 404, 500, 599]),
        content_type=st.sampled_from(
            ["application/json", "text/event-stream", "text/html", "", "application/json; charset=bogus"]
        ),
        body=st.binary(max_size=200)
        | st.sampled_from([b"{", b"data: {\n\n", b"event: message\ndata: [1,2]\n\n", b"null"]),
    )
    init_kind = draw(st.sampled_from(["good", "good", "good", "garbage", "wrong"]))
    # "many" (5,000 tools) is one fixed answer, not drawn: test_thousands_of_tools below probes it
    # once per framing, where drawing it here would spend a sixth of `make fuzz` repeating it.
    list_kind = draw(st.sampled_from(["tools", "tools", "garbage", "wrong", "paged"]))
    return {
        "sse": draw(st.booleans()),
        "init": init_kind,
        "init_garbage": draw(garbage),
        "init_wrong": draw(_json),
        "list": list_kind,
        "list_garbage": draw(garbage),
        "list_wrong": draw(_json),
        "tools": draw(st.lists(hostile_tools, max_size=5)),
    }


@dataclass
class EvilServer:
    script: dict[str, Any] = field(
        default_factory=lambda: {"sse": False, "init": "good", "list": "tools", "tools": [GOOD_TOOL]}
    )
    port: int = 0

    def answer(self, message: Any) -> Answer:
        s = self.script
        if not isinstance(message, dict) or "id" not in message:
            return Answer(status=202, body=b"")  # notifications
        rid, method = message["id"], message.get("method")
        if method == "initialize":
            if s["init"] == "garbage":
                return s["init_garbage"]
            if s["init"] == "wrong":
                return framed(rpc_result(rid, s["init_wrong"]), s["sse"])
            return framed(rpc_result(rid, initialize_result()), s["sse"])
        if method == "tools/list":
            kind = s["list"]
            if kind == "garbage":
                return s["list_garbage"]
            if kind == "wrong":
                return framed(rpc_result(rid, s["list_wrong"]), s["sse"])
            if kind == "many":
                return framed(
                    rpc_result(rid, {"tools": [{**GOOD_TOOL, "name": f"t{i}"} for i in range(5_000)]}), s["sse"]
                )
            if kind == "paged":  # a cursor that never ends
                return framed(rpc_result(rid, {"tools": s["tools"], "nextCursor": "again"}), s["sse"])
            return framed(rpc_result(rid, {"tools": s["tools"]}), s["sse"])
        return framed({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "no"}}, s["sse"])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin1").split("\r\n")
            method = lines[0].split(" ")[0]
            length = next(
                (int(v) for k, _, v in (line.partition(": ") for line in lines[1:]) if k.lower() == "content-length"), 0
            )
            body = await reader.readexactly(length) if length else b""
            if method != "POST":
                answer = Answer(status=405, body=b"")
            else:
                try:
                    answer = self.answer(json.loads(body))
                except ValueError:
                    answer = Answer(status=400, body=b"")
            writer.write(
                f"HTTP/1.1 {answer.status} X\r\nContent-Type: {answer.content_type}\r\n"
                f"Content-Length: {len(answer.body)}\r\n"
                f"Mcp-Session-Id: evil\r\nConnection: close\r\n\r\n".encode()
                + answer.body
            )
            await writer.drain()
        writer.close()


@pytest.fixture
async def evil() -> AsyncIterator[EvilServer]:
    server = EvilServer()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server


@sync_to_async
def state() -> tuple[int, int, int]:
    return McpServer.objects.count(), McpTool.objects.count(), AuditEvent.objects.count()


async def test_the_probe_survives_a_malicious_server(evil: EvilServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # A server that stalls costs the probe its whole time limit; 1 s keeps thousands of examples
    # affordable and is still far above what a loopback answer takes.
    monkeypatch.setattr(probe_module, "PROBE_TIMEOUT", 1.0)
    url = f"http://127.0.0.1:{evil.port}/mcp"
    before = await state()

    async def one(script: dict[str, Any]) -> None:
        evil.script = script
        async with asyncio.timeout(2 * 1 + 10):  # both transports tried, each within its limit
            result = await probe(url=url, transport="auto", authorization="", headers={})
        assert isinstance(result.report(), str)
        assert result.ok or result.problems
        assert await state() == before
        surfaces.ran("MCP probe (malicious server)")

    await surfaces.explore(scripts(), one)
    evil.script = EvilServer().script
    result = await probe(url=url, transport="auto", authorization="", headers={})
    assert result.ok, result.problems


@pytest.mark.parametrize("sse", [False, True])
async def test_thousands_of_tools_are_probed_within_the_time_limit(evil: EvilServer, sse: bool) -> None:
    evil.script = {**EvilServer().script, "sse": sse, "list": "many"}
    before = await state()
    async with asyncio.timeout(2 * probe_module.PROBE_TIMEOUT + 10):
        result = await probe(url=f"http://127.0.0.1:{evil.port}/mcp", transport="auto", authorization="", headers={})
    assert isinstance(result.report(), str)
    assert result.ok or result.problems
    assert await state() == before
