"""`POST /v1/responses` with remote MCP tools and approvals (REALTIME_PROTOCOL.md section 9), driven by
the official SDK's `client.responses.create` against the simulator, which calls the real demo hotel."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.responses import Response

from tests.simulator.test_http_api import Sim, assert_openai_error, running_simulator

MODEL = "gpt-4.1"


@pytest.fixture(scope="module")
def _simulator() -> Iterator[Sim]:
    with running_simulator() as sim:
        yield sim


@pytest.fixture
def sim(_simulator: Sim) -> Sim:
    return _simulator.reset()


def create(sim: Sim, **params: Any) -> Response:
    """responses.create through the SDK; the raw JSON must also pass the SDK's type in strict mode."""
    raw = sim.client.responses.with_raw_response.create(model=MODEL, **params)
    Response.model_validate(json.loads(raw.text), strict=True)
    return raw.parse()


def items(response: Response) -> list[Any]:
    """The output items, each read as the kind the test has just checked it is (the SDK types a union)."""
    return list(response.output)


def unlock(room: str = "1204") -> str:
    return f'call hotel_ops unlock_door {{"room": "{room}", "reason": "locked out"}}'


def approve(sim: Sim, hotel_mcp: Any, first: Response, approve: bool = True, **extra: Any) -> Response:
    [request] = [item for item in first.output if item.type == "mcp_approval_request"]
    answer = {"type": "mcp_approval_response", "approve": approve, "approval_request_id": request.id, **extra}
    return create(sim, tools=[hotel_mcp.tool()], previous_response_id=first.id, input=[answer])


def test_a_tool_call_needing_approval_lists_tools_and_asks(sim, hotel_mcp):
    response = create(sim, tools=[hotel_mcp.tool()], input=unlock())

    assert response.status == "completed"
    assert [item.type for item in response.output] == ["mcp_list_tools", "mcp_approval_request"]
    listing, request = items(response)
    assert listing.id.startswith("mcpl_") and listing.server_label == "hotel_ops" and listing.error is None
    assert {t.name: t.annotations["read_only"] for t in listing.tools}["lookup_folio"] is True
    assert len(listing.tools) == 11
    assert request.id.startswith("mcpr_")
    assert (request.name, json.loads(request.arguments)) == ("unlock_door", {"room": "1204", "reason": "locked out"})
    assert hotel_mcp.state()["rooms"]["1204"]["door_locked"] is True


def test_approval_resumes_with_previous_response_id_and_runs_the_tool(sim, hotel_mcp):
    first = create(sim, tools=[hotel_mcp.tool()], input=unlock())

    second = approve(sim, hotel_mcp, first)

    assert second.previous_response_id == first.id
    assert [item.type for item in second.output] == ["mcp_call", "message"]
    call, message = items(second)
    assert call.id.startswith("mcp_")
    assert call.approval_request_id == first.output[1].id
    assert call.status == "completed" and call.error is None
    assert json.loads(call.output)["was_locked"] is True
    assert message.role == "assistant" and message.content[0].text.startswith("All done.")
    assert hotel_mcp.state()["rooms"]["1204"]["door_locked"] is False


def test_a_denial_runs_nothing_and_says_so(sim, hotel_mcp):
    first = create(sim, tools=[hotel_mcp.tool()], input=unlock())

    second = approve(sim, hotel_mcp, first, approve=False, reason="not the guest")

    assert [item.type for item in second.output] == ["message"]
    [message] = items(second)
    assert "not approved" in message.content[0].text and "not the guest" in message.content[0].text
    assert hotel_mcp.state()["activity"] == []


def test_a_failing_tool_reports_the_responses_error_shape(sim, hotel_mcp):
    args = {"room": "1205", "amount": 400, "currency": "EUR", "reason": "spa"}
    first = create(sim, tools=[hotel_mcp.tool()], input=f"call hotel_ops issue_refund {json.dumps(args)}")

    call = items(approve(sim, hotel_mcp, first))[0]

    assert call.status == "failed" and call.output is None
    assert call.error.type == "mcp_tool_execution_error"
    assert "only 309.00 EUR" in call.error.content[0]["text"]
    assert hotel_mcp.state()["rooms"]["1205"]["folio"]["refunds"] == []


