"""Every way out of a relayed session ends it cleanly, on both servers that carry the relay
(Daphne's RelayConsumer and run_relay): an error at any stage closes upstream, closes the
session row and cancels its pending requests, with one log line; hostile JSON from the client
gets an `error` event and the session goes on."""

from __future__ import annotations

import abc
import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from websockets.asyncio.client import ClientConnection, connect

# The ASGI app sets Django's logging up when first imported; imported here, before any test
# runs, it cannot replace the handler that pytest's caplog puts on the root logger mid-test.
import config.asgi  # noqa: F401
from approvals import events
from approvals.models import ApprovalRequest, RealtimeSession
from realtime_bridge import gate, handlers, protocol
from realtime_bridge.relay_server import serve_relay
from tests.plugins.processes import free_port
from tests.realtime_bridge.conftest import FakeUpstream, db, open_relay
from tests.realtime_bridge.test_consumers import APPROVAL_ITEM

pytestmark = pytest.mark.django_db(transaction=True)

NESTED = '{"type":"session.update","session":' + "[" * 3000 + "]" * 3000 + "}"


class Guest(abc.ABC):
    """A client of the relay, whichever server carries it (Daphne or run_relay, below)."""

    server_error_code: int

    @abc.abstractmethod
    async def recv(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    async def send(self, text: str) -> None: ...

    @abc.abstractmethod
    async def closed(self) -> tuple[int | None, str | None]:
        """Wait for the relay to close this guest: its close code and reason."""

    @abc.abstractmethod
    async def leave(self) -> None: ...

    async def recv_until(self, kind: str) -> dict[str, Any]:
        async with asyncio.timeout(5):
            while True:
                event = await self.recv()
                if event.get("type") == kind:
                    return event


class DaphneGuest(Guest):
    server_error_code = 4011

    def __init__(self, comm: WebsocketCommunicator) -> None:
        self.comm = comm
        self.close: dict[str, Any] | None = None

    async def recv(self) -> dict[str, Any]:
        output = await self.comm.receive_output(5)
        if output["type"] == "websocket.close":
            self.close = output
            raise AssertionError(f"closed: {output}")
        return json.loads(output["text"])

    async def send(self, text: str) -> None:
        await self.comm.send_to(text_data=text)

    async def closed(self) -> tuple[int | None, str | None]:
        while self.close is None:
            output = await self.comm.receive_output(5)
            if output["type"] == "websocket.close":
                self.close = output
        return self.close["code"], self.close["reason"]

    async def leave(self) -> None:
        await self.comm.disconnect(code=self.close["code"] if self.close else 1000)


class RunRelayGuest(Guest):
    server_error_code = 1011

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def recv(self) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), 5))

    async def send(self, text: str) -> None:
        await self.ws.send(text)

    async def closed(self) -> tuple[int | None, str | None]:
        await asyncio.wait_for(self.ws.wait_closed(), 5)
        return self.ws.close_code, self.ws.close_reason

    async def leave(self) -> None:
        await self.ws.close()


Connect = Callable[[], Awaitable[Guest]]


@pytest.fixture(params=["daphne", "run_relay"])
async def connect_guest(request, upstream, client_token) -> AsyncIterator[Connect]:
    """Opens guests on the relay of the server this test runs on (both, by parametrisation)."""
    guests: list[Guest] = []
    server: asyncio.Task[None] | None = None
    url = ""
    if request.param == "run_relay":
        port = free_port()
        ready = asyncio.Event()
        server = asyncio.create_task(serve_relay("127.0.0.1", port, ready=ready))
        await asyncio.wait_for(ready.wait(), 10)
        url = f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime"

    async def open_guest() -> Guest:
        guest: Guest
        if server is None:
            comm, connected, _ = await open_relay(client_token[1])
            assert connected
            guest = DaphneGuest(comm)
        else:
            headers = {"Authorization": f"Bearer {client_token[1]}"}
            guest = RunRelayGuest(await connect(url, additional_headers=headers, open_timeout=10))
        guests.append(guest)
        return guest

    yield open_guest
    for guest in guests:
        try:
            await guest.leave()
        except Exception:
            pass
    if server is not None:
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server


async def _eventually(check: Callable[[], Awaitable[Any]], timeout: float = 5) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            if value := await check():
                return value
            await asyncio.sleep(0.05)


async def _pending_request(guest: Guest, upstream: FakeUpstream) -> ApprovalRequest:
    await guest.recv_until("session.created")
    await upstream.send({"type": "conversation.item.done", "event_id": "e5", "item": APPROVAL_ITEM})
    await guest.recv_until("conversation.item.done")
    req = await _eventually(lambda: db(ApprovalRequest.objects.filter(upstream_id="mcpr_abc123").first))
    assert req.status == "pending"
    return req


async def _assert_ended_cleanly(guest: Guest, upstream: FakeUpstream, req: ApprovalRequest, caplog: Any) -> None:
    assert await guest.closed() == (guest.server_error_code, "server_error")
    await _eventually(lambda: _true(bool(upstream.closed)))
    session = await _eventually(
        lambda: db(RealtimeSession.objects.filter(pk=req.session_id, status=RealtimeSession.Status.CLOSED).first)
    )
    assert session.close_code == guest.server_error_code
    await db(req.refresh_from_db)
    assert req.status == "cancelled"
    lines = [r for r in caplog.records if r.name.startswith("realtime_bridge") and r.levelno >= logging.WARNING]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "failed" in lines[0].getMessage()


async def _true(value: bool) -> bool:
    return value


# --- Failures at each stage -------------------------------------------------------------------


