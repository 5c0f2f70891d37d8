"""Connecting to /v1/realtime: auth, handshake failures (section 1.3), subprotocols, sidebands, pings."""

from __future__ import annotations

import asyncio
import json
import signal

import httpx
import pytest

from tests.plugins.processes import ServerProcess, free_port
from tests.plugins.simulator import SIMULATOR_API_KEY, Simulator, _argv


async def test_a_new_session_starts_with_session_created(simulator):
    async with simulator.connect() as rt:
        first = await rt.recv()
        assert first["type"] == "session.created"
        session = first["session"]
        assert (session["type"], session["object"], session["model"]) == (
            "realtime",
            "realtime.session",
            "gpt-realtime",
        )
        assert session["id"].startswith("sess_") and len(session["id"]) == 26
        assert first["event_id"].startswith("event_") and len(first["event_id"]) == 27
        assert session["tools"] == [] and session["max_output_tokens"] == "inf"
        # Section 1.4: no conversation.created in GA; nothing until the client acts.
        await rt.expect_silence()


async def _refused(simulator, **connect):
    async with simulator.connect(**connect) as rt:
        assert rt.ws.response.status_code == 101  # section 1.3: the upgrade always succeeds
        error = await rt.recv()
        code, reason = await rt.closed()
    assert error["type"] == "error"
    return error["error"], code, reason


async def test_a_wrong_key_gets_an_error_then_close_3000(simulator):
    error, code, reason = await _refused(simulator, api_key="sk-proj-wrongwrongwrongAAAA")
    assert (error["type"], error["code"], error["param"], error["event_id"]) == (
        "invalid_request_error",
        "invalid_api_key",
        None,
        None,
    )
    assert error["message"].startswith("Incorrect API key provided: sk-pr…AAAA.")
    assert (code, reason) == (3000, "invalid_request_error.invalid_api_key")


async def test_no_authorization_gets_a_null_code_and_close_3000(simulator):
    error, code, reason = await _refused(simulator, authorize=False)
    assert (error["code"], error["message"]) == (None, "Missing bearer or basic authentication in header")
    assert (code, reason) == (3000, "invalid_request_error")


async def test_an_openai_beta_header_is_refused_with_4000(simulator):
    error, code, reason = await _refused(simulator, headers={"OpenAI-Beta": "realtime=v1"})
    assert error["code"] == "beta_api_shape_disabled"
    assert (code, reason) == (4000, "invalid_request_error.beta_api_shape_disabled")


async def test_a_missing_model_is_refused_with_4000(simulator):
    error, code, reason = await _refused(simulator, query="")
    assert error["code"] == "missing_model"
    assert (code, reason) == (4000, "invalid_request_error.missing_model")


async def test_an_unknown_model_is_refused_with_4000(simulator):
    error, code, reason = await _refused(simulator, query="model=gpt-5-turbo-ultra")
    assert error["code"] == "invalid_model"
    assert (code, reason) == (4000, "invalid_request_error.invalid_model")


async def test_an_unknown_call_id_is_refused_with_4000(simulator):
    error, code, reason = await _refused(simulator, query="call_id=rtc_doesnotexist")
    assert (error["code"], error["message"]) == ("call_id_not_found", "No session found for the provided call_id")
    assert (code, reason) == (4000, "invalid_request_error.call_id_not_found")


async def test_browser_subprotocol_auth_selects_realtime(simulator):
    protocols = ["realtime", f"openai-insecure-api-key.{simulator.api_key}", "openai-agents-sdk.1.0"]
    async with simulator.connect(authorize=False, subprotocols=protocols) as rt:
        assert rt.ws.subprotocol == "realtime"
        assert (await rt.recv())["type"] == "session.created"


async def test_browser_subprotocol_with_a_wrong_key_is_refused(simulator):
    protocols = ["realtime", "openai-insecure-api-key.sk-wrong-key-000000"]
    error, code, _ = await _refused(simulator, authorize=False, subprotocols=protocols)
    assert (error["code"], code) == ("invalid_api_key", 3000)


