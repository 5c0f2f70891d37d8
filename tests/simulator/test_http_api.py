"""The simulator's HTTP side: client secrets, WebRTC call creation, SIP call control and the /sim
controls, driven with the official `openai` SDK wherever it has a method (REALTIME_PROTOCOL.md 3.2, 8)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from openai.types.realtime import ClientSecretCreateResponse, RealtimeServerEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from websockets.exceptions import ConnectionClosed

from simulator.app import create_app
from simulator.config import SimulatorConfig
from simulator.state import SimulatorState
from simulator.webhooks import new_secret
from tests.plugins.processes import ThreadServer

API_KEY = "sk-sim-test"
OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        "a=mid:0",
        "a=rtpmap:111 opus/48000/2",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "c=IN IP4 0.0.0.0",
        "a=mid:1",
        "",
    ]
)


@dataclass
class Receiver:
    """A console's webhook endpoint: records every delivery and answers `status`."""

    url: str
    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: int = 200


@dataclass
class Sim:
    """A simulator on a real port, plus the console-side webhook endpoint its SIP calls notify."""

    url: str
    state: SimulatorState
    receiver: Receiver

    def reset(self) -> Sim:
        self.state.calls.clear()
        self.state.client_secrets.clear()
        self.state.responses.clear()
        self.receiver.deliveries.clear()
        self.receiver.status = 200
        return self

    @property
    def client(self) -> openai.OpenAI:
        return openai.OpenAI(api_key=API_KEY, base_url=f"{self.url}/v1", max_retries=0)

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        key: str | None = API_KEY,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        headers = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
        if body is not None:
            kwargs["json"] = body
        return httpx.post(self.url + path, headers=headers, timeout=20, **kwargs)

    def place_call(self, **body: Any) -> str:
        response = self.post("/sim/calls", body)
        assert response.status_code == 201, response.text
        return response.json()["call_id"]


@contextmanager
def running_simulator(**config: Any) -> Iterator[Sim]:
    """A simulator (the real app) and a webhook receiver, each served by uvicorn on a free port."""
    receiver = Receiver(url="")

    async def hook(request: Request) -> Response:
        receiver.deliveries.append((dict(request.headers), await request.body()))
        return Response(status_code=receiver.status)

    with ThreadServer(Starlette(routes=[Route("/hooks/openai", hook, methods=["POST"])])) as hooks:
        receiver.url = f"{hooks.url}/hooks/openai"
        # validate_events: every server event of these tests is checked against the SDK's types too.
        settings = {
            "api_key": API_KEY,
            "webhook_url": receiver.url,
            "webhook_secret": new_secret(),
            "validate_events": True,
            **config,
        }
        app = create_app(SimulatorConfig(**settings))
        with ThreadServer(app) as server:
            yield Sim(url=server.url, state=app.state.sim, receiver=receiver)


@pytest.fixture(scope="module")
def _simulator() -> Iterator[Sim]:
    with running_simulator() as sim:
        yield sim


@pytest.fixture
def sim(_simulator: Sim) -> Sim:
    return _simulator.reset()


