"""`POST /v1/responses` (and `GET /v1/responses/{id}`) with remote MCP tools, approvals and
`previous_response_id` resumption (REALTIME_PROTOCOL.md section 9).

The "model" is the same script as the Realtime side (simulator/script.py): a user message
`call <server_label> <tool_name> <json args>` makes it call that tool; anything else gets a reply.

    first request   → output [mcp_list_tools (mcpl_), mcp_approval_request (mcpr_)]   approval required
                    → output [mcp_list_tools, mcp_call, message]                      no approval required
    resume          previous_response_id + input [{type: mcp_approval_response, approve, approval_request_id}]
                    → output [mcp_call (approval_request_id set, output or error), message]   approved
                    → output [message]                                                         denied

Errors inside an `mcp_call` use the Responses error union (section 7.3): `mcp_protocol_error`,
`mcp_tool_execution_error`, `http_error`, not Realtime's names. Listing failure is HTTP 424.

Faults for retry tests (state.ResponsesFaults): every request, once read, waits `latency` seconds,
then, while `fail_count` is above zero, fails with `fail_status` and OpenAI's error body for it,
before anything is processed or stored. A request whose client gave up during the latency is
processed all the same.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from simulator import mcp_client, script
from simulator.http_common import ApiError, authenticate, json_body
from simulator.responses_input import echo_tool, input_items, mcp_tools, message_text, new_item_id
from simulator.state import SimulatorState


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


# -- output items --------------------------------------------------------------------------------


def _message(text: str) -> dict[str, Any]:
    return {
        "id": new_item_id("msg"),
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def _responses_error(error: dict[str, Any]) -> dict[str, Any]:
    """Section 7.3: the Realtime error union (mcp_client's shape) in the Responses API's names."""
    if error["type"] == "protocol_error":
        return {"type": "mcp_protocol_error", "code": int(error.get("code") or -32603), "message": error["message"]}
    if error["type"] == "tool_execution_error":
        return {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": error["message"]}]}
    return {"type": "http_error", "code": int(error.get("code") or 502), "message": error["message"]}


async def _run_call(
    tool_cfg: dict[str, Any], name: str, arguments: str, approval_request_id: str | None
) -> list[dict[str, Any]]:
    output, error = await mcp_client.call_tool(tool_cfg, name, arguments)
    call = {
        "id": new_item_id("mcp"),
        "type": "mcp_call",
        "server_label": tool_cfg["server_label"],
        "name": name,
        "arguments": arguments,
        "approval_request_id": approval_request_id,
        "output": output,
        "error": _responses_error(error) if error else None,
        "status": "failed" if error else "completed",
    }
    return [call, _message(script.result_text(name, output, error))]


# -- faults --------------------------------------------------------------------------------------

# OpenAI's error bodies for these statuses (type, message, code) [OpenAI error-codes guide; the
# 429 as the SDK's RateLimitError carries it].
_FAULTS: dict[int, tuple[str, str, str | None]] = {
    429: ("requests", "Rate limit reached for requests. Please try again in 1s.", "rate_limit_exceeded"),
    500: ("server_error", "The server had an error while processing your request. Sorry about that!", None),
    502: ("server_error", "Bad gateway.", None),
    503: ("server_error", "The server is overloaded or not ready yet.", None),
    504: ("server_error", "Gateway timeout.", None),
}


async def _apply_faults(sim: SimulatorState) -> None:
    faults = sim.responses_faults
    faults.received += 1
    failing = faults.fail_count > 0
    if failing:
        faults.fail_count -= 1  # counted on arrival: concurrent requests each take their own
    if faults.latency:
        await asyncio.sleep(faults.latency)
    if failing:
        kind, message, code = _FAULTS[faults.fail_status]
        raise ApiError(faults.fail_status, message, type=kind, code=code)


async def faults_endpoint(request: Request) -> Response:
    """`GET /sim/responses/faults`: the current faults and how many requests came;
    `POST` with any of `fail_count`, `fail_status`, `latency` sets them (the rest stay)."""
    sim: SimulatorState = request.app.state.sim
    authenticate(request)
    faults = sim.responses_faults
    if request.method == "POST":
        body = await json_body(request)
        count, status, latency = (
            body.get("fail_count", faults.fail_count),
            body.get("fail_status", faults.fail_status),
            body.get("latency", faults.latency),
        )
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ApiError(400, "'fail_count' must be 0 or more.", code="invalid_value", param="fail_count")
        if status not in _FAULTS:
            raise ApiError(
                400, f"'fail_status' must be one of {sorted(_FAULTS)}.", code="invalid_value", param="fail_status"
            )
        if not isinstance(latency, int | float) or isinstance(latency, bool) or not 0 <= latency <= 600:
            raise ApiError(400, "'latency' must be 0 to 600 seconds.", code="invalid_value", param="latency")
        faults.fail_count, faults.fail_status, faults.latency = count, status, float(latency)
    return JSONResponse(faults.to_dict())


# -- the endpoint --------------------------------------------------------------------------------


async def create_response(request: Request) -> Response:
    sim: SimulatorState = request.app.state.sim
    authenticate(request)
    # The body first: a client that gives up during the latency has still sent its request,
    # which is then processed all the same (as OpenAI would), unseen by that client.
    body = await json_body(request)
    await _apply_faults(sim)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "Missing required parameter: 'model'.", code="missing_required_parameter", param="model")
    if body.get("stream"):
        raise ApiError(
            400,
            "The simulator answers responses.create without streaming only; omit 'stream'.",
            code="invalid_value",
            param="stream",
        )
    tools = mcp_tools(body.get("tools"))
    new_items = input_items(body.get("input"))

    previous_id = body.get("previous_response_id")
    context: list[dict[str, Any]] = []
    if previous_id is not None:
        stored = sim.responses.get(previous_id)
        if stored is None:
            raise ApiError(
                400,
                f"Previous response with id '{previous_id}' not found.",
                code="previous_response_not_found",
                param="previous_response_id",
            )
        context = list(stored["context"])
    known = {item["id"] for item in context if "id" in item}
    for i, item in enumerate(new_items):
        ref = (
            item["id"]
            if item.get("type") in ("mcp_list_tools", "mcp_approval_request", "mcp_call", "item_reference")
            else None
        )
        if ref is not None and ref in known:
            # vercel/ai#18605: resending an item that previous_response_id already brings is a 400.
            raise ApiError(400, f"Duplicate item found with id {ref}.", code="invalid_value", param=f"input[{i}]")
        if item.get("type") == "item_reference":
            raise ApiError(400, f"Item with id '{ref}' not found.", code="invalid_value", param=f"input[{i}]")
    context += new_items

    output: list[dict[str, Any]] = []
    # Section 9: every server gets listed once; while its mcp_list_tools item stays in context it is not listed again.
    listed = {item["server_label"]: item for item in context if item.get("type") == "mcp_list_tools"}
    for label, tool_cfg in tools.items():
        if label in listed:
            continue
        try:
            server_tools = await mcp_client.list_tools(tool_cfg)
        except mcp_client.McpListError as exc:
            raise ApiError(
                424,
                f"Error retrieving tool list from MCP server: '{label}'. Http status code: 424 (Failed Dependency)",
                # [INFERRED] the type and code; section 9 documents the status and the message.
                type="external_connector_error",
                code="http_error",
                param="tools",
            ) from exc
        item = {
            "id": new_item_id("mcpl"),
            "type": "mcp_list_tools",
            "server_label": label,
            "tools": server_tools,
            "error": None,
        }
        listed[label] = item
        output.append(item)

    output += await _turn(context, new_items, tools, listed)
    response = _response_object(
        body, model=model, output=output, tools=tools, previous_id=previous_id, new_items=new_items
    )
    if body.get("store", True):
        sim.responses[response["id"]] = {"response": response, "context": context + output}
    return JSONResponse(response)


async def _turn(
    context: list[dict[str, Any]],
    new_items: list[dict[str, Any]],
    tools: dict[str, dict[str, Any]],
    listed: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """What the scripted model does with this request's input."""
    approvals = [i for i in new_items if i.get("type") == "mcp_approval_response"]
    if approvals:
        output: list[dict[str, Any]] = []
        for answer in approvals:
            output += await _answer_approval(answer, context, tools)
        return output
    user_texts = [message_text(i) for i in new_items if i.get("type") == "message" and i.get("role", "user") == "user"]
    if not user_texts:
        return [_message(script.reply_text(""))]
    available = {label: item["tools"] for label, item in listed.items() if label in tools}
    plan = script.plan_message(user_texts[-1], available)
    if isinstance(plan, script.Say):
        return [_message(plan.text)]
    label, name, arguments = plan.server_label, plan.name, plan.arguments_json
    tool = next(t for t in listed[label]["tools"] if t["name"] == name)
    tool_cfg = tools[label]
    if mcp_client.requires_approval(tool_cfg, tool):
        return [
            {
                "id": new_item_id("mcpr"),
                "type": "mcp_approval_request",
                "server_label": label,
                "name": name,
                "arguments": arguments,
            }
        ]
    return await _run_call(tool_cfg, name, arguments, None)


async def _answer_approval(
    answer: dict[str, Any], context: list[dict[str, Any]], tools: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    request_id = answer["approval_request_id"]
    approval = next((i for i in context if i.get("type") == "mcp_approval_request" and i.get("id") == request_id), None)
    if approval is None:
        raise ApiError(400, f"No approval request found with id '{request_id}'.", code="invalid_value", param="input")
    answered = [
        i for i in context if i.get("type") == "mcp_approval_response" and i.get("approval_request_id") == request_id
    ]
    if len(answered) > 1 or any(
        i.get("type") == "mcp_call" and i.get("approval_request_id") == request_id for i in context
    ):
        raise ApiError(
            400, f"Approval request '{request_id}' has already been answered.", code="invalid_value", param="input"
        )
    label = approval["server_label"]
    if label not in tools:
        # Section 9: the full tool definition must be sent on every request; nothing of it was stored.
        raise ApiError(
            400,
            f"The approval request '{request_id}' is for MCP server '{label}', which is not in 'tools'.",
            code="invalid_value",
            param="tools",
        )
    if not answer["approve"]:
        return [_message(script.denied_text(approval["name"], answer.get("reason")))]
    return await _run_call(tools[label], approval["name"], approval["arguments"], request_id)


def _response_object(
    body: dict[str, Any],
    *,
    model: str,
    output: list[dict[str, Any]],
    tools: dict[str, dict[str, Any]],
    previous_id: str | None,
    new_items: list[dict[str, Any]],
) -> dict[str, Any]:
    now = time.time()
    input_tokens = sum(_tokens(json.dumps(i)) for i in new_items)
    output_tokens = sum(_tokens(json.dumps(i)) for i in output)
    return {
        "id": new_item_id("resp"),
        "object": "response",
        "created_at": int(now),
        "completed_at": int(now),
        "status": "completed",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": previous_id,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": [echo_tool(t) for t in tools.values()],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


async def retrieve_response(request: Request) -> Response:
    sim: SimulatorState = request.app.state.sim
    authenticate(request)
    stored = sim.responses.get(request.path_params["response_id"])
    if stored is None:
        raise ApiError(404, f"Response with id '{request.path_params['response_id']}' not found.", param="response_id")
    return JSONResponse(stored["response"])