def test_a_tool_that_needs_no_approval_runs_at_once(sim, hotel_mcp):
    tool = hotel_mcp.tool(require_approval={"never": {"read_only": True}})

    response = create(sim, tools=[tool], input='call hotel_ops get_room_status {"room": "1410"}')

    assert [item.type for item in response.output] == ["mcp_list_tools", "mcp_call", "message"]
    call = items(response)[1]
    assert call.approval_request_id is None
    assert json.loads(call.output)["guests"] == ["Marco Bellini"]


def test_the_sse_transport_works_too(sim, hotel_mcp):
    tool = hotel_mcp.tool(transport="sse", require_approval="never")

    response = create(sim, tools=[tool], input='call hotel_ops set_room_lighting {"room": "1204", "scene": "night"}')

    assert response.output[1].status == "completed"
    assert hotel_mcp.state()["rooms"]["1204"]["lighting"] == {"level": 10, "scene": "night"}


def test_tools_are_not_listed_again_while_the_listing_is_in_context(sim, hotel_mcp):
    first = create(sim, tools=[hotel_mcp.tool()], input="Hello")

    second = create(sim, tools=[hotel_mcp.tool()], previous_response_id=first.id, input=unlock())

    assert [item.type for item in first.output] == ["mcp_list_tools", "message"]
    assert [item.type for item in second.output] == ["mcp_approval_request"]


def test_an_ordinary_message_gets_a_reply(sim):
    response = create(sim, input="What time is breakfast?")

    assert [item.type for item in response.output] == ["message"]
    assert "What time is breakfast?" in response.output_text


def test_a_call_to_a_tool_the_server_lacks_gets_an_apology(sim, hotel_mcp):
    response = create(sim, tools=[hotel_mcp.tool()], input='call hotel_ops open_safe {"room": "1204"}')

    assert [item.type for item in response.output] == ["mcp_list_tools", "message"]
    assert "can't use open_safe" in response.output_text


def test_the_earlier_items_can_be_resent_instead_of_previous_response_id(sim, hotel_mcp):
    first = create(sim, tools=[hotel_mcp.tool()], input=unlock(), store=False)
    answer = {"type": "mcp_approval_response", "approve": True, "approval_request_id": first.output[1].id}

    items = [item.model_dump(exclude_none=True) for item in first.output]
    second = create(sim, tools=[hotel_mcp.tool()], input=[*items, answer])

    assert sim.state.responses.keys() == {second.id}
    assert [item.type for item in second.output] == ["mcp_call", "message"]
    assert hotel_mcp.state()["rooms"]["1204"]["door_locked"] is False


def test_echoed_tools_keep_no_header_values_and_no_url_path(sim, hotel_mcp):
    response = create(sim, tools=[hotel_mcp.tool()], input="Hi")

    [tool] = response.tools
    assert tool.headers is None
    assert tool.server_url == hotel_mcp.base_url
    assert hotel_mcp.api_key not in json.dumps(sim.state.responses[response.id]["response"])


def test_a_stored_response_can_be_retrieved(sim, hotel_mcp):
    response = create(sim, tools=[hotel_mcp.tool()], input=unlock())

    assert sim.client.responses.retrieve(response.id) == response
    with pytest.raises(openai.NotFoundError):
        sim.client.responses.retrieve("resp_missing")