@pytest.mark.parametrize("knobs", [{"ping_interval": 0.3}])
async def test_the_server_pings_at_the_configured_interval(simulator_factory, knobs):
    sim = simulator_factory(**knobs)
    async with sim.connect() as rt:
        await rt.recv()
        await asyncio.sleep(1.1)
        assert 2 <= rt.ws.pings <= 5


async def test_a_session_dies_with_its_socket(simulator):
    # Section 10.12: a ?model= session belongs to its socket; a new socket is a new, empty session.
    async with simulator.connect() as rt:
        first = (await rt.recv())["session"]["id"]
        await rt.send({"type": "session.close"})
        code, _ = await rt.closed()
        assert code == 1000
    async with simulator.connect() as rt:
        assert (await rt.recv())["session"]["id"] != first


SDP_OFFER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"


async def test_two_sidebands_share_a_call_session_and_see_every_event(simulator, mcp_servers):
    auth = {"Authorization": f"Bearer {simulator.api_key}"}
    session = {"type": "realtime", "model": "gpt-realtime", "output_modalities": ["text"]}
    root = simulator.base_url.removesuffix("/v1")
    async with httpx.AsyncClient(base_url=root, headers=auth) as http:
        created = await http.post(
            "/v1/realtime/calls", files={"sdp": (None, SDP_OFFER), "session": (None, json.dumps(session))}
        )
        assert created.status_code == 201
        call_id = created.headers["Location"].rsplit("/", 1)[-1]
        async with simulator.connect(f"call_id={call_id}") as one, simulator.connect(f"call_id={call_id}") as two:
            assert [(await rt.recv())["type"] for rt in (one, two)] == ["session.created"] * 2
            # Tools added by one sideband are listed for both.
            await one.update_session(tools=[mcp_servers.desk_tool(require_approval="never")])
            await one.listings()
            await two.recv_until("session.updated")
            await two.listings()
            say = await http.post(f"/sim/calls/{call_id}/say", json={"text": 'call desk get_status {"room": "4"}'})
            assert say.status_code == 200
            seen = [await rt.recv_until("response.done") for rt in (one, two)]
            assert [e["event_id"] for e in seen[0]] == [e["event_id"] for e in seen[1]]
            assert seen[0][0]["item"]["content"][0]["text"] == 'call desk get_status {"room": "4"}'
            assert "response.mcp_call.completed" in [e["type"] for e in seen[0]]
            assert (await http.post(f"/v1/realtime/calls/{call_id}/hangup")).status_code == 200
            assert (await one.closed())[0] == (await two.closed())[0] == 1000
    assert mcp_servers.desk.calls == [("get_status", {"room": "4"})]


async def test_sigterm_closes_open_sessions_and_exits_cleanly():
    port = free_port()
    process = ServerProcess(_argv(port, SIMULATOR_API_KEY, {}), port=port, name="simulator").start()
    try:
        sim = Simulator(port=port, api_key=SIMULATOR_API_KEY, knobs={}, process=process)
        async with sim.connect() as rt:
            await rt.recv()
            process.signal(signal.SIGTERM)
            code, _ = await rt.closed()
            assert code in (1000, 1001, 1012)  # uvicorn says "going away" / "service restart"
        # uvicorn finishes its graceful shutdown, then re-raises the signal it caught (so: -SIGTERM).
        assert await asyncio.to_thread(process.proc.wait, 10) in (0, -signal.SIGTERM)
        assert "Finished server process" in process.output(tail=0)
    finally:
        process.stop()


async def test_every_realtime_model_the_pinned_sdk_names_is_accepted():
    # The simulator follows the openai pin: its models are the SDK's own Realtime model names.
    import typing

    from openai.types.realtime.realtime_session_create_request import RealtimeSessionCreateRequest

    from simulator.config import KNOWN_MODELS

    (_, literal, _) = typing.get_args(RealtimeSessionCreateRequest.model_fields["model"].annotation)
    assert set(KNOWN_MODELS) == set(typing.get_args(literal)) and "gpt-realtime-2.1" in KNOWN_MODELS
