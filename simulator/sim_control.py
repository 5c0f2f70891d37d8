"""The simulator's own controls (not OpenAI's API): the telephone network's side of SIP calls, and
what reached "OpenAI".

    POST /sim/calls                           a caller dials in (signed realtime.call.incoming webhook)
    GET  /sim/calls, /sim/calls/{id}          the calls and their state
    POST /sim/calls/{id}/say|hangup           the caller talks, or hangs up
    GET  /sim/approvals                       every mcp_approval_response received over a Realtime socket
    GET  /sim/response_creates                every response.create received over one, with its instructions
    GET  /sim/listings                        every MCP listing a Realtime session ran: imported, left out, why
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from simulator import webhooks
from simulator.calls_api import end_session, find_call, new_call_id
from simulator.http_common import ApiError, authenticate, call_not_found, json_body
from simulator.state import Call, SimulatorState


def call_to_dict(call: Call) -> dict[str, Any]:
    return {
        "call_id": call.call_id,
        "kind": call.kind,
        "status": call.status,
        "sip_headers": call.sip_headers,
        "session_config": call.session_config,
        "has_session": call.session is not None,
        "sidebands": call.session.socket_count if call.session is not None else 0,
        "refer_target": call.refer_target,
        "reject_status": call.reject_status,
        "created_at": call.created_at,
    }


async def sim_place_call(request: Request) -> Response:
    """A caller dials in: create the SIP call and send the signed `realtime.call.incoming` webhook."""
    sim: SimulatorState = request.app.state.sim
    authenticate(request)
    body = await json_body(request, required=False)
    caller = str(body.get("from") or "+14155550100")
    callee = str(body.get("to") or "+18005551212")
    url = body.get("webhook_url") or sim.config.webhook_url
    secret = body.get("webhook_secret") or sim.config.webhook_secret
    times = body.get("deliveries", 1)
    if not url:
        raise ApiError(
            400, "No webhook URL: pass 'webhook_url' or start the simulator with --webhook-url.", param="webhook_url"
        )
    if not secret:
        raise ApiError(
            400, "No webhook secret: start the simulator with --webhook-secret whsec_...", param="webhook_secret"
        )
    if not isinstance(times, int) or isinstance(times, bool) or not 1 <= times <= 5:
        raise ApiError(400, "'deliveries' must be an integer from 1 to 5.", code="invalid_value", param="deliveries")
    call_id = new_call_id()
    call = Call(
        call_id=call_id,
        kind="sip",
        sip_headers=[
            {"name": "From", "value": f"sip:{caller}@sip.example.com"},
            {"name": "To", "value": f"sip:{callee}@sip.example.com"},
            {"name": "Call-ID", "value": f"{secrets.token_hex(8)}@sim.countersign.invalid"},
        ],
        created_at=time.time(),
    )
    sim.calls[call_id] = call
    event = webhooks.call_incoming_event(call, sip_media_security=body.get("sip_media_security", "srtp"))
    deliveries = await webhooks.deliver(str(url), event, secret=str(secret), times=times)
    return JSONResponse(
        {"call_id": call_id, "event_id": event["id"], "deliveries": [d.to_dict() for d in deliveries]}, status_code=201
    )


async def sim_list_calls(request: Request) -> Response:
    sim: SimulatorState = request.app.state.sim
    authenticate(request)
    return JSONResponse({"data": [call_to_dict(c) for c in sim.calls.values()]})


async def sim_get_call(request: Request) -> Response:
    sim: SimulatorState = request.app.state.sim
    authenticate(request)
    call = sim.calls.get(request.path_params["call_id"])
    if call is None:
        raise call_not_found()
    return JSONResponse(call_to_dict(call))


async def sim_say(request: Request) -> Response:
    """The caller speaks: a user turn with this text goes into the call's session."""
    authenticate(request)
    call = find_call(request, statuses=("accepted",))
    body = await json_body(request)
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "Missing required parameter: 'text'.", code="missing_required_parameter", param="text")
    assert call.session is not None  # an accepted call always has one (start_session runs before the status changes)
    await call.session.inject_user_text(text)
    return JSONResponse({"call_id": call.call_id, "status": call.status})


async def sim_caller_hangup(request: Request) -> Response:
    """The caller hangs up: the call ends whether or not it was accepted, and its session closes."""
    authenticate(request)
    call = find_call(request, statuses=("incoming", "accepted"))
    call.status = "ended"
    await end_session(call, "caller hung up")
    return JSONResponse({"call_id": call.call_id, "status": call.status})


async def sim_approvals(request: Request) -> Response:
    """Every mcp_approval_response that reached the simulator over a Realtime socket, oldest
    first, with the wall-clock time of its arrival: what a test or benchmark of a console needs
    to know about what reached "OpenAI"."""
    sim: SimulatorState = request.app.state.sim
    authenticate(request)
    return JSONResponse({"data": list(sim.approvals_received)})


async def sim_response_creates(request: Request) -> Response:
    """Every response.create that reached the simulator over a Realtime socket, oldest first:
    when, in which session, whether a response was active, and the `instructions` and
    `tool_choice` it carried. What a console's tests need to check what the model was told."""
    sim: SimulatorState = request.app.state.sim
    authenticate(request)
    return JSONResponse({"data": list(sim.response_creates)})


async def sim_listings(request: Request) -> Response:
    """Every MCP listing a Realtime session ran, oldest first: the server, whether it completed or
    failed (and why), the tools imported, and the listed tools left out as OpenAI would refuse them
    (mcp_link.rules, the probe's rules), each with its reasons. What a rehearsal of "the listing
    completed with no tools" needs to see next to the probe's report."""
    sim: SimulatorState = request.app.state.sim
    authenticate(request)
    return JSONResponse({"data": list(sim.listings)})