def test_a_server_that_cannot_be_listed_is_424(sim, hotel_mcp):
    tool = hotel_mcp.tool(headers={"X-API-Key": "wrong"})

    with pytest.raises(openai.APIStatusError) as raised:
        sim.client.responses.create(model=MODEL, tools=[tool], input=unlock())

    assert raised.value.status_code == 424
    body: Any = raised.value.body  # the JSON error body, as the SDK parsed it
    assert body["message"] == (
        "Error retrieving tool list from MCP server: 'hotel_ops'. Http status code: 424 (Failed Dependency)"
    )
    assert sim.state.responses == {}


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"input": "hi"}, "missing_required_parameter", "model"),
        (
            {"model": MODEL, "input": "hi", "previous_response_id": "resp_nope"},
            "previous_response_not_found",
            "previous_response_id",
        ),
        ({"model": MODEL, "input": 42}, "invalid_type", "input"),
        ({"model": MODEL, "input": "hi", "stream": True}, "invalid_value", "stream"),
        (
            {"model": MODEL, "input": "hi", "tools": [{"type": "mcp", "server_label": "x"}]},
            "missing_required_parameter",
            "tools[0].server_url",
        ),
        (
            {"model": MODEL, "input": [{"type": "mcp_approval_response", "approval_request_id": "mcpr_1"}]},
            "invalid_value",
            "input[0]",
        ),
    ],
)
def test_bad_requests_are_400(sim, body, code, param):
    response = sim.post("/v1/responses", body)

    assert_openai_error(response, 400, code, param)
    assert sim.state.responses == {}


def test_duplicate_server_labels_are_400(sim, hotel_mcp):
    response = sim.post("/v1/responses", {"model": MODEL, "input": "hi", "tools": [hotel_mcp.tool(), hotel_mcp.tool()]})

    assert_openai_error(response, 400, "invalid_value", "tools[1].server_label")


def test_an_approval_for_an_unknown_request_is_400(sim, hotel_mcp):
    first = create(sim, tools=[hotel_mcp.tool()], input=unlock())
    answer = {"type": "mcp_approval_response", "approve": True, "approval_request_id": "mcpr_unknown"}

    response = sim.post(
        "/v1/responses",
        {"model": MODEL, "tools": [hotel_mcp.tool()], "previous_response_id": first.id, "input": [answer]},
    )

    assert_openai_error(response, 400, "invalid_value", "input")
    assert hotel_mcp.state()["activity"] == []


def test_an_approval_answered_twice_runs_the_tool_once(sim, hotel_mcp):
    first = create(sim, tools=[hotel_mcp.tool()], input=unlock())
    second = approve(sim, hotel_mcp, first)

    answer = {"type": "mcp_approval_response", "approve": True, "approval_request_id": first.output[1].id}
    response = sim.post(
        "/v1/responses",
        {"model": MODEL, "tools": [hotel_mcp.tool()], "previous_response_id": second.id, "input": [answer]},
    )

    assert_openai_error(response, 400, "invalid_value", "input")
    assert [a["action"] for a in hotel_mcp.state()["activity"]] == ["unlock_door"]


def test_resending_an_item_that_previous_response_id_brings_is_a_duplicate(sim, hotel_mcp):
    first = create(sim, tools=[hotel_mcp.tool()], input=unlock())
    request = first.output[1]
    answer = {"type": "mcp_approval_response", "approve": True, "approval_request_id": request.id}

    response = sim.post(
        "/v1/responses",
        {
            "model": MODEL,
            "tools": [hotel_mcp.tool()],
            "previous_response_id": first.id,
            "input": [{"type": "item_reference", "id": request.id}, answer],
        },
    )

    assert_openai_error(response, 400, "invalid_value", "input[0]")
    assert "Duplicate item" in response.json()["error"]["message"]


def test_resuming_without_the_tool_definition_is_400(sim, hotel_mcp):
    first = create(sim, tools=[hotel_mcp.tool()], input=unlock())
    answer = {"type": "mcp_approval_response", "approve": True, "approval_request_id": first.output[1].id}

    response = sim.post("/v1/responses", {"model": MODEL, "previous_response_id": first.id, "input": [answer]})

    assert_openai_error(response, 400, "invalid_value", "tools")
    assert hotel_mcp.state()["rooms"]["1204"]["door_locked"] is True
