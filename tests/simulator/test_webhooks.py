"""Signed `realtime.call.incoming` webhooks (REALTIME_PROTOCOL.md section 8.2), checked by the official
SDK's `client.webhooks.unwrap()`, exactly as a console receiving OpenAI's webhooks would."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import openai
import pytest
from openai.types.webhooks import RealtimeCallIncomingWebhookEvent, UnwrapWebhookEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulator import webhooks
from simulator.state import Call
from tests.plugins.processes import free_port
from tests.simulator.test_http_api import Sim, ThreadServer, running_simulator


@pytest.fixture(scope="module")
def _simulator() -> Iterator[Sim]:
    with running_simulator() as sim:
        yield sim


@pytest.fixture
def sim(_simulator: Sim) -> Sim:
    return _simulator.reset()


def unwrap(body: bytes, headers: dict[str, str], secret: str) -> UnwrapWebhookEvent:
    return openai.OpenAI(api_key="unused", webhook_secret=secret).webhooks.unwrap(body, headers)


def test_the_sdk_accepts_a_placed_calls_webhook_with_the_right_secret(sim):
    call_id = sim.place_call(**{"from": "+14155550111", "to": "+18005550199"})

    [(headers, body)] = sim.receiver.deliveries
    event = unwrap(body, headers, sim.state.config.webhook_secret)

    assert isinstance(event, RealtimeCallIncomingWebhookEvent)
    RealtimeCallIncomingWebhookEvent.model_validate(json.loads(body), strict=True)
    assert event.type == "realtime.call.incoming"
    assert event.data.call_id == call_id
    assert event.data.sip_headers[0].value == "sip:+14155550111@sip.example.com"
    assert event.data.sip_media_security == "srtp"
    assert headers["user-agent"] == webhooks.USER_AGENT
    assert headers["webhook-id"].startswith("wh_")
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 10


def test_the_sdk_rejects_the_webhook_with_a_wrong_secret(sim):
    sim.place_call()

    [(headers, body)] = sim.receiver.deliveries
    with pytest.raises(openai.InvalidWebhookSignatureError):
        unwrap(body, headers, webhooks.new_secret())


def test_the_sdk_rejects_a_tampered_body(sim):
    sim.place_call()

    [(headers, body)] = sim.receiver.deliveries
    with pytest.raises(openai.InvalidWebhookSignatureError):
        unwrap(body.replace(b"rtc_", b"rtc_0"), headers, sim.state.config.webhook_secret)


def test_a_signature_older_than_five_minutes_is_rejected():
    secret = webhooks.new_secret()
    call = Call(call_id="rtc_0123", kind="sip", created_at=time.time())
    body = json.dumps(webhooks.call_incoming_event(call)).encode()
    old = webhooks.signed_headers(body, secret=secret, timestamp=int(time.time()) - 301)
    fresh = webhooks.signed_headers(body, secret=secret)

    with pytest.raises(openai.InvalidWebhookSignatureError, match="too old"):
        unwrap(body, old, secret)
    assert unwrap(body, fresh, secret).data.call_id == "rtc_0123"


def test_the_same_event_can_be_delivered_twice_with_one_webhook_id(sim):
    response = sim.post("/sim/calls", {"deliveries": 2})

    assert [d["delivered"] for d in response.json()["deliveries"]] == [True, True]
    (h1, b1), (h2, b2) = sim.receiver.deliveries
    assert h1["webhook-id"] == h2["webhook-id"] and b1 == b2
    assert len(sim.state.calls) == 1


def test_a_webhook_url_in_the_request_overrides_the_configured_one(sim):
    with ThreadServer(receiver_app := _echo_app()) as other:
        response = sim.post("/sim/calls", {"webhook_url": f"{other.url}/elsewhere"})

    assert response.json()["deliveries"][0]["url"].endswith("/elsewhere")
    assert sim.receiver.deliveries == []
    assert len(receiver_app.state.seen) == 1


def test_a_receiver_that_fails_is_reported_and_the_call_still_rings(sim):
    sim.receiver.status = 500

    response = sim.post("/sim/calls", {})

    [delivery] = response.json()["deliveries"]
    assert (delivery["status_code"], delivery["delivered"]) == (500, False)
    assert sim.state.calls[response.json()["call_id"]].status == "incoming"


def test_an_unreachable_receiver_is_reported(sim):
    response = sim.post("/sim/calls", {"webhook_url": f"http://127.0.0.1:{free_port()}/hook"})

    [delivery] = response.json()["deliveries"]
    assert delivery["delivered"] is False and delivery["status_code"] is None
    assert "ConnectError" in delivery["error"]


def test_placing_a_call_without_a_webhook_secret_is_400(sim):
    sim.state.config.webhook_secret, secret = "", sim.state.config.webhook_secret
    try:
        response = sim.post("/sim/calls", {})
    finally:
        sim.state.config.webhook_secret = secret

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "webhook_secret"
    assert sim.state.calls == {}


def test_a_secret_without_the_whsec_prefix_is_used_as_raw_bytes():
    # The SDK's rule (openai/lib/_webhooks.py), so a plain shared secret works on both ends too.
    event = {"object": "event", "id": "evt_1", "type": "realtime.call.incoming", "created_at": 1}
    body = json.dumps({**event, "data": {"call_id": "rtc_1", "sip_headers": []}}).encode()

    headers = webhooks.signed_headers(body, secret="plain-secret")

    assert unwrap(body, headers, "plain-secret").data.call_id == "rtc_1"


def _echo_app() -> Starlette:
    async def hook(request: Request) -> Response:
        app.state.seen.append(await request.body())
        return Response(status_code=204)

    app = Starlette(routes=[Route("/elsewhere", hook, methods=["POST"])])
    app.state.seen = []
    return app
