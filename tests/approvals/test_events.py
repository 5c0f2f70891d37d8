from __future__ import annotations

import json
import logging

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from approvals import events, services


def listen(group: str) -> str:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    return channel


def receive(channel: str) -> dict:
    return async_to_sync(get_channel_layer().receive)(channel)


def test_group_names():
    assert events.DASHBOARD == "approvals.dashboard"
    assert events.session_group(42) == "relay.session.42"


def test_request_changed_sends_the_request_to_every_dashboard(make_request, alice):
    channel = listen(events.DASHBOARD)
    req = services.decide(make_request(), approve=True, by=alice)

    assert events.request_changed(req.pk) is True

    message = receive(channel)
    assert message["type"] == "approvals.request_changed"
    assert json.loads(message["frame"]) == {"type": "request_changed", "request": req.to_dict()}


def test_request_changed_of_a_vanished_request_sends_nothing(db):
    assert events.request_changed(424242) is False


def test_relay_decision_nudges_the_sessions_group(make_request):
    req = make_request()
    channel = listen(events.session_group(req.session_id))

    assert events.relay_decision(session_id=req.session_id, request_id=req.pk) is True

    assert receive(channel) == {"type": "relay.decision", "request_id": req.pk}


def test_session_requests_changed_resends_only_pending_cards(make_request, alice, monkeypatch):
    pending = make_request()
    services.decide(make_request(), approve=True, by=alice)
    sent: list[int] = []
    monkeypatch.setattr(events, "request_changed", sent.append)

    events.session_requests_changed(pending.session_id)

    assert sent == [pending.pk]


def test_a_channel_layer_failure_is_logged_not_raised(make_request, monkeypatch, caplog):
    req = make_request()

    async def broken(group, message):  # type: ignore[no-untyped-def]
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(get_channel_layer(), "group_send", broken)
    with caplog.at_level(logging.ERROR, logger="approvals.events"):
        assert events.request_changed(req.pk) is False
        assert events.relay_decision(session_id=req.session_id, request_id=req.pk) is False

    assert "Channel layer error" in caplog.text


@pytest.mark.parametrize("closer", ["decide", "expire"])
def test_an_answer_reaches_the_relay_group_after_commit(
    make_request, alice, closer, django_capture_on_commit_callbacks
):
    req = make_request()
    relay = listen(events.session_group(req.session_id))
    dashboard = listen(events.DASHBOARD)

    with django_capture_on_commit_callbacks(execute=True):
        if closer == "decide":
            services.decide(req, approve=True, by=alice)
        else:
            services.expire_request(req.pk, now=req.deadline)

    # The nudge carries what was committed, so the relay can send it without reading it back.
    decision = (
        {"upstream_id": req.upstream_id, "approve": True, "reason": ""}
        if closer == "decide"
        else {"upstream_id": req.upstream_id, "approve": False, "reason": "No decision within 60 s: denied by deadline"}
    )
    assert receive(relay) == {"type": "relay.decision", "request_id": req.pk, "decision": decision}
    message = receive(dashboard)
    assert message["type"] == "approvals.request_changed"
    assert json.loads(message["frame"])["request"]["status"] == ("approved" if closer == "decide" else "expired")