def assert_openai_error(response: httpx.Response, status: int, code: str | None, param: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code
    if param is not None:
        assert error["param"] == param


MCP_TOOL = {
    "type": "mcp",
    "server_label": "hotel_ops",
    "server_url": "http://127.0.0.1:9/mcp",
    "headers": {"X-API-Key": "k"},
    "require_approval": "always",
}


# -- authentication ------------------------------------------------------------------------------


def test_a_wrong_api_key_is_401_invalid_api_key(sim):
    client = openai.OpenAI(api_key="sk-wrong-key-1234", base_url=f"{sim.url}/v1", max_retries=0)

    with pytest.raises(openai.AuthenticationError) as raised:
        client.realtime.client_secrets.create(session={"type": "realtime"})

    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"
    assert "sk-" in raised.value.message and "sk-wrong-key-1234" not in raised.value.message


@pytest.mark.parametrize(
    "path",
    [
        "/v1/realtime/client_secrets",
        "/v1/realtime/calls/rtc_x/accept",
        "/v1/realtime/calls/rtc_x/hangup",
        "/v1/responses",
        "/sim/calls",
    ],
)
def test_a_missing_api_key_is_401_with_no_code(sim, path):
    response = sim.post(path, {}, key=None)

    assert_openai_error(response, 401, None)
    assert "didn't provide an API key" in response.json()["error"]["message"]


def test_a_client_secret_is_not_an_api_key(sim):
    secret = sim.client.realtime.client_secrets.create(session={"type": "realtime"}).value

    response = sim.post("/v1/realtime/client_secrets", {}, key=secret)

    assert_openai_error(response, 401, "invalid_api_key")


# -- client secrets ------------------------------------------------------------------------------


def test_client_secret_carries_the_effective_session(sim):
    before = int(time.time())
    raw = sim.client.realtime.client_secrets.with_raw_response.create(
        session={"type": "realtime", "model": "gpt-realtime", "instructions": "Be brief.", "tools": [MCP_TOOL]}
    )

    body = json.loads(raw.text)
    ClientSecretCreateResponse.model_validate(body, strict=True)
    assert body["value"].startswith("ek_")
    assert before + 600 <= body["expires_at"] <= int(time.time()) + 600
    session = body["session"]
    assert session["object"] == "realtime.session" and session["id"].startswith("sess_")
    assert session["instructions"] == "Be brief."
    assert session["tools"] == [MCP_TOOL]
    assert session["audio"]["output"]["voice"] == "marin"
    assert sim.state.client_secrets[body["value"]].session_config == session


def test_client_secret_lifetime_follows_expires_after(sim):
    secret = sim.client.realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 60}, session={"type": "realtime"}
    )

    assert secret.expires_at <= int(time.time()) + 60


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"expires_after": {"seconds": 5}}, "invalid_value", "expires_after.seconds"),
        ({"expires_after": {"seconds": 7201}}, "invalid_value", "expires_after.seconds"),
        ({"expires_after": {"anchor": "now", "seconds": 60}}, "invalid_value", "expires_after.anchor"),
        ({"session": {"type": "realtime", "bogus_field": 1}}, "unknown_parameter", "session.bogus_field"),
        ({"session": {"type": "realtime", "model": "gpt-nonsense"}}, "invalid_model", "session.model"),
        ({"session": {"type": "transcription"}}, "invalid_value", "session.type"),
        ({"session": {"type": "realtime", "instructions": 42}}, "invalid_value", None),
        (
            {"session": {"type": "realtime", "tools": [{**MCP_TOOL, "connector_id": "connector_gmail"}]}},
            "invalid_value",
            None,
        ),
    ],
)
def test_client_secret_rejects_bad_bodies_with_400(sim, body, code, param):
    response = sim.post("/v1/realtime/client_secrets", body)

    assert_openai_error(response, 400, code, param)
    assert sim.state.client_secrets == {}


def test_a_body_that_is_not_json_is_400(sim):
    response = sim.post("/v1/realtime/client_secrets", content=b"{not json", key=API_KEY)

    assert_openai_error(response, 400, None)
    assert "could not parse the JSON body" in response.json()["error"]["message"]


# -- WebRTC: POST /v1/realtime/calls -------------------------------------------------------------


def test_webrtc_call_is_created_from_a_multipart_offer(sim):
    raw = sim.client.realtime.calls.with_raw_response.create(
        sdp=OFFER, session={"type": "realtime", "model": "gpt-realtime", "instructions": "Hotel concierge."}
    )

    assert raw.status_code == 201
    assert raw.headers["content-type"].startswith("application/sdp")
    call_id = raw.headers["location"].rsplit("/", 1)[-1]
    assert raw.headers["location"] == f"/v1/realtime/calls/{call_id}" and call_id.startswith("rtc_")
    answer = raw.parse().text
    assert answer.startswith("v=0\r\n")
    assert "a=group:BUNDLE 0 1" in answer and "a=setup:passive" in answer
    assert "m=application 9 UDP/DTLS/SCTP webrtc-datachannel" in answer
    call = sim.state.calls[call_id]
    assert (call.kind, call.status) == ("webrtc", "accepted")
    assert call.session_config["instructions"] == "Hotel concierge."
    assert call.session is not None


def test_webrtc_call_with_a_client_secret_takes_the_secrets_session(sim):
    secret = sim.client.realtime.client_secrets.create(
        session={"type": "realtime", "instructions": "From the server.", "tools": [MCP_TOOL]}
    )

    response = sim.post(
        "/v1/realtime/calls", content=OFFER.encode(), key=secret.value, headers={"Content-Type": "application/sdp"}
    )

    assert response.status_code == 201, response.text
    call = sim.state.calls[response.headers["location"].rsplit("/", 1)[-1]]
    assert call.session_config["instructions"] == "From the server."
    assert call.session_config["tools"] == [MCP_TOOL]


def test_webrtc_call_with_an_expired_client_secret_is_401(sim):
    secret = sim.client.realtime.client_secrets.create(session={"type": "realtime"})
    sim.state.client_secrets[secret.value].expires_at = int(time.time()) - 1

    response = sim.post(
        "/v1/realtime/calls", content=OFFER.encode(), key=secret.value, headers={"Content-Type": "application/sdp"}
    )

    assert_openai_error(response, 401, "invalid_api_key")


