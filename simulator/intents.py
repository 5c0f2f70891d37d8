"""The scripted model's intent rules: a guest's own words → one tool call, deterministically.

`decide(text, available)` reads a user message such as "I stepped out for ice and the door shut behind
me, room 1204" and returns a `Call` (server label, tool name, arguments) or a `Say` (a question for what
is missing, or that the request cannot be served). The rules (docs/simulator.md, "Intent rules"):

1. The intents are tried in the order of `INTENTS`; the first whose pattern matches the message and
   for which the session has a tool wins. A later intent is tried only when an earlier one matched but
   no tool of the session serves it.
2. A tool serves an intent when its name is one of the intent's tool names (in that order), else when
   its name and description contain every one of the intent's keywords. Tools are searched in the
   order the session lists them (servers, then each server's tools).
3. Arguments are extracted by name, only for the properties the tool's input schema declares
   (`room`, `to_room`, `amount`, `currency`, `time`, `pickup_time`, `day`, `date`, `passenger`,
   `name`, `destination`, `reason`, `scene`, `level`, `item`, `quantity`); a value outside the
   property's `enum` is dropped. A required property that cannot be extracted makes the reply a
   question (`Say`) instead of a call.

Nothing here is random or depends on anything but the text, the tools and `today`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from simulator import intent_args as extract

# Each server label whose tools were imported → those tools (Realtime `mcp_list_tools` item shape).
Tools = Mapping[str, Sequence[Mapping[str, Any]]]


@dataclass(frozen=True)
class Call:
    server_label: str
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, separators=(",", ":"))


@dataclass(frozen=True)
class Say:
    text: str


def _rx(*patterns: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p, re.IGNORECASE) for p in patterns)


@dataclass(frozen=True)
class Intent:
    name: str
    what: str  # "unlock your door": for "I can't <what> from here"
    patterns: tuple[re.Pattern[str], ...]
    tools: tuple[str, ...]
    keywords: tuple[str, ...]

    def matches(self, text: str) -> bool:
        return any(p.search(text) for p in self.patterns)


INTENTS: tuple[Intent, ...] = (
    Intent(
        "lockout",
        "open your door",
        _rx(
            r"lock(ed)? (myself |me |us |ourselves )?out",
            r"door (shut|closed|locked|slammed)( itself)? behind",
            r"(can'?t|cannot|couldn'?t) get (back )?in(to)?\b",
            r"\bkey ?card\b.*\b(doesn'?t|won'?t|isn'?t|stopped|not) work",
            r"\b(open|unlock) (my |our |the )?(room|door)\b",
            r"\blet (me|us) (back )?in\b",
        ),
        ("unlock_door",),
        ("unlock", "door"),
    ),
    Intent(
        "minibar_credit",
        "add minibar credit",
        _rx(r"\bcredit\b.*\bminibar\b", r"\bminibar\b.*\bcredit\b"),
        ("add_minibar_credit",),
        ("minibar", "credit"),
    ),
    Intent(
        "refund",
        "refund a charge",
        _rx(
            r"\brefund",
            r"\bmoney back\b",
            r"\b(over)?charged\b",
            r"\bcharge[sd]? (for|of)\b",
            r"\bnever (ordered|opened|used|had|touched|took)\b",
            r"\b(shouldn'?t|should not) be on (my|our|the) (bill|folio)",
            r"\bwrong (charge|amount)\b",
        ),
        ("issue_refund",),
        ("refund",),
    ),
    Intent(
        "late_checkout",
        "move your checkout",
        _rx(
            r"\blate check-?out\b",
            r"\bcheck(ing)?[- ]?out (a bit |a little )?later\b",
            r"\bkeep (the |my |our )?room\b",
            r"\bstay (in the room )?(a bit |a little )?longer\b",
            r"\bextend (my |our |the )?check-?out\b",
        ),
        ("schedule_late_checkout",),
        ("checkout", "late"),
    ),
    Intent(
        "room_move",
        "move you to another room",
        _rx(
            r"\b(change|switch|swap) (my |our |the )?rooms?\b",
            r"\bmove (me|us)\b",
            r"\b(another|a different|a new|a quieter) room\b",
            r"\bupgrade\b",
        ),
        ("move_room",),
        ("move", "room"),
    ),
    Intent(
        "wake_up",
        "book a wake-up call",
        _rx(r"\bwake[- ]?up call\b", r"\bwake (me|us)( up)?\b", r"\balarm call\b"),
        ("schedule_wake_up_call",),
        ("wake",),
    ),
    Intent(
        "taxi",
        "book a taxi",
        _rx(r"\btaxi\b", r"\bcab\b", r"\b(car|ride|shuttle) to\b"),
        ("book_taxi",),
        ("taxi",),
    ),
    Intent(
        "lights",
        "change your lights",
        _rx(
            r"\blights?\b",
            r"\blamps?\b",
            r"\bdim\b",
            r"\btoo (bright|dark)\b",
            r"\b(brighter|darker)\b",
        ),
        ("set_room_lighting",),
        ("light",),
    ),
    Intent(
        "housekeeping",
        "send housekeeping",
        _rx(
            r"\btowels?\b",
            r"\bpillows?\b",
            r"\bblankets?\b",
            r"\b(toiletries|shampoo|soap|toothbrush|toothpaste)\b",
            r"\b(clean|make up) (my|our|the) room\b",
            r"\bturn-?down\b",
            r"\bhousekeeping\b",
        ),
        ("request_housekeeping",),
        ("housekeeping",),
    ),
    Intent(
        "folio",
        "look up your bill",
        _rx(r"\b(my|our|the) (bill|folio)\b", r"\bwhat do (i|we) owe\b"),
        ("lookup_folio",),
        ("folio",),
    ),
    Intent(
        "room_status",
        "check your room",
        _rx(r"\broom status\b", r"\bis (my|our|the) door (locked|unlocked)\b"),
        ("get_room_status",),
        ("room", "status"),
    ),
)

# Asked when a required argument cannot be found in the message.
QUESTIONS = {
    "room": "Which room are you in?",
    "to_room": "Which room would you like to move to?",
    "amount": "How much should it be, and in which currency?",
    "currency": "In which currency is that: euros, dollars, pounds or francs?",
    "time": "For what time?",
    "pickup_time": "What time should the taxi pick you up?",
    "destination": "Where would you like to go?",
    "item": "What would you like housekeeping to bring?",
    "reason": "Could you tell me what happened?",
}

Extractor = Callable[[str, date, str], Any]

EXTRACTORS: dict[str, Extractor] = {
    "room": lambda text, today, intent: extract.room(text, moving=intent == "room_move"),
    "to_room": lambda text, today, intent: extract.to_room(text),
    "amount": lambda text, today, intent: extract.money(text)[0],
    "currency": lambda text, today, intent: extract.money(text)[1],
    "time": lambda text, today, intent: extract.time_of_day(text, afternoon=intent == "late_checkout"),
    "pickup_time": lambda text, today, intent: extract.time_of_day(text),
    "day": lambda text, today, intent: extract.day(text, today),
    "date": lambda text, today, intent: extract.day(text, today),
    "passenger": lambda text, today, intent: extract.person(text),
    "name": lambda text, today, intent: extract.person(text),
    "destination": lambda text, today, intent: extract.destination(text),
    "reason": lambda text, today, intent: extract.reason(text),
    "scene": lambda text, today, intent: extract.light_scene(text),
    "level": lambda text, today, intent: extract.light_level(text),
    "item": lambda text, today, intent: extract.housekeeping_item(text),
    "quantity": lambda text, today, intent: extract.quantity(text),
}


def find_tool(
    intent: Intent, available: Mapping[str, Sequence[Mapping[str, Any]]]
) -> tuple[str, Mapping[str, Any]] | None:
    """(server label, tool) of the first tool that serves the intent (rule 2), or None."""
    tools = [(label, tool) for label, listed in available.items() for tool in listed]
    for name in intent.tools:
        for label, tool in tools:
            if tool.get("name") == name:
                return label, tool
    for label, tool in tools:
        words = f"{tool.get('name', '')} {tool.get('description') or ''}".lower()
        if intent.keywords and all(k in words for k in intent.keywords):
            return label, tool
    return None


def _allowed(value: Any, schema: Mapping[str, Any]) -> bool:
    """A value outside the property's enum (also inside anyOf, as pydantic writes Optional[Literal])."""
    enums = [schema.get("enum")] + [s.get("enum") for s in schema.get("anyOf", []) if isinstance(s, dict)]
    given = [e for e in enums if e]
    return not given or any(value in e for e in given)


