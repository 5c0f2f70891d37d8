"""What a staff card shows of a phone call or a text agent run (ApprovalRequest.to_dict)."""

import pytest

from approvals import services
from approvals.models import ApprovalRequest
from realtime_bridge.models import Call, ResponsesRun

pytestmark = pytest.mark.django_db


def _request(kind: str) -> ApprovalRequest:
    session = services.open_session(kind=kind, label="Front desk line", metadata={"line": "main"})
    req, _ = services.open_request(
        session=session,
        upstream_id="mcpr_card",
        server_label="hotel",
        tool_name="unlock_door",
        arguments='{"room": "1204"}',
        raw_item={},
    )
    return req


def _card(req: ApprovalRequest) -> dict:
    return ApprovalRequest.objects.for_display().get(pk=req.pk).to_dict()


def test_a_sip_calls_card_shows_the_call_and_offers_hang_up_and_transfer(django_assert_max_num_queries):
    req = _request("sideband")
    call = Call.objects.create(
        call_id="rtc_card1",
        kind="sip",
        status="accepted",
        session=req.session,
        from_number="+14155550100",
        to_number="+18005551212",
    )
    data = _card(req)["session"]["call"]
    assert data["id"] == call.pk and data["kind"] == "sip"
    assert (data["from"], data["to"], data["status_label"]) == ("+14155550100", "+18005551212", "In progress")
    assert data["can_hang_up"] and data["can_transfer"]
    assert _card(req)["session"]["run"] is None

    Call.objects.filter(pk=call.pk).update(status="ended")
    ended = _card(req)["session"]["call"]
    assert not ended["can_hang_up"] and not ended["can_transfer"]


def test_a_text_agent_runs_card_shows_its_state_and_output():
    req = _request("responses")
    ResponsesRun.objects.create(
        session=req.session, model="gpt-5", input="Refund the minibar for 1204", state="waiting", output_text="x" * 2000
    )
    run = _card(req)["session"]["run"]
    assert run["state_label"] == "Waiting for approval" and run["input"] == "Refund the minibar for 1204"
    assert len(run["output_text"]) == 1000
    assert _card(req)["session"]["call"] is None


def test_a_relayed_sessions_card_costs_no_query_for_calls_or_runs(django_assert_num_queries):
    req = _request("relay")
    loaded = ApprovalRequest.objects.for_display().get(pk=req.pk)
    with django_assert_num_queries(1):  # the conversation lines only
        data = loaded.to_dict()
    assert data["session"]["call"] is None and data["session"]["run"] is None
