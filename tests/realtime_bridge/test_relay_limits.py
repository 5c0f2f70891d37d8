"""The relay's limits (issue 16.5): handshakes per address, counted before any database work,
and live sessions per client token, on Daphne's consumer and on run_relay."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from channels.testing import WebsocketCommunicator
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from realtime_bridge import limits
from realtime_bridge.limits import AddressLimiter
from tests.realtime_bridge.conftest import RelayClient
from tests.realtime_bridge.test_relay_server import relay_url  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_limiter() -> Iterator[None]:
    limits.HANDSHAKES.buckets.clear()
    yield
    limits.HANDSHAKES.buckets.clear()


def test_an_address_gets_its_burst_then_one_handshake_per_refill() -> None:
    limiter = AddressLimiter(per_minute=3)

    assert [limiter.allow("203.0.113.7", now=100.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("198.51.100.2", now=100.0)  # another address has its own
    assert not limiter.allow("203.0.113.7", now=110.0)  # a third of a handshake refilled
    assert limiter.allow("203.0.113.7", now=120.0)  # 20 s: one whole handshake
    assert not limiter.allow("203.0.113.7", now=120.0)


def test_zero_means_no_limit() -> None:
    limiter = AddressLimiter(per_minute=0)
    assert all(limiter.allow("203.0.113.7", now=1.0) for _ in range(1000))


async def consumer_session(token: str, address: str) -> WebsocketCommunicator:
    from config.asgi import application

    comm = WebsocketCommunicator(
        application, "/v1/realtime?model=gpt-realtime", headers=[(b"authorization", f"Bearer {token}".encode())]
    )
    comm.scope["client"] = (address, 50000)  # what Daphne puts in the scope
    connected, _ = await comm.connect(timeout=10)
    assert connected  # always upgraded first, as OpenAI does (section 1.3)
    return comm


async def refusal(comm: WebsocketCommunicator) -> tuple[dict, int, str | None]:
    event = json.loads((await comm.receive_output(10))["text"])
    close = await comm.receive_output(10)
    assert close["type"] == "websocket.close"
    return event, close["code"], close.get("reason")


async def test_daphne_refuses_an_address_over_its_handshakes_before_checking_the_token(settings) -> None:
    settings.RELAY_HANDSHAKES_PER_MINUTE_PER_ADDRESS = 2
    codes = []
    for _ in range(3):
        comm = await consumer_session("not-a-token", "203.0.113.7")
        event, code, reason = await refusal(comm)
        codes.append((event["error"]["code"], code, reason))

    assert codes == [
        ("invalid_api_key", 3000, "invalid_request_error.invalid_api_key"),
        ("invalid_api_key", 3000, "invalid_request_error.invalid_api_key"),
        # WebsocketCommunicator is a server that can send only 1000 and 3000-4999 (as Daphne
        # without config/daphne_server): 1008 goes as 4008.
        ("rate_limit_exceeded", 4008, "invalid_request_error.rate_limit_exceeded"),
    ]
    other = await consumer_session("not-a-token", "198.51.100.2")
    event, _, _ = await refusal(other)
    assert event["error"]["code"] == "invalid_api_key"


async def test_run_relay_answers_an_address_over_its_handshakes_with_http_429(relay_url, settings) -> None:  # noqa: F811
    settings.RELAY_HANDSHAKES_PER_MINUTE_PER_ADDRESS = 2
    for _ in range(2):
        async with connect(relay_url + "?model=gpt-realtime") as ws:
            assert json.loads(await ws.recv())["error"]["message"].startswith("Missing bearer")

    with pytest.raises(InvalidStatus) as refused:
        async with connect(relay_url + "?model=gpt-realtime"):
            pass
    assert refused.value.response.status_code == 429
    assert refused.value.response.headers["Retry-After"] == "60"


async def test_a_token_holds_at_most_its_live_sessions(upstream, client_token, settings) -> None:
    settings.RELAY_MAX_SESSIONS_PER_TOKEN = 1
    first = await consumer_session(client_token[1], "203.0.113.7")
    await RelayClient(first).recv_until("session.created")

    second = await consumer_session(client_token[1], "203.0.113.7")
    event, code, reason = await refusal(second)
    assert (event["error"]["type"], event["error"]["code"]) == ("invalid_request_error", "rate_limit_exceeded")
    assert (code, reason) == (4008, "invalid_request_error.rate_limit_exceeded")
    assert len(upstream.connections) == 1  # refused before any upstream session

    await first.disconnect()
    third = await consumer_session(client_token[1], "203.0.113.7")
    await RelayClient(third).recv_until("session.created")
    await third.disconnect()