def arguments(intent: Intent, tool: Mapping[str, Any], text: str, today: date) -> tuple[dict[str, Any], list[str]]:
    """(arguments extracted for the tool's schema, required properties that are missing)."""
    schema = tool.get("input_schema") or {}
    properties: Mapping[str, Any] = schema.get("properties") or {}
    required = list(schema.get("required") or [])
    args: dict[str, Any] = {}
    for prop, prop_schema in properties.items():
        extractor = EXTRACTORS.get(prop)
        value = extractor(text, today, intent.name) if extractor else None
        if value is not None and _allowed(value, prop_schema or {}):
            args[prop] = value
    if intent.name == "lights" and "scene" in args and "level" in args:
        # The hotel takes a level or a scene, not both: a number the guest said wins.
        del args["scene"]
    missing = [p for p in required if p not in args]
    return args, missing


def decide(
    text: str, available: Mapping[str, Sequence[Mapping[str, Any]]], *, today: date | None = None
) -> Call | Say | None:
    """The call the message asks for, a question or a refusal in words, or None when no intent matches."""
    today = today or datetime.now(UTC).astimezone().date()  # the machine's local day
    unserved: Intent | None = None
    for intent in INTENTS:
        if not intent.matches(text):
            continue
        found = find_tool(intent, available)
        if found is None:
            unserved = unserved or intent
            continue
        label, tool = found
        args, missing = arguments(intent, tool, text, today)
        if missing:
            return Say(QUESTIONS.get(missing[0], f"I need the {missing[0].replace('_', ' ')} for that."))
        return Call(label, str(tool["name"]), args)
    if unserved is not None:
        return Say(f"I'm sorry, I can't {unserved.what} from here. The front desk will be glad to help.")
    return None