async def test_an_error_handling_a_client_event_ends_the_session_cleanly(connect_guest, upstream, monkeypatch, caplog):
    guest = await connect_guest()
    req = await _pending_request(guest, upstream)

    async def broken(self, text):
        raise RuntimeError("injected: client event")

    monkeypatch.setattr(gate.RelayGate, "from_client", broken)
    await guest.send('{"type":"input_audio_buffer.commit"}')
    await _assert_ended_cleanly(guest, upstream, req, caplog)


async def test_an_error_in_the_upstream_reader_ends_the_session_cleanly(connect_guest, upstream, monkeypatch, caplog):
    guest = await connect_guest()
    req = await _pending_request(guest, upstream)

    def broken(self, frame, event):
        raise RuntimeError("injected: upstream reader")

    monkeypatch.setattr(gate.RelayGate, "to_client", broken)
    await upstream.send(
        {"type": "response.done", "event_id": "e6", "response": {"id": "resp_1", "status": "completed"}}
    )
    await _assert_ended_cleanly(guest, upstream, req, caplog)


async def test_an_error_recording_an_upstream_event_ends_the_session_cleanly(
    connect_guest, upstream, monkeypatch, caplog
):
    guest = await connect_guest()
    req = await _pending_request(guest, upstream)

    def broken(session_id, event):
        raise RuntimeError("injected: database handler")

    monkeypatch.setattr(handlers, "dispatch", broken)
    message = {"id": "item_m", "type": "message", "role": "assistant", "content": [{"type": "text", "text": "Hi."}]}
    await upstream.send({"type": "conversation.item.done", "event_id": "e6", "item": message})
    await _assert_ended_cleanly(guest, upstream, req, caplog)


async def test_an_error_opening_the_session_row_closes_upstream_and_refuses_the_guest(
    connect_guest, upstream, monkeypatch, caplog
):
    def broken(**kwargs):
        raise RuntimeError("injected: opening the session row")

    monkeypatch.setattr(handlers, "open_relay_session", broken)
    guest = await connect_guest()
    error = await guest.recv_until("error")
    assert error["error"]["type"] == "server_error"
    assert await guest.closed() == (guest.server_error_code, "server_error")
    await _eventually(lambda: _true(bool(upstream.closed)))
    assert await db(RealtimeSession.objects.count) == 0
    lines = [r for r in caplog.records if r.name.startswith("realtime_bridge") and r.levelno >= logging.WARNING]
    assert len(lines) == 1, [r.getMessage() for r in lines]


async def test_an_error_joining_the_decision_group_closes_the_session_it_opened(
    connect_guest, upstream, monkeypatch, caplog
):
    def broken(session_id: int) -> str:
        raise RuntimeError("injected: channel layer")

    monkeypatch.setattr(events, "session_group", broken)
    guest = await connect_guest()
    assert await guest.closed() == (guest.server_error_code, "server_error")
    await _eventually(lambda: _true(bool(upstream.closed)))
    await _eventually(lambda: db(RealtimeSession.objects.filter(status=RealtimeSession.Status.CLOSED).exists))
    assert await db(RealtimeSession.objects.count) == 1
    lines = [r for r in caplog.records if r.name.startswith("realtime_bridge") and r.levelno >= logging.WARNING]
    assert len(lines) == 1, [r.getMessage() for r in lines]


# --- Hostile JSON -----------------------------------------------------------------------------


async def test_deeply_nested_json_gets_an_error_and_the_session_goes_on_then_closes_cleanly(
    connect_guest, upstream, caplog
):
    guest = await connect_guest()
    req = await _pending_request(guest, upstream)
    await guest.send(NESTED)
    error = await guest.recv_until("error")
    assert (error["error"]["type"], error["error"]["code"]) == ("invalid_request_error", "invalid_json")

    await guest.send('{"type":"input_audio_buffer.commit"}')  # the session is still usable
    await upstream.wait_for(lambda e: e.get("type") == "input_audio_buffer.commit")
    assert not any(
        isinstance(f, str) and f.startswith('{"type":"session.update","session":[') for f in upstream.received
    )

    await guest.leave()
    await _eventually(lambda: _true(bool(upstream.closed)))
    await _eventually(
        lambda: db(RealtimeSession.objects.filter(pk=req.session_id, status=RealtimeSession.Status.CLOSED).exists)
    )
    await db(req.refresh_from_db)
    assert req.status == "cancelled"
    assert not [r for r in caplog.records if r.name.startswith("realtime_bridge") and r.levelno >= logging.WARNING]


async def test_the_gate_answers_invalid_json_even_when_the_parser_itself_gives_up(monkeypatch):
    """The depth check comes first; should it let a frame through, Python's own RecursionError is
    still an `invalid_json` error, not a dead session."""
    monkeypatch.setattr(protocol, "nested_deeper_than", lambda text, limit: False)
    to_upstream, errors = await gate.RelayGate().from_client(NESTED)
    assert to_upstream is None
    (error,) = [json.loads(e) for e in errors]
    assert error["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("text", "deeper"),
    [
        ("[" * 129 + "]" * 129, True),
        ("[" * 128 + "]" * 128, False),
        ('{"a":"' + "[" * 500 + '"}', False),  # brackets inside a string do not nest
        ('{"a":"\\"' + "{" * 500 + '"}', False),  # nor after an escaped quote
        ('{"a":[' + '{"b":[' * 70 + "]}" * 70 + "]}", True),
        ("[" + "[1]," * 1000 + "[1]]", False),  # many brackets, shallow
    ],
)
def test_nesting_is_counted_outside_strings(text: str, deeper: bool) -> None:
    assert protocol.nested_deeper_than(text, gate.MAX_CLIENT_JSON_DEPTH) is deeper
