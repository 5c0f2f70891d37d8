"""The simulator's "model": a script, so tests and rehearsals know exactly what it will do.

A user message `call <server_label> <tool_name> <json arguments>` makes the next response call that
tool; a guest's own words ("the door shut behind me, room 1204") go through the intent rules of
simulator/intents.py to a tool of the session; any other text gets a short reply in a spoken style.
After a tool call, the reply speaks its result.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from simulator import intents

_COMMAND = re.compile(r"^\s*call\s+(\S+)\s+(\S+)\s*(.*?)\s*$", re.IGNORECASE | re.DOTALL)
_MAX_ECHO = 120


def parse_command(text: str) -> tuple[str, str, str] | None:
    """(server_label, tool_name, arguments as compact JSON) for a `call …` message, else None.

    Missing arguments mean `{}`; arguments that are not a JSON object make it an ordinary message.
    """
    match = _COMMAND.match(text)
    if match is None:
        return None
    label, name, raw = match.groups()
    try:
        args = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return None
    if not isinstance(args, dict):
        return None
    return label, name, json.dumps(args, separators=(",", ":"))


Call = intents.Call
Say = intents.Say

_BARE_NUMBER = re.compile(r"^\s*(?:it'?s\s+|in\s+)?#?(\d{3,4})\s*[.!]?\s*$", re.IGNORECASE)


def _text_of(item: Mapping[str, Any]) -> str:
    parts = item.get("content") or []
    return " ".join(str(p.get("text") or p.get("transcript") or "") for p in parts if isinstance(p, Mapping)).strip()


def words_to_plan(items: Sequence[Mapping[str, Any]]) -> str:
    """The user's words the next response acts on: the last user message, or, when the model's message
    before it asked one of the intent questions (docs/simulator.md, "Intent rules"), the user message
    that led to the question followed by this answer ("I'm locked out" + "1204" → "I'm locked out room
    1204"), unless the answer is a request of its own (a `call …` or words some intent matches). A bare
    number answering "Which room …?" is read as that room."""
    last = _text_of(items[-1]) if items else ""
    if len(items) < 3 or parse_command(last) is not None or any(i.matches(last) for i in intents.INTENTS):
        return last  # a request of its own, not an answer
    question, earlier = items[-2], items[-3]
    asked = _text_of(question) if question.get("role") == "assistant" else ""
    if asked not in intents.QUESTIONS.values() or earlier.get("role") != "user":
        return last
    if (number := _BARE_NUMBER.match(last)) and asked in (intents.QUESTIONS["room"], intents.QUESTIONS["to_room"]):
        last = f"{'room' if asked == intents.QUESTIONS['room'] else 'to room'} {number.group(1)}"
    return f"{_text_of(earlier)} {last}"


def plan_message(
    text: str, available: intents.Tools, *, tools_allowed: bool = True, today: date | None = None
) -> Call | Say:
    """What the model does with a user message: a `Call` (label, tool, arguments) or a `Say`.

    `available` maps each server label whose tools were imported to those tools (Realtime item shape);
    `tools_allowed=False` (`tool_choice: "none"`) never calls. An explicit `call …` names its tool; any
    other text goes through the intent rules (simulator/intents.py) to a tool the session has.
    """
    if not tools_allowed:
        return Say(reply_text(text))
    command = parse_command(text)
    if command is not None:
        label, name, arguments = command
        if not any(t.get("name") == name for t in available.get(label, ())):
            # Section 4: a turn can only use tools that were imported (and allowed) before it started.
            return Say(cannot_call_text(label, name))
        return Call(label, name, json.loads(arguments))
    decision = intents.decide(text, available, today=today)
    return decision if decision is not None else Say(reply_text(text))


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ECHO else text[: _MAX_ECHO - 1] + "…"


# Small talk the scripted model answers in kind (docs/simulator.md), first match wins.
_SMALL_TALK = (
    (re.compile(r"\b(bye|goodbye|good night)\b", re.IGNORECASE), "Good night, and enjoy your stay!"),
    (re.compile(r"\b(thanks|thank you)\b", re.IGNORECASE), "You're welcome! Is there anything else I can do for you?"),
    (
        re.compile(r"^\W*(hi|hello|hey|good (morning|afternoon|evening))\b", re.IGNORECASE),
        "Hello! How can I help you?",
    ),
)


def reply_text(text: str) -> str:
    """A short spoken-style answer to an ordinary user message: small talk in kind, else an echo."""
    if not text.strip():
        return "Sorry, I didn't catch that. Could you say it again?"
    for pattern, answer in _SMALL_TALK:
        if pattern.search(text):
            return answer
    return f"Sure. You said: {_clip(text)}. Is there anything else I can do for you?"


def cannot_call_text(label: str, name: str) -> str:
    return f"Sorry, I can't use {name} on {label} right now."


def result_text(name: str, output: str | None, error: dict[str, object] | None) -> str:
    """The follow-up after a tool call ran."""
    if error is not None:
        return f"I'm sorry, {name} didn't work: {_clip(str(error.get('message', 'unknown error')))}."
    return f"All done. {_clip(output or 'It worked.')}"


def denied_text(name: str, reason: str | None) -> str:
    suffix = f" The reason given was: {_clip(reason)}." if reason else ""
    return f"Okay, I won't run {name}; it was not approved.{suffix}"


def instructed_text(instructions: str | None) -> str:
    """What a response's own instructions ask the model to say: the sentences they quote
    ("Tell the guest: \"...\""), read out as given; "" when they quote nothing. The scripted
    model follows instructions only this far, which makes what it was told audible in tests."""
    if not instructions:
        return ""
    return " ".join(" ".join(quoted.split()) for quoted in re.findall(r'"([^"]+)"', instructions))


def pending_text(name: str) -> str:
    return f"I'm still waiting on {name}. One moment, please."
