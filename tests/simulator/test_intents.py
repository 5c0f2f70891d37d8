"""The scripted model's intent rules (simulator/intents.py, docs/simulator.md "Intent rules"): a guest's
own words become the right tool call, only among the tools the session has, and words otherwise."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from typing import Any

import pytest

from demo.hotel_mcp import Hotel, build_mcp
from simulator import intents, script

TODAY = date(2026, 12, 3)  # a Thursday


@pytest.fixture(scope="module")
def hotel_tools() -> dict[str, list[dict[str, Any]]]:
    """The demo hotel's tools as a session imports them (name, description, input_schema)."""
    listed = asyncio.run(build_mcp(Hotel()).list_tools())
    return {"hotel": [{"name": t.name, "description": t.description, "input_schema": t.input_schema} for t in listed]}


def decide(text: str, tools: dict[str, list[dict[str, Any]]]) -> intents.Call | intents.Say | None:
    return intents.decide(text, tools, today=TODAY)


@pytest.mark.parametrize(
    ("text", "tool", "arguments"),
    [
        (
            "I stepped out for ice and the door shut behind me, room 1204",
            "unlock_door",
            {"room": "1204", "reason": "I stepped out for ice and the door shut behind me, room 1204"},
        ),
        ("My key card stopped working, I'm in 1205.", "unlock_door", {"room": "1205"}),
        (
            "Room 1205 here. There's a charge of 48 euros for champagne on my bill, I never opened it.",
            "issue_refund",
            {"room": "1205", "amount": 48, "currency": "EUR"},
        ),
        (
            "I was charged $45.50 for parking I never used, room 1410",
            "issue_refund",
            {"amount": 45.5, "currency": "USD"},
        ),
        (
            "Could we have 25 euros of minibar credit in room 1204?",
            "add_minibar_credit",
            {"amount": 25, "currency": "EUR"},
        ),
        ("Could I keep the room until 3? My flight is late. Room 1410.", "schedule_late_checkout", {"time": "15:00"}),
        ("Late checkout at 2:30 pm for room 1102, please", "schedule_late_checkout", {"room": "1102", "time": "14:30"}),
        ("It's too bright in here, can you dim the lights? Room 1204", "set_room_lighting", {"scene": "relax"}),
        ("Could you turn off the lights in room 1204?", "set_room_lighting", {"room": "1204", "scene": "off"}),
        ("Set the lights to 40% in room 1205", "set_room_lighting", {"room": "1205", "level": 40}),
        ("I want to read, the lamp is too dark, room 0812", "set_room_lighting", {"scene": "reading"}),
        ("Could we get two more towels in 1102 please?", "request_housekeeping", {"item": "towels", "quantity": 2}),
        ("Room 1205: an extra pillow would be lovely", "request_housekeeping", {"item": "pillows"}),
        (
            "I need a taxi to the airport at 6:15 am tomorrow for Marco Bellini, room 1410",
            "book_taxi",
            {
                "room": "1410",
                "pickup_time": "06:15",
                "destination": "the airport",
                "day": "2026-12-04",
                "passenger": "Marco Bellini",
            },
        ),
        (
            "A cab to Central Station at 9 on Saturday, room 1102",
            "book_taxi",
            {"day": "2026-12-05", "pickup_time": "09:00"},
        ),
        (
            "Please wake me up at 6.30 tomorrow, room 0812",
            "schedule_wake_up_call",
            {"time": "06:30", "day": "2026-12-04"},
        ),
        ("Wake-up call for 7 am on 24 December, room 1501", "schedule_wake_up_call", {"day": "2026-12-24"}),
        ("Can we get a wake-up call on Thursday at 5 am? Room 1204", "schedule_wake_up_call", {"day": "2026-12-10"}),
        (
            "The air conditioning in room 0812 is so loud, can you move me to another room?",
            "move_room",
            {"room": "0812"},
        ),
        ("Can you move us to 1502? We're in room 1102", "move_room", {"room": "1102", "to_room": "1502"}),
    ],
)
def test_natural_requests_become_the_right_tool_call(hotel_tools, text, tool, arguments):
    decision = decide(text, hotel_tools)

    assert isinstance(decision, intents.Call), decision
    assert (decision.server_label, decision.name) == ("hotel", tool)
    assert {k: decision.arguments.get(k) for k in arguments} == arguments
    assert "to_room" not in decision.arguments or tool == "move_room"


def test_only_arguments_the_tool_declares_are_sent(hotel_tools):
    decision = decide("It's too bright in here at 40%, room 1204, 20 euros", hotel_tools)

    assert isinstance(decision, intents.Call)
    assert decision.arguments == {"room": "1204", "level": 40}  # a level or a scene, never both


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("I'm locked out!", "Which room are you in?"),
        ("Can I get a refund? Room 1205", "How much should it be, and in which currency?"),
        ("Can I have a late checkout, room 1205?", "For what time?"),
        ("Book me a taxi to the airport, room 1410", "What time should the taxi pick you up?"),
    ],
)
def test_a_missing_required_argument_is_asked_for(hotel_tools, text, question):
    assert decide(text, hotel_tools) == intents.Say(question)


