"""The `realtime.call.incoming` webhook endpoint: only OpenAI's signed, fresh, first deliveries
do anything. Calls are answered against the simulator (a real process): it holds the ringing
calls, and records how each was answered."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from approvals.models import RealtimeSession
from realtime_bridge.models import Call, SipRoute, WebhookDelivery
from simulator.webhooks import signed_headers

SECRET = "whsec_" + "dGVzdC13ZWJob29rLXNlY3JldC0wMTIzNDU2Nzg5YWI="
URL = "/webhooks/openai"


def incoming(call_id: str = "rtc_0123456789abcdef0123456789abcdef", to: str = "+18005551212") -> dict[str, Any]:
    return {
        "object": "event",
        "id": "evt_685343a1381c819085d44c354e1b330e",
        "type": "realtime.call.incoming",
        "created_at": int(time.time()),
        "data": {
            "call_id": call_id,
            "sip_headers": [
                {"name": "From", "value": "sip:+14155550111@sip.example.com"},
                {"name": "To", "value": f"sip:{to}@sip.example.com"},
                {"name": "Call-ID", "value": "03782086-4ce9-44bf@sip.example.com"},
            ],
        },
    }


def post(client, body: bytes, headers: dict[str, str]):
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "content-type"}
    return client.post(URL, data=body, content_type="application/json", **extra)


def signed(event: dict[str, Any], *, secret: str = SECRET, **kwargs: Any) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    return body, signed_headers(body, secret=secret, **kwargs)


@pytest.fixture
def webhook_secret(settings):
    settings.OPENAI_WEBHOOK_SECRET = SECRET


@pytest.fixture
def sim(simulator, settings, db):
    """The simulator as OpenAI; `ring()` makes a call ring there (its own webhook goes nowhere)."""
    settings.OPENAI_BASE_URL = simulator.base_url
    settings.OPENAI_API_KEY = simulator.api_key
    http = httpx.Client(
        base_url=f"http://127.0.0.1:{simulator.port}", headers={"Authorization": f"Bearer {simulator.api_key}"}
    )

    class Sim:
        def ring(self, to: str = "+18005551212") -> str:
            response = http.post(
                "/sim/calls", json={"to": to, "webhook_url": "http://127.0.0.1:9/nowhere", "webhook_secret": SECRET}
            )
            assert response.status_code == 201, response.text
            return response.json()["call_id"]

        def call(self, call_id: str) -> dict[str, Any]:
            return http.get(f"/sim/calls/{call_id}").json()

    return Sim()


@pytest.fixture
def route(db):
    return SipRoute.objects.create(name="Front desk", to_pattern="+1800555*", label="Front desk line")


def nothing_recorded() -> bool:
    return not WebhookDelivery.objects.exists() and not Call.objects.exists() and not RealtimeSession.objects.exists()


@pytest.mark.django_db
def test_a_webhook_signed_with_another_secret_is_refused_and_changes_nothing(client, webhook_secret):
    body, headers = signed(incoming(), secret="whsec_" + "b3RoZXItc2VjcmV0LTAxMjM0NTY3ODlhYmNkZWY=")
    response = post(client, body, headers)
    assert response.status_code == 400
    assert nothing_recorded()


@pytest.mark.django_db
def test_a_webhook_with_a_stale_timestamp_is_refused_and_changes_nothing(client, webhook_secret):
    body, headers = signed(incoming(), timestamp=int(time.time()) - 600)
    assert post(client, body, headers).status_code == 400
    assert nothing_recorded()


@pytest.mark.django_db
def test_a_webhook_whose_body_was_altered_after_signing_is_refused(client, webhook_secret):
    body, headers = signed(incoming())
    assert post(client, body.replace(b"+18005551212", b"+18005550000"), headers).status_code == 400
    assert nothing_recorded()


@pytest.mark.django_db
def test_a_signed_but_malformed_body_is_refused_and_changes_nothing(client, webhook_secret):
    for body in (b"{not json", b'{"type": "realtime.call.incoming", "data": {}}', b"[]"):
        assert post(client, body, signed_headers(body, secret=SECRET)).status_code == 400
    assert nothing_recorded()


@pytest.mark.django_db
def test_a_webhook_without_signature_headers_is_refused(client, webhook_secret):
    body = json.dumps(incoming()).encode()
    assert client.post(URL, data=body, content_type="application/json").status_code == 400
    assert nothing_recorded()


@pytest.mark.django_db
def test_webhooks_are_refused_while_no_secret_is_configured(client, settings):
    settings.OPENAI_WEBHOOK_SECRET = ""
    body, headers = signed(incoming())
    assert post(client, body, headers).status_code == 400
    assert nothing_recorded()


def test_a_replayed_webhook_id_is_answered_once(client, webhook_secret, sim, route):
    call_id = sim.ring()
    body, headers = signed(incoming(call_id), webhook_id="wh_replayed")

    first = post(client, body, headers)
    replay = post(client, body, headers)

    assert first.status_code == 200 and first.json()["status"] == "accepted"
    assert replay.status_code == 200 and replay.json() == {"status": "ignored"}
    assert WebhookDelivery.objects.count() == 1
    assert Call.objects.get().status == "accepted"
    assert RealtimeSession.objects.get().label == "Front desk line"
    assert sim.call(call_id)["status"] == "accepted"


def test_the_same_call_delivered_under_a_new_webhook_id_is_handled_once(client, webhook_secret, sim, route):
    call_id = sim.ring()
    for webhook_id in ("wh_first", "wh_second"):
        body, headers = signed(incoming(call_id), webhook_id=webhook_id)
        assert post(client, body, headers).status_code == 200

    assert Call.objects.count() == 1 and RealtimeSession.objects.count() == 1
    assert WebhookDelivery.objects.count() == 1  # the second rolled back with its call insert


def test_a_call_no_route_matches_is_rejected_with_the_configured_status(client, webhook_secret, sim, settings):
    settings.SIP_UNROUTED_STATUS = 486
    call_id = sim.ring(to="+18009990000")
    body, headers = signed(incoming(call_id, to="+18009990000"))

    assert post(client, body, headers).json()["status"] == "rejected"
    assert (sim.call(call_id)["status"], sim.call(call_id)["reject_status"]) == ("rejected", 486)
    call = Call.objects.get()
    assert call.status == "rejected" and call.session is None and "486" in call.outcome


def test_a_call_no_route_matches_is_transferred_when_a_target_is_configured(client, webhook_secret, sim, settings):
    settings.SIP_UNROUTED_REFER_TO = "tel:+14155550123"
    call_id = sim.ring(to="+18009990000")
    body, headers = signed(incoming(call_id, to="+18009990000"))

    assert post(client, body, headers).json()["status"] == "referred"
    assert sim.call(call_id)["refer_target"] == "tel:+14155550123"
    call = Call.objects.get()
    assert call.status == "referred" and call.session is None


def test_a_call_whose_caller_hung_up_before_the_answer_is_recorded_as_ended(client, webhook_secret, sim, route):
    body, headers = signed(incoming("rtc_ffffffffffffffffffffffffffffffff"))
    response = post(client, body, headers)
    assert response.json()["status"] == "ended"
    assert not RealtimeSession.objects.exists()


def test_routes_are_tried_by_priority_and_match_both_numbers(db):
    SipRoute.objects.create(name="any", priority=100, label="Any")
    vip = SipRoute.objects.create(name="vip", priority=10, from_pattern="+1415*", to_pattern="+1800*", label="VIP")
    from realtime_bridge.calls import find_route

    assert find_route(to_number="+18005551212", from_number="+14155550111") == vip
    assert find_route(to_number="+18005551212", from_number="+33100000000").name == "any"
    assert find_route(to_number="+4420", from_number="").label == "Any"


def test_a_call_that_could_not_be_answered_is_answered_when_the_webhook_is_retried(
    client, webhook_secret, sim, route, settings
):
    call_id = sim.ring()
    body, headers = signed(incoming(call_id), webhook_id="wh_retried")
    reachable = settings.OPENAI_BASE_URL
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # OpenAI unreachable

    assert post(client, body, headers).status_code == 502
    assert nothing_recorded()

    settings.OPENAI_BASE_URL = reachable
    assert post(client, body, headers).json()["status"] == "accepted"
    assert sim.call(call_id)["status"] == "accepted"
