"""The relay's transport on both of its servers, as real processes: Daphne as the Procfile runs
it (config/daphne_server.py) and `run_relay`. Whatever server a client reaches, it gets OpenAI's
close codes and reasons, messages up to OpenAI's own limit pass, and a bigger one is answered
with an `error` event and a close (issue 16.4, issue 14)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from approvals import services
from approvals.models import RealtimeSession
from tests.plugins.stack import Stack
from tests.plugins.upstream import ThreadedUpstream

pytestmark = pytest.mark.e2e

SERVERS = ["daphne", "run_relay"]
MIB = 2**20


def start(stack: Stack, server: str, **env: str) -> str:
    """The relay's ws:// URL on `server`, started with `env`."""
    proc = stack.web(None, **env) if server == "daphne" else stack.relay(None, **env)
    return proc.url.replace("http://", "ws://") + "/v1/realtime"


def token() -> str:
    _, plaintext = services.issue_token(label="Room 1204", metadata={"room": "1204"})
    return plaintext


async def closed(ws) -> tuple[int | None, str | None, list[dict]]:
    """Read until the server closes: (code, reason, the events read before)."""
    events = []
    try:
        while True:
            events.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
    except ConnectionClosed as exc:
        frame = exc.rcvd
    return (frame.code if frame else None), (frame.reason if frame else None), events


def append(size: int) -> str:
    head = '{"type":"input_audio_buffer.append","audio":"'
    return head + "A" * (size - len(head) - 2) + '"}'


def wait(predicate: Callable[[], object], timeout: float = 30) -> None:
    ThreadedUpstream.wait_for(None, predicate, timeout)  # type: ignore[arg-type]


@pytest.fixture
def upstream_env(threaded_upstream: ThreadedUpstream) -> dict[str, str]:
    return {"OPENAI_BASE_URL": threaded_upstream.base_url, "OPENAI_API_KEY": "sk-upstream"}


@pytest.mark.parametrize("server", SERVERS)
def test_a_15_mib_audio_append_passes_and_a_bigger_message_gets_an_error_and_a_close(
    stack: Stack, threaded_upstream: ThreadedUpstream, upstream_env: dict[str, str], server: str
) -> None:
    url = start(stack, server, **upstream_env)
    plaintext = token()

    async def talk() -> tuple[int | None, str | None, list[dict]]:
        headers = {"Authorization": f"Bearer {plaintext}"}
        async with connect(f"{url}?model=gpt-realtime", additional_headers=headers, max_size=None) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "session.created"
            await ws.send(append(15 * MIB))
            await asyncio.to_thread(
                wait, lambda: any(e.get("type") == "input_audio_buffer.append" for _, e in threaded_upstream.received)
            )
            await ws.send(append(17 * MIB))
            return await closed(ws)

    code, reason, events = asyncio.run(talk())

    (received,) = [e for _, e in threaded_upstream.received if e.get("type") == "input_audio_buffer.append"]
    assert len(received["audio"]) == 15 * MIB - len('{"type":"input_audio_buffer.append","audio":""}')
    (error,) = [e for e in events if e["type"] == "error"]
    assert (error["error"]["type"], error["error"]["code"]) == ("invalid_request_error", "message_too_large")
    assert (code, reason) == (1009, "invalid_request_error.message_too_large")
    wait(lambda: not RealtimeSession.objects.filter(closed_at__isnull=True).exists())


@pytest.mark.parametrize("server", SERVERS)
def test_a_message_over_the_servers_own_limit_is_closed_with_1009_not_dropped(
    stack: Stack, threaded_upstream: ThreadedUpstream, upstream_env: dict[str, str], server: str
) -> None:
    url = start(stack, server, **upstream_env)
    plaintext = token()

    async def talk() -> tuple[int | None, str | None, list[dict]]:
        headers = {"Authorization": f"Bearer {plaintext}"}
        # Not `async with`: the server closes while the client still writes, and closing again
        # on the way out trips over the aborted transport; closed() has read the close already.
        ws = await connect(f"{url}?model=gpt-realtime", additional_headers=headers, max_size=None)
        await asyncio.wait_for(ws.recv(), 30)
        with contextlib.suppress(ConnectionClosed):
            await ws.send(append(40 * MIB))
        return await closed(ws)

    code, _, _ = asyncio.run(talk())

    assert code == 1009
    wait(lambda: not RealtimeSession.objects.filter(closed_at__isnull=True).exists())


@pytest.mark.parametrize("server", SERVERS)
def test_upstreams_close_code_and_reason_reach_the_client(
    stack: Stack, threaded_upstream: ThreadedUpstream, upstream_env: dict[str, str], server: str
) -> None:
    url = start(stack, server, **upstream_env)
    plaintext = token()

    async def talk() -> tuple[int | None, str | None, list[dict]]:
        headers = {"Authorization": f"Bearer {plaintext}"}
        async with connect(f"{url}?model=gpt-realtime", additional_headers=headers) as ws:
            await asyncio.wait_for(ws.recv(), 30)
            await asyncio.to_thread(threaded_upstream.close, 0, 1012, "service restart")
            return await closed(ws)

    code, reason, _ = asyncio.run(talk())

    assert (code, reason) == (1012, "service restart")


@pytest.mark.parametrize("server", SERVERS)
def test_a_bad_token_gets_openais_error_close_code_and_reason(
    stack: Stack, upstream_env: dict[str, str], server: str
) -> None:
    url = start(stack, server, **upstream_env)

    async def talk() -> tuple[int | None, str | None, list[dict]]:
        headers = {"Authorization": "Bearer not-a-token"}
        async with connect(f"{url}?model=gpt-realtime", additional_headers=headers) as ws:
            return await closed(ws)

    code, reason, events = asyncio.run(talk())

    assert [e["error"]["code"] for e in events] == ["invalid_api_key"]
    assert (code, reason) == (3000, "invalid_request_error.invalid_api_key")


@pytest.mark.parametrize("server", SERVERS)
def test_an_unknown_model_gets_upstreams_own_error_and_close(stack: Stack, simulator, server: str) -> None:
    url = start(stack, server, OPENAI_BASE_URL=simulator.base_url, OPENAI_API_KEY=simulator.api_key)
    plaintext = token()

    async def talk() -> tuple[int | None, str | None, list[dict]]:
        headers = {"Authorization": f"Bearer {plaintext}"}
        async with connect(f"{url}?model=gpt-nonexistent", additional_headers=headers) as ws:
            return await closed(ws)

    code, reason, events = asyncio.run(talk())

    assert [(e["type"], e["error"]["type"], e["error"]["code"]) for e in events] == [
        ("error", "invalid_request_error", "invalid_model")
    ]
    assert "gpt-nonexistent" in events[0]["error"]["message"]
    assert (code, reason) == (4000, "invalid_request_error.invalid_model")
    assert not RealtimeSession.objects.exists()  # nothing opened, nothing left open