def test_webrtc_call_needs_a_session_when_authenticated_with_the_api_key(sim):
    response = sim.post("/v1/realtime/calls", content=OFFER.encode(), headers={"Content-Type": "application/sdp"})

    assert_openai_error(response, 400, "missing_required_parameter", "session")
    assert sim.state.calls == {}


def test_webrtc_call_rejects_an_offer_that_is_not_sdp(sim):
    with pytest.raises(openai.BadRequestError) as raised:
        sim.client.realtime.calls.create(sdp="hello", session={"type": "realtime"})

    assert raised.value.status_code == 400
    assert raised.value.param == "sdp"
    assert sim.state.calls == {}


# -- SIP call control (section 8.3) --------------------------------------------------------------


def test_accept_starts_the_session_with_the_given_config(sim):
    call_id = sim.place_call()

    sim.client.realtime.calls.accept(
        call_id, type="realtime", model="gpt-realtime", instructions="Front desk.", tools=[MCP_TOOL]
    )

    call = sim.state.calls[call_id]
    assert call.status == "accepted"
    assert call.session_config["instructions"] == "Front desk."
    assert call.session_config["tools"] == [MCP_TOOL]
    assert call.session is not None


def test_accept_of_an_unknown_call_is_404_call_id_not_found(sim):
    with pytest.raises(openai.NotFoundError) as raised:
        sim.client.realtime.calls.accept("rtc_doesnotexist", type="realtime", model="gpt-realtime")

    assert raised.value.body == {
        "message": "No session found for the provided call_id",
        "type": "invalid_request_error",
        "param": None,
        "code": "call_id_not_found",
    }


def test_accept_after_the_caller_hung_up_is_404(sim):
    call_id = sim.place_call()
    assert sim.post(f"/sim/calls/{call_id}/hangup").status_code == 200

    with pytest.raises(openai.NotFoundError):
        sim.client.realtime.calls.accept(call_id, type="realtime", model="gpt-realtime")

    assert sim.state.calls[call_id].status == "ended"


def test_accept_twice_is_400_and_keeps_the_first_session(sim):
    call_id = sim.place_call()
    sim.client.realtime.calls.accept(call_id, type="realtime", instructions="First.")
    first = sim.state.calls[call_id].session

    with pytest.raises(openai.BadRequestError):
        sim.client.realtime.calls.accept(call_id, type="realtime", instructions="Second.")

    assert sim.state.calls[call_id].session is first
    assert sim.state.calls[call_id].session_config["instructions"] == "First."


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"model": "gpt-realtime"}, "missing_required_parameter", "type"),
        ({"type": "realtime", "bogus": True}, "unknown_parameter", "session.bogus"),
        ({"type": "realtime", "model": "gpt-nonsense"}, "invalid_model", "session.model"),
    ],
)
def test_accept_with_a_bad_body_is_400_and_leaves_the_call_ringing(sim, body, code, param):
    call_id = sim.place_call()

    response = sim.post(f"/v1/realtime/calls/{call_id}/accept", body)

    assert_openai_error(response, 400, code, param)
    assert sim.state.calls[call_id].status == "incoming"


def test_reject_declines_with_603_by_default(sim):
    call_id = sim.place_call()

    sim.client.realtime.calls.reject(call_id)

    call = sim.state.calls[call_id]
    assert (call.status, call.reject_status, call.session) == ("rejected", 603, None)


def test_reject_with_a_status_code(sim):
    call_id = sim.place_call()

    sim.client.realtime.calls.reject(call_id, status_code=486)

    assert sim.state.calls[call_id].reject_status == 486


def test_reject_with_a_status_that_is_not_a_sip_error_is_400(sim):
    call_id = sim.place_call()

    response = sim.post(f"/v1/realtime/calls/{call_id}/reject", {"status_code": 200})

    assert_openai_error(response, 400, "invalid_value", "status_code")
    assert sim.state.calls[call_id].status == "incoming"


def test_reject_of_an_accepted_call_is_404(sim):
    call_id = sim.place_call()
    sim.client.realtime.calls.accept(call_id, type="realtime")

    with pytest.raises(openai.NotFoundError):
        sim.client.realtime.calls.reject(call_id)


def test_refer_transfers_an_accepted_call_and_ends_its_session(sim):
    call_id = sim.place_call()
    sim.client.realtime.calls.accept(call_id, type="realtime")

    sim.client.realtime.calls.refer(call_id, target_uri="tel:+14155550123")

    call = sim.state.calls[call_id]
    assert (call.status, call.refer_target) == ("referred", "tel:+14155550123")
    with pytest.raises(openai.NotFoundError):
        sim.client.realtime.calls.hangup(call_id)


