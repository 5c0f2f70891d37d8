"""Call control leaves audit rows: a routed SIP call accepted, one no route matches rejected or
transferred, a call hung up or transferred by staff. Calls are answered against the simulator
(a real process), through the webhook endpoint, as in test_webhooks.py."""

from __future__ import annotations

import pytest

from approvals.models import AuditKind
from audit.models import AuditEvent
from realtime_bridge import calls
from realtime_bridge.kinds import CallAuditKind
from realtime_bridge.models import Call
from tests.realtime_bridge.test_webhooks import (  # noqa: F401  (fixtures)
    incoming,
    post,
    route,
    signed,
    sim,
    webhook_secret,
)


def call_rows() -> list[AuditEvent]:
    kinds = [
        CallAuditKind.CALL_ACCEPTED,
        CallAuditKind.CALL_REJECTED,
        CallAuditKind.CALL_TRANSFERRED,
        CallAuditKind.CALL_HUNG_UP,
    ]
    return list(AuditEvent.objects.filter(kind__in=kinds).order_by("seq"))


def ring_and_answer(client, phone, to: str = "+18005551212") -> Call:
    call_id = phone.ring(to=to)
    body, headers = signed(incoming(call_id, to=to))
    assert post(client, body, headers).status_code == 200
    return Call.objects.get(call_id=call_id)


@pytest.fixture
def answered(client, webhook_secret, sim, route):  # noqa: F811
    return ring_and_answer(client, sim)


def test_a_routed_call_that_is_accepted_is_audited_with_its_session_and_route(answered):
    (row,) = call_rows()

    assert (row.kind, row.session_id, row.actor_id, row.actor_label) == (
        "call_accepted",
        answered.session_id,
        None,
        "SIP routing",
    )
    assert row.payload == {
        "call_id": answered.call_id,
        "kind": "sip",
        "from": "+14155550111",
        "to": "+18005551212",
        "route": "Front desk",
    }
    opened = AuditEvent.objects.get(session_id=answered.session_id, kind=AuditKind.SESSION_OPENED)
    assert opened.seq < row.seq


def test_a_call_no_route_matches_is_audited_as_rejected(client, webhook_secret, sim, settings):  # noqa: F811
    settings.SIP_UNROUTED_STATUS = 486
    call = ring_and_answer(client, sim, to="+18009990000")

    (row,) = call_rows()
    assert (row.kind, row.session_id, row.actor_label) == ("call_rejected", None, "SIP routing")
    assert row.payload["call_id"] == call.call_id and row.payload["status_code"] == 486
    assert row.payload["reason"] == "no route"


def test_a_call_no_route_matches_is_audited_as_transferred_when_a_target_is_set(
    client,
    webhook_secret,  # noqa: F811
    sim,  # noqa: F811
    settings,
):
    settings.SIP_UNROUTED_REFER_TO = "tel:+14155550123"
    ring_and_answer(client, sim, to="+18009990000")

    (row,) = call_rows()
    assert (row.kind, row.actor_label, row.payload["target_uri"]) == (
        "call_transferred",
        "SIP routing",
        "tel:+14155550123",
    )


def test_staff_hanging_up_a_call_is_audited_with_who_did_it(answered, client, alice):
    client.force_login(alice)

    assert client.post(f"/calls/{answered.pk}/hangup").status_code == 200

    row = call_rows()[-1]
    assert (row.kind, row.session_id, row.actor, row.actor_label) == (
        "call_hung_up",
        answered.session_id,
        alice,
        "Alice",
    )
    assert row.payload["outcome"] == "Hung up by Alice"
    # After the session closed, in the same transaction as the call's end.
    closed = AuditEvent.objects.get(session_id=answered.session_id, kind=AuditKind.SESSION_CLOSED)
    assert closed.seq < row.seq


def test_staff_transferring_a_call_is_audited_with_the_target(answered, alice):
    calls.transfer(answered, target_uri="tel:+14155550123", by=alice)

    row = call_rows()[-1]
    assert (row.kind, row.actor, row.payload["target_uri"]) == ("call_transferred", alice, "tel:+14155550123")
    assert row.payload["outcome"] == "Transferred to tel:+14155550123 by Alice"


def test_the_bridge_ending_the_call_first_writes_the_staff_actions_row_once(answered, alice):
    # Staff hang up; the bridge sees the sideband close before the staff request gets back.
    calls._note_action(answered, by=alice, outcome="Hung up by Alice")
    assert calls.end_call(answered.pk, outcome="The call ended.", code=1000)
    assert not calls.end_call(answered.pk, outcome="Hung up by Alice")

    rows = [r for r in call_rows() if r.kind == CallAuditKind.CALL_HUNG_UP]
    assert [(r.actor, r.payload["outcome"]) for r in rows] == [(alice, "Hung up by Alice")]


def test_a_call_that_ends_by_itself_writes_no_call_control_row(answered):
    assert calls.end_call(answered.pk, outcome="The call ended.", code=1000)

    assert [r.kind for r in call_rows()] == ["call_accepted"]
