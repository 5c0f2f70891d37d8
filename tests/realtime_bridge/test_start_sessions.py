"""Starting a session from a login (a browser call's client secret, a Responses run) needs the
permission approvals.start_session, not only a login; and whoever starts one is recorded on the
session, so that they never decide its requests (tests/approvals/test_duties.py)."""

from __future__ import annotations

import json

import httpx
import pytest

from approvals import services
from approvals.models import RealtimeSession
from realtime_bridge.models import Call, ResponsesRun
from tests.realtime_bridge.test_views import SDP_OFFER, sim  # noqa: F401

NEEDS = "approvals.start_session"


@pytest.mark.django_db
def test_staff_without_the_permission_may_not_start_a_run(client, bob):
    client.force_login(bob)

    response = client.post("/api/runs", json.dumps({"input": "Refund room 1204"}), content_type="application/json")

    assert response.status_code == 403
    assert response.json()["permission"] == NEEDS and "Can start sessions" in response.json()["error"]
    assert not ResponsesRun.objects.exists() and not RealtimeSession.objects.exists()


@pytest.mark.django_db
def test_a_run_started_by_staff_records_them_as_its_starter(client, alice):
    client.force_login(alice)  # alice has the permission (tests/realtime_bridge/conftest.py)

    response = client.post("/api/runs", json.dumps({"input": "Refund room 1204"}), content_type="application/json")

    assert response.status_code == 202
    session = ResponsesRun.objects.get(pk=response.json()["run"]["id"]).session
    assert (session.started_by, session.started_by_label) == (alice, "Alice")


@pytest.mark.django_db
def test_a_run_started_with_a_client_token_has_no_starter(client):
    _, plaintext = services.issue_token(label="Concierge chat", metadata={})

    response = client.post(
        "/api/runs",
        json.dumps({"input": "hi"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {plaintext}",
    )

    assert response.status_code == 202
    assert ResponsesRun.objects.get().session.started_by is None


def test_staff_without_the_permission_may_not_mint_a_call_secret(client, sim, bob):  # noqa: F811
    client.force_login(bob)

    response = client.post("/api/webrtc/session")

    assert response.status_code == 403
    assert response.json()["permission"] == NEEDS


def test_a_browser_call_records_who_minted_its_secret(client, sim, alice):  # noqa: F811
    client.force_login(alice)
    minted = client.post("/api/webrtc/session").json()
    created = httpx.post(
        f"{sim.base_url}/realtime/calls",
        content=SDP_OFFER,
        headers={"Authorization": f"Bearer {minted['client_secret']}", "Content-Type": "application/sdp"},
    )
    call_id = created.headers["Location"].rsplit("/", 1)[-1]

    attached = client.post(
        "/api/webrtc/calls", json.dumps({"call_id": call_id, "ticket": minted["ticket"]}), "application/json"
    )

    assert attached.status_code == 201
    session = Call.objects.get(call_id=call_id).session
    assert (session.started_by, session.started_by_label) == (alice, "Alice")