@pytest.mark.parametrize(
    ("body", "code"), [({}, "missing_required_parameter"), ({"target_uri": "+14155550123"}, "invalid_value")]
)
def test_refer_needs_a_tel_or_sip_target(sim, body, code):
    call_id = sim.place_call()
    sim.client.realtime.calls.accept(call_id, type="realtime")

    response = sim.post(f"/v1/realtime/calls/{call_id}/refer", body)

    assert_openai_error(response, 400, code, "target_uri")
    assert sim.state.calls[call_id].status == "accepted"


def test_refer_of_a_call_that_was_never_accepted_is_404(sim):
    call_id = sim.place_call()

    with pytest.raises(openai.NotFoundError):
        sim.client.realtime.calls.refer(call_id, target_uri="sip:agent@example.com")


def test_hangup_ends_the_call_once(sim):
    call_id = sim.place_call()
    sim.client.realtime.calls.accept(call_id, type="realtime")

    sim.client.realtime.calls.hangup(call_id)

    assert sim.state.calls[call_id].status == "ended"
    with pytest.raises(openai.NotFoundError):
        sim.client.realtime.calls.hangup(call_id)


def test_hangup_works_for_webrtc_calls(sim):
    raw = sim.client.realtime.calls.with_raw_response.create(sdp=OFFER, session={"type": "realtime"})
    call_id = raw.headers["location"].rsplit("/", 1)[-1]

    sim.client.realtime.calls.hangup(call_id)

    assert sim.state.calls[call_id].status == "ended"


# -- /sim controls -------------------------------------------------------------------------------


def test_placing_a_call_creates_an_incoming_sip_call(sim):
    response = sim.post("/sim/calls", {"from": "+14155550111", "to": "+18005550199"})

    assert response.status_code == 201
    body = response.json()
    call = sim.state.calls[body["call_id"]]
    assert (call.kind, call.status) == ("sip", "incoming")
    assert call.sip_headers[:2] == [
        {"name": "From", "value": "sip:+14155550111@sip.example.com"},
        {"name": "To", "value": "sip:+18005550199@sip.example.com"},
    ]
    assert [d["delivered"] for d in body["deliveries"]] == [True]
    assert len(sim.receiver.deliveries) == 1
    auth = {"Authorization": f"Bearer {API_KEY}"}
    assert httpx.get(f"{sim.url}/sim/calls/{body['call_id']}", headers=auth).json()["status"] == "incoming"
    assert [c["call_id"] for c in httpx.get(f"{sim.url}/sim/calls", headers=auth).json()["data"]] == [body["call_id"]]


def test_say_needs_an_accepted_call_and_text(sim):
    call_id = sim.place_call()

    assert_openai_error(sim.post(f"/sim/calls/{call_id}/say", {"text": "hello"}), 404, "call_id_not_found")
    sim.client.realtime.calls.accept(call_id, type="realtime")
    assert_openai_error(sim.post(f"/sim/calls/{call_id}/say", {"text": " "}), 400, "missing_required_parameter", "text")
    assert sim.post(f"/sim/calls/{call_id}/say", {"text": "Turn off the lights"}).status_code == 200


def test_the_caller_hanging_up_ends_an_accepted_call(sim):
    call_id = sim.place_call()
    sim.client.realtime.calls.accept(call_id, type="realtime")

    response = sim.post(f"/sim/calls/{call_id}/hangup")

    assert response.json() == {"call_id": call_id, "status": "ended"}
    assert_openai_error(sim.post(f"/sim/calls/{call_id}/say", {"text": "hello?"}), 404, "call_id_not_found")


def test_what_the_caller_says_reaches_a_sideband_and_hanging_up_closes_it(sim):
    call_id = sim.place_call()
    sim.client.realtime.calls.accept(call_id, type="realtime", output_modalities=["text"])

    with sim.client.realtime.connect(call_id=call_id) as sideband:
        assert sideband.recv().type == "session.created"
        assert sim.post(f"/sim/calls/{call_id}/say", {"text": "Is the pool open?"}).status_code == 200
        seen: list[RealtimeServerEvent] = []
        while not seen or seen[-1].type != "response.done":
            seen.append(sideband.recv())
        user = next(e.item for e in seen if e.type == "conversation.item.done" and e.item.type == "message")
        assert user.role == "user" and user.content[0].text == "Is the pool open?"

        assert sim.post(f"/sim/calls/{call_id}/hangup").status_code == 200
        with pytest.raises(ConnectionClosed, match="caller hung up"):
            while True:
                sideband.recv()
