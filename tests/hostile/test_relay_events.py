"""Relay client events, hostile: SDK-typed events and their mutations on one live session.

Driven in-process twice: through the Channels consumer (WebsocketCommunicator, in-memory layer)
and through `run_relay` (the plain websockets server, started in this process on a free port).
After every frame, a marker event must reach upstream (the session still serves, in order),
nothing but `error` events may come back, the session row stays open, and no approval request
or audit row appears. A text frame only reaches upstream re-serialised and never as a client's
own approval.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from approvals.models import ApprovalRequest, RealtimeSession
from audit.models import AuditEvent
from realtime_bridge.gate import MAX_CLIENT_MESSAGE_CHARS
from realtime_bridge.relay_server import serve_relay
from tests.hostile import strategies, surfaces
from tests.plugins.processes import free_port
from tests.realtime_bridge.conftest import FakeUpstream, RelayClient, open_relay

pytestmark = pytest.mark.django_db(transaction=True)


@sync_to_async
def state() -> tuple[list[str], int, int]:
    return (
        list(RealtimeSession.objects.values_list("status", flat=True)),
        ApprovalRequest.objects.count(),
        AuditEvent.objects.count(),
    )


async def marker_arrives(upstream: FakeUpstream, marker: str) -> list[str | bytes]:
    """Wait for the marker upstream; returns what arrived before it (and clears the record)."""
    async with asyncio.timeout(10):
        while not any(isinstance(f, str) and marker in f for f in upstream.received):
            upstream.arrived.clear()
            await upstream.arrived.wait()
    before = [f for f in upstream.received if not (isinstance(f, str) and marker in f)]
    upstream.received.clear()
    return before


async def eventually(predicate: Callable[[], bool], *, in_db: bool = False, timeout: float = 15) -> None:
    """Poll until `predicate` holds (in a thread when it reads the database)."""
    check = sync_to_async(predicate) if in_db else sync_to_async(predicate, thread_sensitive=False)
    async with asyncio.timeout(timeout):
        # A database row changes: there is no event to wait on.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def check_forwarded(frames: list[str | bytes]) -> None:
    for frame in frames:
        if isinstance(frame, bytes):
            continue  # binary frames pass as they are; OpenAI answers them with invalid_event
        event = json.loads(frame)  # re-serialised by the gate: always one JSON object
        assert isinstance(event, dict) and isinstance(event["type"], str)
        item = event.get("item")
        assert not (isinstance(item, dict) and item.get("type") == "mcp_approval_response"), frame


def check_answers(outputs: list[dict[str, Any]]) -> None:
    for output in outputs:
        assert output["type"] == "websocket.send", output  # no close: the session goes on
        assert json.loads(output["text"])["type"] == "error", output


async def test_the_channels_relay_survives_hostile_frames(upstream: FakeUpstream, client_token: Any) -> None:
    comm, connected, _ = await open_relay(client_token[1])
    assert connected
    rc = RelayClient(comm)
    await rc.recv_until("session.created")
    await rc.send({"type": "input_audio_buffer.clear", "event_id": "hostile_start"})
    await marker_arrives(upstream, "hostile_start")  # and the relay's own first frames, if any
    before = await state()
    assert before[0] == ["open"]
    counter = iter(range(10**9))

    async def one(frame: str | bytes) -> None:
        marker = f"hostile_marker_{next(counter)}"
        # send_input, not send_to: an empty frame is a frame too.
        await comm.send_input({"type": "websocket.receive", "bytes" if isinstance(frame, bytes) else "text": frame})
        await rc.send({"type": "input_audio_buffer.clear", "event_id": marker})
        check_forwarded(await marker_arrives(upstream, marker))
        outputs = []
        while not comm.output_queue.empty():
            outputs.append(comm.output_queue.get_nowait())
        check_answers(outputs)
        assert await state() == before
        surfaces.ran("relay client events (Channels)")

    await surfaces.explore(strategies.hostile_frames(), one)
    await comm.disconnect()


@pytest.fixture
async def relay_url(upstream: FakeUpstream) -> AsyncIterator[str]:
    port = free_port()
    ready = asyncio.Event()
    server = asyncio.create_task(serve_relay("127.0.0.1", port, ready=ready))
    await asyncio.wait_for(ready.wait(), 10)
    yield f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime"
    server.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await server


async def open_run_relay(url: str, token: str) -> ClientConnection:
    ws = await connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None)
    async with asyncio.timeout(10):
        while json.loads(await ws.recv())["type"] != "session.created":
            pass
    return ws


async def test_run_relay_survives_hostile_frames(upstream: FakeUpstream, client_token: Any, relay_url: str) -> None:
    ws = await open_run_relay(relay_url, client_token[1])
    await ws.send(json.dumps({"type": "input_audio_buffer.clear", "event_id": "hostile_start"}))
    await marker_arrives(upstream, "hostile_start")
    before = await state()
    counter = iter(range(10**9))

    async def one(frame: str | bytes) -> None:
        marker = f"hostile_marker_{next(counter)}"
        await ws.send(frame)
        await ws.send(json.dumps({"type": "input_audio_buffer.clear", "event_id": marker}))
        check_forwarded(await marker_arrives(upstream, marker))
        with contextlib.suppress(TimeoutError):
            while True:  # the answers so far: `error` events only, and no close
                assert json.loads(await asyncio.wait_for(ws.recv(), 0.001))["type"] == "error"
        assert await state() == before
        surfaces.ran("relay client events (run_relay)")

    await surfaces.explore(strategies.hostile_frames(), one)
    await ws.close()


@given(payload=strategies.invalid_utf8())
async def test_run_relay_ends_a_session_cleanly_on_a_text_frame_that_is_not_utf8(
    upstream: FakeUpstream, client_token: Any, relay_url: str, payload: bytes, settings: Any
) -> None:
    """A text frame that is not UTF-8 is a protocol error (close 1007): the session ends as any
    other does: its row closed, upstream closed, nothing left behind."""
    # One session per example, all from 127.0.0.1: `make fuzz` opens 10,000 of them, far past the
    # per-address handshake limit (tests/realtime_bridge/test_relay_limits.py tests that limit).
    settings.RELAY_HANDSHAKES_PER_MINUTE_PER_ADDRESS = 0
    ws = await open_run_relay(relay_url, client_token[1])
    opened = len(upstream.connections)
    await ws.send(payload, text=True)
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    await eventually(lambda: len(upstream.closed) >= opened)
    await eventually(lambda: "open" not in RealtimeSession.objects.values_list("status", flat=True), in_db=True)
    assert (await state())[1] == 0
    surfaces.ran("relay invalid UTF-8 text frames (run_relay)")


async def test_an_event_over_the_relays_limit_gets_an_error_and_a_close(
    relay: RelayClient, upstream: FakeUpstream
) -> None:
    """Issue 16: frames up to OpenAI's limit pass; larger ones get an error event and a close
    (tests/e2e/test_relay_transport.py checks the close code on both servers). Nothing of the
    big event reaches upstream."""
    await relay.send({"type": "input_audio_buffer.clear", "event_id": "hostile_start"})
    await marker_arrives(upstream, "hostile_start")
    await relay.send('{"type":"response.create","x":"' + "a" * MAX_CLIENT_MESSAGE_CHARS + '"}')
    error = await relay.recv_until("error", timeout=30)
    assert error["error"]["code"] == "message_too_large"
    assert not any(isinstance(f, str) and '"x":"aaaa' in f for f in upstream.received)


@given(depth=st.integers(min_value=1_000, max_value=5_000))
def test_the_gate_refuses_deep_nesting_before_parsing(depth: int) -> None:
    """issue 16 #1 at the gate itself, with no session: invalid_json, never RecursionError."""
    from realtime_bridge.gate import RelayGate

    text = '{"type":"session.update","session":' + "[" * depth
    to_upstream, errors = asyncio.run(RelayGate().from_client(text))
    assert to_upstream is None and json.loads(errors[0])["error"]["code"] == "invalid_json"
    surfaces.ran("relay gate deep nesting")


@pytest.mark.parametrize("frame", strategies.ESCAPED_SURROGATES)
async def test_an_escaped_lone_surrogate_gets_an_error_and_the_session_goes_on(
    relay: RelayClient, upstream: FakeUpstream, frame: str
) -> None:
    await relay.send({"type": "input_audio_buffer.clear", "event_id": "hostile_start"})
    await marker_arrives(upstream, "hostile_start")
    before = await state()
    await relay.send(frame)
    await relay.send({"type": "input_audio_buffer.clear", "event_id": "after_the_surrogate"})
    check_forwarded(await marker_arrives(upstream, "after_the_surrogate"))
    assert await state() == before
