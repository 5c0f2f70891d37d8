from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from approvals import events, services
from approvals.models import ApprovalRequest, AuditKind


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


def test_session_requests_changed_can_resend_every_card_of_the_session(make_request, alice, monkeypatch):
    pending = make_request()
    decided = services.decide(make_request(), approve=True, by=alice)
    sent: list[int] = []
    monkeypatch.setattr(events, "request_changed", sent.append)

    events.session_requests_changed(pending.session_id, pending_only=False)

    assert sorted(sent) == sorted([pending.pk, decided.pk])


def test_bridge_attach_nudges_the_bridges_group(db):
    channel = listen(events.BRIDGE_CALLS)

    assert events.bridge_attach(42) is True

    assert receive(channel) == {"type": "bridge.attach", "call": 42}


def test_a_channel_layer_failure_is_logged_not_raised(make_request, monkeypatch, caplog):
    req = make_request()

    async def broken(group, message):
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
        else {
            "upstream_id": req.upstream_id,
            "approve": False,
            "reason": "Nobody from the staff could confirm this in time (waited 1 min), so it was not done.",
        }
    )
    assert receive(relay) == {"type": "relay.decision", "request_id": req.pk, "decision": decision}
    message = receive(dashboard)
    assert message["type"] == "approvals.request_changed"
    assert json.loads(message["frame"])["request"]["status"] == ("approved" if closer == "decide" else "expired")


# After-commit hooks ---------------------------------------------------------------------------

HOOK_POLICY = """
rules:
  - label: small-refunds
    tool: refund_*
    outcome: allow
  - label: no-doors
    tool: unlock_door
    outcome: deny
  - label: two-person
    tool: transfer_*
    outcome: ask
    quorum: 2
  - label: late-checkout
    tool: extend_checkout
    outcome: ask
    deadline_seconds: 30
    on_deadline: approve
  - label: upstairs
    tool: comp_*
    outcome: ask
    deadline_seconds: 30
    on_deadline: escalate
    escalations:
      - deadline_seconds: 60
"""


@pytest.fixture
def committed() -> Iterator[list[dict[str, Any]]]:
    """What events.decision_committed was sent, in order."""
    sent: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        sent.append(kwargs)

    events.decision_committed.connect(receiver)
    yield sent
    events.decision_committed.disconnect(receiver)


@pytest.fixture
def hook_policy(admin_user: Any) -> None:
    services.import_policies(HOOK_POLICY, by=admin_user, source="test")


def answered(req: ApprovalRequest, kind: str) -> dict[str, Any]:
    req.refresh_from_db()
    return {"request_id": req.pk, "session_id": req.session_id, "status": req.status, "kind": kind}


def test_a_hook_calls_every_receiver_and_logs_one_that_fails(caplog):
    hook = events.Hook("test_hook")
    heard: list[dict[str, Any]] = []

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    hook.connect(broken)
    hook.connect(lambda **kwargs: heard.append(kwargs))
    hook.connect(broken)  # once only
    with caplog.at_level(logging.ERROR, logger="approvals.events"):
        hook.send(request_id=7)

    assert heard == [{"request_id": 7}]
    assert caplog.text.count("Hook test_hook: receiver") == 1


@pytest.mark.parametrize("approve", [True, False])
def test_a_decision_is_announced_by_the_hook_only_after_commit(
    make_request, alice, approve, effects, committed, django_capture_on_commit_callbacks
):
    req = make_request()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.decide(req, approve=approve, by=alice)
    assert committed == []
    for callback in callbacks:
        callback()

    assert committed == [answered(req, AuditKind.DECIDED)]


def test_an_expiry_is_announced_by_the_hook(make_request, effects, committed, django_capture_on_commit_callbacks):
    req = make_request()

    with django_capture_on_commit_callbacks(execute=True):
        services.expire_request(req.pk, now=req.deadline)

    assert committed == [answered(req, AuditKind.EXPIRED)]


@pytest.mark.parametrize("tool", ["refund_minibar_charge", "unlock_door"])
def test_a_policy_decision_is_announced_by_the_hook(
    hook_policy, make_request, tool, effects, committed, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        req = make_request(name=tool)

    assert req.status in (ApprovalRequest.Status.APPROVED, ApprovalRequest.Status.DENIED)
    assert committed == [answered(req, AuditKind.DECIDED)]


def test_a_quorum_is_announced_when_it_is_reached_not_per_vote(
    hook_policy, make_request, alice, bob, effects, committed, django_capture_on_commit_callbacks
):
    req = make_request(name="transfer_booking")

    with django_capture_on_commit_callbacks(execute=True):
        services.decide(req, approve=True, by=alice)
    assert committed == []
    with django_capture_on_commit_callbacks(execute=True):
        services.decide(req, approve=True, by=bob)

    assert committed == [answered(req, AuditKind.DECIDED)]


def test_a_deadline_that_approves_is_announced_and_one_that_escalates_is_not(
    hook_policy, make_request, effects, committed, django_capture_on_commit_callbacks
):
    late, upstairs = make_request(name="extend_checkout"), make_request(name="comp_breakfast")

    with django_capture_on_commit_callbacks(execute=True):
        services.expire_request(late.pk, now=late.deadline)
        escalated = services.expire_request(upstairs.pk, now=upstairs.deadline)

    assert escalated is not None and escalated.status == ApprovalRequest.Status.PENDING
    assert committed == [answered(late, AuditKind.DECIDED)]


def test_a_request_cancelled_with_its_session_is_not_announced(
    make_request, effects, committed, django_capture_on_commit_callbacks
):
    req = make_request()

    with django_capture_on_commit_callbacks(execute=True):
        services.close_session(req.session, code=1000, reason="bye")

    assert committed == []
