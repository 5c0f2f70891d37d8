"""Web Push to the staff a request is routed to, through the local push service (RFC 8030),
which decrypts every payload with the subscribing browser's keys (RFC 8291)."""

from __future__ import annotations

import pytest

from approvals import services as approvals_services
from approvals.models import ApprovalRequest
from notify import push, services
from notify.models import PushSubscription


def subscribe(user, push_service) -> dict:
    info = push_service.subscribe()
    services.subscribe(user, endpoint=info["endpoint"], p256dh=info["keys"]["p256dh"], auth=info["keys"]["auth"])
    return info


@pytest.fixture
def browsers(people, push_service):
    """Fred has a phone and a desktop, Fay a phone, Mia (a manager) a phone."""
    return {
        "fred_phone": subscribe(people["fred"], push_service),
        "fred_desk": subscribe(people["fred"], push_service),
        "fay": subscribe(people["fay"], push_service),
        "mia": subscribe(people["mia"], push_service),
    }


def test_a_new_request_reaches_every_browser_of_the_routed_group_and_only_them(hooks, browsers, push_service):
    req = hooks.open()
    received = push_service.wait_for(3)
    assert sorted(m.endpoint for m in received) == sorted(
        browsers[name]["endpoint"] for name in ("fred_phone", "fred_desk", "fay")
    )
    assert push_service.to(browsers["mia"]["endpoint"]) == []  # a manager: not this step's group
    message = received[0]
    assert message.payload == {
        "title": "Approval needed: Unlock door",
        "body": "Unlock door on Hotel\nRoom 1204 · Ms Rossi\nRule doors",
        "url": f"/?request={req.pk}",
        "request_id": req.pk,
        "kind": "new",
        "tag": f"request-{req.pk}",
        "decide_url": f"/requests/{req.pk}/decide/",
        "actions": [{"action": "approve", "title": "Approve"}, {"action": "deny", "title": "Deny"}],
    }
    assert 0 < message.ttl <= 60 and message.urgency == "high"
    assert message.vapid_claims["sub"] == "mailto:it@hotel.example"


def test_a_person_who_turned_push_off_gets_nothing(hooks, people, browsers, push_service):
    services.set_preferences(people["fred"], push=False, email=True, slack=True)
    hooks.open()
    [message] = push_service.wait_for(1)
    assert message.endpoint == browsers["fay"]["endpoint"]


def test_an_escalated_request_is_pushed_to_the_next_group(hooks, browsers, push_service):
    req = hooks.open()
    push_service.wait_for(3)
    push_service.clear()
    hooks.escalate(req)
    [message] = push_service.wait_for(1)
    assert message.endpoint == browsers["mia"]["endpoint"]
    assert message.payload["kind"] == "escalated"
    assert message.payload["title"] == "Escalated to you: Unlock door"


def test_a_subscription_the_push_service_says_is_gone_is_deleted(hooks, people, browsers, push_service):
    push_service.expire(browsers["fred_phone"]["endpoint"])
    hooks.open()
    assert not PushSubscription.objects.filter(endpoint=browsers["fred_phone"]["endpoint"]).exists()
    kept = PushSubscription.objects.get(endpoint=browsers["fay"]["endpoint"])
    assert kept.last_success_at is not None


def test_a_request_decided_before_the_push_is_not_pushed(hooks, people, browsers, push_service, queued):
    req = hooks.open()
    push_service.clear()
    approvals_services.decide(req, approve=True, by=people["fred"])
    assert push.send_request_push(req.pk, kind=push.NEW) == push.Delivery()
    assert push_service.received == []


def test_a_request_any_staff_may_decide_reaches_all_staff(hooks, people, browsers, push_service):
    hooks.open(tool="extend_checkout", arguments='{"until": "14:00"}')  # no rule: the default
    assert len(push_service.wait_for(4)) == 4


@pytest.mark.parametrize("flag", ["confirm", "reason_on_approve", "reason_on_deny", "step_up"])
def test_no_buttons_when_the_rule_asks_for_more_than_a_press(hooks, flag):
    req = hooks.open()
    plan = req.plan
    plan["requires"] = {flag: True}
    ApprovalRequest.objects.filter(pk=req.pk).update(plan=plan)
    req.refresh_from_db()
    assert services.quick_actions_allowed(req) is False
    assert push.payload(req, kind=push.NEW)["actions"] == []
