"""The simulator's "model": a script, so tests and rehearsals know exactly what it will do.

A user message `call <server_label> <tool_name> <json arguments>` makes the next response call that
tool; any other text gets a short reply in a spoken style. After a tool call, the reply speaks its result.
"""

from __future__ import annotations

import json
import re

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


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ECHO else text[: _MAX_ECHO - 1] + "…"


def reply_text(text: str) -> str:
    """A short spoken-style answer to an ordinary user message."""
    if not text.strip():
        return "Sorry, I didn't catch that. Could you say it again?"
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
