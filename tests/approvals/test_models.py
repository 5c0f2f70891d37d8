from __future__ import annotations

import json
from datetime import timedelta

import pytest

from approvals import services
from approvals.models import ApprovalRequest, ConversationLine, plain_words


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("refund_minibar_charge", "Refund minibar charge"),
        ("unlockDoor", "Unlock door"),
        ("hotel-pms", "Hotel pms"),
        ("", ""),
    ],
)
def test_plain_words_turns_identifiers_into_words(name, words):
    assert plain_words(name) == words


def test_to_dict_describes_the_card(session, make_request):
    req = make_request(name="refund_minibar_charge")

    data = req.to_dict(now=req.created_at + timedelta(seconds=12.34))

    assert data["id"] == req.pk
    assert data["status"] == "pending"
    assert (data["tool_title"], data["server_title"]) == ("Refund minibar charge", "Hotel")
    assert data["arguments"] == {"booking_id": "B42", "amount": 120}
    assert data["arguments_raw"] == req.arguments
    assert data["session"] == {
        "id": session.pk,
        "kind": "relay",
        "kind_label": "Relayed WebSocket",
        "label": "Room 1204",
        "metadata": {"room": "1204", "guest": "Ms Rossi"},
        "status": "open",
        "call": None,
        "run": None,
    }
    assert data["timeout_seconds"] == 60
    assert data["seconds_left"] == 47.7
    assert data["deadline"] == req.deadline.isoformat()
    assert data["call"] == {"recorded": False, "arguments": "", "output": None, "error": None}
    json.dumps(data)  # it travels as JSON


def test_to_dict_of_a_decided_request_says_who_decided_and_has_no_time_left(make_request, alice):
    req = services.decide(make_request(), approve=False, by=alice, reason="Ask at the desk")

    data = req.to_dict()

    assert (data["status"], data["status_label"]) == ("denied", "Denied")
    assert (data["decided_by_label"], data["reason"], data["approve"]) == ("Alice", "Ask at the desk", False)
    assert data["seconds_left"] == 0
    assert data["decided_at"] == req.decided_at.isoformat()


def test_to_dict_shows_arguments_that_are_not_json_as_sent(make_request):
    req = make_request(arguments='{"amount": 12')

    data = req.to_dict()

    assert data["arguments"] is None
    assert data["arguments_raw"] == '{"amount": 12'


def test_to_dict_holds_the_last_lines_of_the_conversation(session, make_request):
    for n in range(8):
        services.add_conversation_line(session=session, role="user" if n % 2 else "assistant", text=f"line {n}")
    req = make_request()

    lines = req.to_dict()["conversation"]

    assert [line["text"] for line in lines] == [f"line {n}" for n in range(2, 8)]
    assert lines[-1]["role"] == "user"
    assert lines[-1]["role_label"] == "Guest"


def test_a_decided_requests_conversation_stops_at_the_decision(session, make_request, alice):
    services.add_conversation_line(session=session, role="user", text="Refund it please")
    req = services.decide(make_request(), approve=True, by=alice)
    assert req.decided_at is not None
    ConversationLine.objects.create(
        session=session, role="assistant", text="Done!", created_at=req.decided_at + timedelta(seconds=1)
    )

    assert [line["text"] for line in req.to_dict()["conversation"]] == ["Refund it please"]


def test_to_dict_never_contains_mcp_credentials(session, make_request):
    services.register_mcp_server(
        label="hotel",
        url="https://mcp.hotel.example/mcp",
        authorization="sk-live-AUTH-SECRET",
        headers={"X-Api-Key": "HEADER-SECRET"},
        description="Property management",
    )
    req = ApprovalRequest.objects.for_display().get(pk=make_request().pk)

    text = json.dumps(req.to_dict())

    assert req.mcp_server is not None
    assert "Property management" in text
    assert "AUTH-SECRET" not in text
    assert "HEADER-SECRET" not in text
    assert "X-Api-Key" not in text


def test_queue_lists_pending_requests_most_urgent_first(session, make_request, alice, settings):
    settings.APPROVAL_TIMEOUT_SECONDS = 60
    late = make_request()
    settings.APPROVAL_TIMEOUT_SECONDS = 30
    urgent = make_request()
    services.decide(make_request(), approve=True, by=alice)

    assert list(ApprovalRequest.objects.queue()) == [urgent, late]
