"""mcp_link.rules on its own: the one rule set the probe and the simulator share (against real servers
in tests/probe/test_third_party.py)."""

from __future__ import annotations

import mcp_types
import pytest

import mcp_link
from mcp_link import rules

OBJECT = {"type": "object", "properties": {"room": {"type": "string"}}}


@pytest.mark.parametrize(
    ("name", "wrong"),
    [
        ("ring_bell", None),
        ("get-sum", None),
        ("x" * 64, None),
        ("files.read", "but it contains '.'"),
        ("rooms/lookup", "but it contains '/'"),
        ("x" * 70, "but it is 70 characters long"),
        ("a.b" + "c" * 70, "but it is 73 characters long and contains '.'"),
        ("", "but it is empty"),
    ],
)
def test_the_name_rule(name, wrong):
    reasons = rules.refusals(name, OBJECT)
    if wrong is None:
        assert reasons == []
    else:
        assert reasons == [
            f"OpenAI takes tool names of 1-64 letters, digits, '_' or '-', {wrong} (rename it on the server)"
        ]


@pytest.mark.parametrize(
    ("schema", "said"),
    [
        ({"type": "array", "items": {}}, 'OpenAI takes an input schema that is a JSON Schema with "type": "object"'),
        ("not a schema", 'OpenAI takes an input schema that is a JSON Schema with "type": "object"'),
        ({"type": "object", "properties": {"n": {"type": "integr"}}}, "not valid JSON Schema at properties/n/type"),
    ],
)
def test_the_input_schema_rule(schema, said):
    [reason] = rules.refusals("ok_name", schema)
    assert said in reason


def test_importable_keeps_the_server_order_and_names_each_refusal():
    listing = mcp_link.Listing(
        tools=[
            mcp_types.Tool(name="b_tool", input_schema=OBJECT),
            mcp_types.Tool(name="files.read", input_schema=OBJECT),
            mcp_types.Tool(name="a_tool", input_schema=OBJECT),
        ],
        protocol_version="2025-11-25",
        server_name="s",
        malformed=[mcp_link.Malformed("count", {}, 'its inputSchema has "type": "string", not "object"')],
    )

    kept, refused = rules.importable(listing, lambda t: {"name": t.name})

    assert kept == [{"name": "b_tool"}, {"name": "a_tool"}]
    assert [str(r) for r in refused] == [
        'tool \'count\': not a valid MCP tool: its inputSchema has "type": "string", not "object"',
        "tool 'files.read': OpenAI takes tool names of 1-64 letters, digits, '_' or '-', but it contains '.' "
        "(rename it on the server)",
    ]


@pytest.mark.parametrize(
    ("status", "falls_back"), [(400, True), (404, True), (405, True), (401, False), (403, False), (500, False)]
)
def test_only_a_4xx_other_than_401_and_403_calls_for_http_sse(status, falls_back):
    failure = mcp_link.LinkError(RuntimeError("x"), [mcp_link.HttpStatus(status, "Reason")])
    assert failure.calls_for_sse is falls_back
    assert mcp_link.LinkError(ConnectionError("refused"), []).calls_for_sse is False
