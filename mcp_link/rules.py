"""Which of a server's listed tools OpenAI would import: one rule set for Countersign's probe
(approvals/probe.py) and the simulator's hosted MCP client (simulator/mcp_client.py), so that what the
probe calls refused is exactly what the simulator leaves out of its `mcp_list_tools` item.

The rules, and how sure each is (docs/registry.md, "What OpenAI would refuse"):

- A name of 1-64 letters, digits, `_` or `-`. OpenAI's API refuses other function names with "Expected
  a string that matches the pattern '^[a-zA-Z0-9_-]+$'", and its function-calling guide caps them at 64
  characters. MCP allows more (SEP-986: dots, slashes, up to 128 characters). That OpenAI applies its
  function rule to the tools its hosted MCP client imports is UNVERIFIED: REALTIME_PROTOCOL.md says
  nothing about it; a third-party report (openai/openai-agents-python#1608) of a Realtime session that
  imported 0 tools from a server whose tool was `calendar.create_event` fits it.
- An input schema that is a JSON Schema object (`"type": "object"`, valid against its metaschema): the
  shape of function parameters OpenAI documents. For hosted MCP tools, also UNVERIFIED.
- A tool the SDK's own types refuse (mcp_link.Malformed: a non-object input schema, a missing name)
  is refused for the reason the types give.

What OpenAI does with a refused tool is UNVERIFIED too. Both sides assume the fit above: the tool is
left out and the others are imported, so a server whose every tool is refused gives
`mcp_list_tools.completed` with no tools (not `mcp_list_tools.failed`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import jsonschema
import mcp_types

from mcp_link import Listing

MAX_NAME = 64
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
OK_CHARACTER = re.compile(r"[A-Za-z0-9_-]")
NAME_RULE = "1-64 letters, digits, '_' or '-'"

Definition = TypeVar("Definition", bound=dict[str, Any])


@dataclass(frozen=True)
class Refusal:
    """A listed tool OpenAI would not import, and why (each reason in plain words)."""

    name: str
    reasons: list[str]

    def __str__(self) -> str:
        return f"tool {self.name!r}: " + "; ".join(self.reasons)


def _what_is_wrong(name: str) -> str:
    if not name:
        return "but it is empty"
    wrong = []
    if len(name) > MAX_NAME:
        wrong.append(f"is {len(name)} characters long")
    others = sorted({c for c in name if not OK_CHARACTER.match(c)})
    if others:
        wrong.append("contains " + " ".join(repr(c) for c in others))
    return "but it " + " and ".join(wrong)


def refusals(name: str, input_schema: Any) -> list[str]:
    """Why OpenAI would refuse a tool with this name and input schema (empty: it would import it)."""
    reasons = []
    if not NAME.match(name):
        reasons.append(f"OpenAI takes tool names of {NAME_RULE}, {_what_is_wrong(name)} (rename it on the server)")
    if not isinstance(input_schema, dict) or input_schema.get("type") != "object":
        reasons.append('OpenAI takes an input schema that is a JSON Schema with "type": "object"')
    else:
        try:
            jsonschema.validators.validator_for(input_schema).check_schema(input_schema)
        except jsonschema.SchemaError as exc:
            path = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            reasons.append(f"the input schema is not valid JSON Schema at {path}: {exc.message}")
    return reasons


def importable(
    listing: Listing, convert: Callable[[mcp_types.Tool], Definition]
) -> tuple[list[Definition], list[Refusal]]:
    """The listing's tools OpenAI would import (each as `convert` makes it, in the server's order),
    and those it would refuse: the SDK types' refusals first, then the rules above."""
    kept: list[Definition] = []
    refused = [Refusal(m.name, [f"not a valid MCP tool: {m.reason}"]) for m in listing.malformed]
    for tool in listing.tools:
        reasons = refusals(tool.name, tool.input_schema)
        if reasons:
            refused.append(Refusal(tool.name, reasons))
        else:
            kept.append(convert(tool))
    return kept, refused
