"""HTTP concerns of the call, run and browser-call endpoints: who may call them, status codes,
and that no MCP credential reaches a browser."""

from __future__ import annotations

import json

import httpx
import pytest
from django.test import Client

from approvals import services
from approvals.models import RealtimeSession
from realtime_bridge.models import Call, ResponsesRun

SDP_OFFER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"


@pytest.fixture
def token(db):
    return services.issue_token(label="Concierge chat", metadata={"channel": "web chat"})


def ended_call(db) -> Call:
    return Call.objects.create(call_id="rtc_ended", kind="sip", status="ended")


# --- Calls ------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["hangup", "refer"])
def test_call_actions_are_refused_to_anonymous_and_non_staff(client, charlie, action):
    call = ended_call(None)
    assert client.post(f"/calls/{call.pk}/{action}").status_code == 403
    client.force_login(charlie)
    assert client.post(f"/calls/{call.pk}/{action}").status_code == 403
    assert client.get(f"/calls/{call.pk}").status_code == 403


@pytest.mark.django_db
def test_call_actions_need_csrf(alice):
    call = ended_call(None)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert strict.post(f"/calls/{call.pk}/hangup").status_code == 403


@pytest.mark.django_db
def test_a_call_that_is_not_in_progress_cannot_be_hung_up_or_transferred(client, alice):
    call = ended_call(None)
    client.force_login(alice)
    assert client.post(f"/calls/{call.pk}/hangup").status_code == 409
    assert client.post(f"/calls/{call.pk}/refer", {"target_uri": "tel:+14155550123"}).status_code == 409
    assert client.post(f"/calls/{call.pk}/refer").status_code == 400
    assert client.post("/calls/999999/hangup").status_code == 404
    assert client.get(f"/calls/{call.pk}").json()["call"]["can_hang_up"] is False


# --- Runs -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_starting_a_run_needs_a_client_token_or_a_staff_session(client, charlie):
    body = json.dumps({"input": "hello"})
    assert client.post("/api/runs", body, content_type="application/json").status_code == 401
    bad = client.post("/api/runs", body, content_type="application/json", HTTP_AUTHORIZATION="Bearer cst_nope")
    assert bad.status_code == 401
    client.force_login(charlie)
    assert client.post("/api/runs", body, content_type="application/json").status_code == 403
    assert not ResponsesRun.objects.exists()


@pytest.mark.django_db
def test_a_staff_session_must_pass_csrf_to_start_a_run(alice):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert strict.post("/api/runs", json.dumps({"input": "hi"}), content_type="application/json").status_code == 403
    assert not ResponsesRun.objects.exists()


@pytest.mark.django_db
def test_a_run_is_started_with_a_token_and_seen_only_by_that_token_and_staff(client, token, alice):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token[1]}"}
    response = client.post(
        "/api/runs", json.dumps({"input": "hello", "model": "gpt-4.1"}), content_type="application/json", **auth
    )
    assert response.status_code == 202
    run = response.json()["run"]
    assert (run["state"], run["model"]) == ("queued", "gpt-4.1")
    assert client.get(f"/api/runs/{run['id']}", **auth).json()["run"]["id"] == run["id"]

    other = services.issue_token(label="Other", metadata={})[1]
    assert client.get(f"/api/runs/{run['id']}", HTTP_AUTHORIZATION=f"Bearer {other}").status_code == 404
    client.force_login(alice)
    assert client.get(f"/api/runs/{run['id']}").status_code == 200


@pytest.mark.django_db
def test_a_run_needs_an_input(client, token):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token[1]}"}
    for body in ({}, {"input": "  "}, {"input": 3}, {"input": "x", "instructions": []}):
        response = client.post("/api/runs", json.dumps(body), content_type="application/json", **auth)
        assert response.status_code == 400
    assert client.post("/api/runs", "[1", content_type="application/json", **auth).status_code == 400


# --- Browser calls ----------------------------------------------------------------------------


@pytest.fixture
def sim(simulator, settings):
    settings.OPENAI_BASE_URL = simulator.base_url
    settings.OPENAI_API_KEY = simulator.api_key
    return simulator


def test_a_browser_gets_a_client_secret_whose_session_holds_the_mcp_credentials_it_never_sees(client, sim, alice):
    services.register_mcp_server(
        label="hotel", url="http://127.0.0.1:9/mcp/secret-path", headers={"X-API-Key": "hotel-key-never-shown"}
    )
    client.force_login(alice)

    response = client.post("/api/webrtc/session")

    assert response.status_code == 200
    minted = response.json()
    assert minted["client_secret"].startswith("ek_") and minted["ticket"]
    assert "hotel-key-never-shown" not in response.content.decode() and "secret-path" not in response.content.decode()

    # The browser creates its call with the secret, straight at "OpenAI"...
    created = httpx.post(
        f"{sim.base_url}/realtime/calls",
        content=SDP_OFFER,
        headers={"Authorization": f"Bearer {minted['client_secret']}", "Content-Type": "application/sdp"},
    )
    assert created.status_code == 201
    call_id = created.headers["Location"].rsplit("/", 1)[-1]
    call_state = httpx.get(
        f"http://127.0.0.1:{sim.port}/sim/calls/{call_id}", headers={"Authorization": f"Bearer {sim.api_key}"}
    ).json()
    (tool,) = call_state["session_config"]["tools"]
    assert tool["server_label"] == "hotel"

    # ...and tells us, so that the bridge attaches.
    attached = client.post(
        "/api/webrtc/calls", json.dumps({"call_id": call_id, "ticket": minted["ticket"]}), "application/json"
    )
    assert attached.status_code == 201
    call = Call.objects.get(call_id=call_id)
    assert (call.kind, call.status) == ("webrtc", "accepted")
    assert call.session.kind == RealtimeSession.Kind.SIDEBAND and call.session.label == "Browser call: Alice"
    again = client.post(
        "/api/webrtc/calls", json.dumps({"call_id": call_id, "ticket": minted["ticket"]}), "application/json"
    )
    assert again.status_code == 201 and Call.objects.count() == 1 and RealtimeSession.objects.count() == 1


def test_a_ticket_cannot_be_used_by_someone_else_or_forged(client, sim, token, alice):
    client.force_login(alice)
    ticket = client.post("/api/webrtc/session").json()["ticket"]
    client.logout()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token[1]}"}
    body = {"call_id": "rtc_0123456789abcdef0123456789abcdef", "ticket": ticket}
    assert client.post("/api/webrtc/calls", json.dumps(body), "application/json", **auth).status_code == 400
    body["ticket"] = ticket[:-2] + "xx"
    assert client.post("/api/webrtc/calls", json.dumps(body), "application/json", **auth).status_code == 400
    assert client.post("/api/webrtc/session").status_code == 401
    assert not Call.objects.exists()
