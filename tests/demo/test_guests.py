"""The demo's guests (demo/guests.py): their own words become the right calls (simulator/intents.py), the
demo policy meets each as the visit expects, the real hotel accepts them, and they arrive paced."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections import Counter
from datetime import date
from typing import Any

import pytest

from approvals.policy.document import parse_document
from approvals.policy.engine import Call, Policy
from approvals.policy.text import load_yaml
from demo import guests
from demo.hotel_mcp import Hotel, build_mcp
from demo.seed import POLICY_FILE
from simulator import intents, script
from tests.demo.test_hotel_mcp import call

TODAY = date(2026, 12, 3)


@pytest.fixture(scope="module")
def hotel_tools() -> dict[str, list[dict[str, Any]]]:
    listed = asyncio.run(build_mcp(Hotel()).list_tools())
    return {"hotel": [{"name": t.name, "description": t.description, "input_schema": t.input_schema} for t in listed]}


@pytest.fixture(scope="module")
def demo_policy() -> Policy:
    return Policy(parse_document(load_yaml(POLICY_FILE.read_text()), check_names=False), 1)


def planned(visit: guests.Visit, tools: dict[str, list[dict[str, Any]]]) -> intents.Call:
    """The call the scripted model makes of the visit: at once, or after asking back and hearing the answer."""
    decision = script.plan_message(visit.request, tools, today=TODAY)
    if visit.answer is not None:
        assert isinstance(decision, script.Say), (visit.request, decision)
        words = script.words_to_plan(
            [
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": visit.request}]},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": decision.text}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": visit.answer}]},
            ]
        )
        decision = script.plan_message(words, tools, today=TODAY)
    assert isinstance(decision, intents.Call), (visit.request, decision)
    return decision


@pytest.mark.parametrize("visit", guests.VISITS, ids=lambda v: f"{v.room}-{v.request[:30]}")
async def test_each_visit_is_a_call_the_policy_meets_as_expected_and_the_hotel_accepts(
    visit, hotel_tools, demo_policy, hotel_mcp
):
    planned_call = planned(visit, hotel_tools)
    session = {"room": visit.room}

    routing = demo_policy.route(
        Call("hotel", planned_call.name, planned_call.arguments_json, visit.label, "relay", session)
    )

    assert routing.outcome == visit.expect, (visit.request, planned_call, routing)
    if routing.outcome != "deny":
        await call(hotel_mcp, planned_call.name, planned_call.arguments)


def test_the_evening_looks_like_a_real_hotels(hotel_tools):
    calls = [planned(v, hotel_tools) for v in guests.VISITS]
    tools = Counter(c.name for c in calls)
    assert set(tools) >= {
        "unlock_door",
        "issue_refund",
        "schedule_late_checkout",
        "move_room",
        "set_room_lighting",
        "request_housekeeping",
        "book_taxi",
        "schedule_wake_up_call",
    }
    assert Counter(v.expect for v in guests.VISITS).keys() == {"allow", "ask", "deny"}
    assert len({v.room for v in guests.VISITS}) >= 5
    amounts = {(c.arguments["amount"], c.arguments["currency"]) for c in calls if "amount" in c.arguments}
    assert len(amounts) >= 4 and len({currency for _, currency in amounts}) >= 3
    # Natural words only: the explicit `call …` form is for tests and rehearsals.
    assert not any(v.request.lower().startswith("call ") or "{" in v.request for v in guests.VISITS)
    assert sorted(guests.ROOMS) == sorted({v.label for v in guests.VISITS})
    assert any(v.answer for v in guests.VISITS)  # someone forgets to say their room and is asked


def test_guests_arrive_one_by_one_at_irregular_moments_and_each_comes_every_round():
    rounds = list(itertools.islice(guests.schedule(40.0, random.Random(7)), 3 * len(guests.VISITS)))

    gaps = [gap for gap, _ in rounds]
    assert all(10.0 <= gap <= 120.0 for gap in gaps)
    assert len({round(gap, 3) for gap in gaps}) > len(gaps) // 2  # not a metronome
    for n in range(3):
        this_round = [v for _, v in rounds[n * len(guests.VISITS) : (n + 1) * len(guests.VISITS)]]
        assert sorted(this_round, key=guests.VISITS.index) == list(guests.VISITS)
    assert [v for _, v in rounds[: len(guests.VISITS)]] != list(guests.VISITS)  # shuffled
    assert list(itertools.islice(guests.schedule(40.0, random.Random(7)), 5)) == rounds[:5]  # a seed replays


def test_the_policy_file_is_valid_as_the_demo_seed_imports_it(demo_policy):
    labels = [r.label for r in demo_policy.rules]
    assert labels[-1] == "doors" and len(labels) == len(set(labels))
    assert json.dumps(labels)  # the rules load with their CEL conditions compiled (Policy() compiles them)