def test_no_intent_means_no_call(hotel_tools):
    assert decide("What time does the breakfast room open?", hotel_tools) is None
    assert isinstance(script.plan_message("Is the pool heated?", hotel_tools, today=TODAY), script.Say)


def test_only_tools_the_session_has_are_chosen(hotel_tools):
    without_doors = {"hotel": [t for t in hotel_tools["hotel"] if t["name"] != "unlock_door"]}

    decision = decide("The door shut behind me, room 1204", without_doors)

    assert decision == intents.Say("I'm sorry, I can't open your door from here. The front desk will be glad to help.")
    assert decide("The door shut behind me, room 1204", {}) == decision


def test_a_tool_of_another_name_is_found_by_its_description():
    tools = {
        "locks": [
            {"name": "ring_bell", "description": "Ring a room's bell.", "input_schema": {"properties": {}}},
            {
                "name": "open_lock",
                "description": "Unlock the door of a room for a guest.",
                "input_schema": {"properties": {"room_number": {}, "room": {}}, "required": ["room"]},
            },
        ]
    }

    decision = decide("I locked myself out of room 0907", tools)

    assert decision == intents.Call("locks", "open_lock", {"room": "0907"})


def test_the_first_server_that_has_the_tool_wins(hotel_tools):
    tools = {"annex": hotel_tools["hotel"], "hotel": hotel_tools["hotel"]}

    decision = decide("Dim the lights in room 1204", tools)

    assert isinstance(decision, intents.Call) and decision.server_label == "annex"


def test_a_value_outside_the_enum_is_left_out():
    tool = {
        "name": "set_room_lighting",
        "input_schema": {
            "properties": {"room": {}, "scene": {"anyOf": [{"enum": ["on", "off"]}, {"type": "null"}]}},
            "required": ["room"],
        },
    }

    decision = decide("Dim the lights in room 1204", {"hotel": [tool]})

    assert decision == intents.Call("hotel", "set_room_lighting", {"room": "1204"})


def test_the_explicit_call_form_still_wins(hotel_tools):
    plan = script.plan_message('call hotel unlock_door {"room": "1410"}', hotel_tools, today=TODAY)
    assert plan == script.Call("hotel", "unlock_door", {"room": "1410"})
    assert plan.arguments_json == '{"room":"1410"}'

    refused = script.plan_message('call hotel open_safe {"room": "1410"}', hotel_tools, today=TODAY)
    assert refused == script.Say("Sorry, I can't use open_safe on hotel right now.")


def test_tool_choice_none_never_calls(hotel_tools):
    plan = script.plan_message("The door shut behind me, room 1204", hotel_tools, tools_allowed=False)
    assert isinstance(plan, script.Say)
    assert json.dumps(plan.text).startswith('"Sure.')


def _message(role: str, text: str) -> dict[str, Any]:
    kind = "input_text" if role == "user" else "output_text"
    return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}


def test_an_answer_to_the_models_question_completes_the_request(hotel_tools):
    items = [
        _message("user", "I'm locked out!"),
        _message("assistant", "Which room are you in?"),
        _message("user", "1204"),
    ]

    words = script.words_to_plan(items)

    assert words == "I'm locked out! room 1204"
    assert script.plan_message(words, hotel_tools, today=TODAY) == script.Call(
        "hotel", "unlock_door", {"room": "1204", "reason": "I'm locked out! room 1204"}
    )
    late = [_message("user", "Late checkout for room 1205?"), _message("assistant", "For what time?")]
    assert script.words_to_plan([*late, _message("user", "2 pm")]) == "Late checkout for room 1205? 2 pm"


def test_a_new_request_after_a_question_is_taken_on_its_own():
    asked = [_message("user", "I'm locked out!"), _message("assistant", "Which room are you in?")]

    assert script.words_to_plan([*asked, _message("user", "Dim the lights in 1102")]) == "Dim the lights in 1102"
    assert script.words_to_plan([*asked, _message("user", 'call hotel x {"a": 1}')]) == 'call hotel x {"a": 1}'
    chat = [_message("user", "Hello"), _message("assistant", "Hi! Anything else?"), _message("user", "1204")]
    assert script.words_to_plan(chat) == "1204"


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Good evening!", "Hello! How can I help you?"),
        ("Hi there, sorry to bother you this late.", "Hello! How can I help you?"),
        ("Thank you so much", "You're welcome! Is there anything else I can do for you?"),
        ("That's all, good night", "Good night, and enjoy your stay!"),
        ("Is the pool heated?", "Sure. You said: Is the pool heated?. Is there anything else I can do for you?"),
    ],
)
def test_words_no_intent_matches_get_small_talk_or_an_echo(hotel_tools, text, answer):
    assert script.plan_message(text, hotel_tools, today=TODAY) == script.Say(answer)
