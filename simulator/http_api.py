"""The simulator's HTTP side: client secrets, call control, simulated SIP calls, and the Responses API.

    POST /v1/realtime/client_secrets          mint an ek_ secret for a session config (section 3.2 item 3)
    POST /v1/realtime/calls                   WebRTC: SDP offer in, fake SDP answer out (section 3.2 item 5)
    POST /v1/realtime/calls/{id}/accept       SIP call control (section 8.3)
    POST /v1/realtime/calls/{id}/reject|refer|hangup
    POST /v1/responses                        Responses API with MCP tools and approvals (section 9)
    /sim/...                                  simulator controls: place a SIP call, make the caller talk or hang up,
                                              make the next Responses calls fail or wait (/sim/responses/faults)

Handlers find the process state at `request.app.state.sim` (a SimulatorState). Errors use OpenAI's JSON
error shape `{"error": {"message", "type", "param", "code"}}` with OpenAI's status codes.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from simulator import events, webhooks
from simulator.ids import new_id
from simulator.session_config import InvalidRequest, merge_session
from simulator.state import Call, ClientSecret, SimulatorState

DEFAULT_MODEL = "gpt-realtime"
SECRET_SECONDS_DEFAULT = 600
SECRET_SECONDS_MIN, SECRET_SECONDS_MAX = 10, 7200


def new_call_id() -> str:
    # Section 8.1: call ids look like rtc_479a275623b54bdb9b6fbae2f7cbd408.
    return f"rtc_{secrets.token_hex(16)}"


# -- errors --------------------------------------------------------------------------------------


class ApiError(Exception):
    """An OpenAI-shaped HTTP error; raised anywhere below a handler, rendered by `_error_response`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status)


def call_not_found() -> ApiError:
    # Section 8.3, byte for byte: an unknown, ended or already-handled call.
    return ApiError(404, "No session found for the provided call_id", code="call_id_not_found")


def _mask(key: str) -> str:
    return key[:3] + "*" * max(len(key) - 7, 3) + key[-4:] if len(key) > 8 else "*" * len(key)


def authenticate(request: Request, *, client_secret_ok: bool = False) -> ClientSecret | None:
    """Check `Authorization: Bearer`; returns the ClientSecret when an ek_ value was used.

    Messages and codes are OpenAI's: a missing key is 401 with code null, a wrong one 401
    `invalid_api_key`. An ek_ secret is accepted only where the real API takes one (WebRTC call
    creation and the WebSocket); elsewhere it is as good as a wrong key.
    """
    sim: SimulatorState = request.app.state.sim
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using "
            "Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    if hmac.compare_digest(token.encode(), sim.config.api_key.encode()):
        return None
    secret = sim.client_secrets.get(token) if client_secret_ok else None
    if secret is not None:
        if secret.expires_at <= time.time():
            raise ApiError(401, "The client secret has expired.", code="invalid_api_key")
        return secret
    raise ApiError(
        401,
        f"Incorrect API key provided: {_mask(token)}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )


async def json_body(request: Request, *, required: bool = True) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        if required:
            raise ApiError(400, "We could not parse the JSON body of your request. (HINT: the body is empty.)")
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
            "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
        ) from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


# -- sessions ------------------------------------------------------------------------------------


def effective_session(
    sim: SimulatorState, requested: Any, *, param: str = "session", base: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The session a request asks for, over OpenAI's defaults (or over `base`, a client secret's session).

    Validation and merging are the WebSocket side's (simulator/session_config.py, checked with the SDK's
    own types), so `session.update`, client secrets and SIP accept reject exactly the same things.
    """
    if requested is None:
        requested = {}
    if not isinstance(requested, dict):
        raise ApiError(400, f"Invalid type for '{param}': expected an object.", code="invalid_type", param=param)
    model = requested.get("model") or (base or {}).get("model") or DEFAULT_MODEL
    if model not in sim.config.models:
        raise ApiError(400, f"Invalid model: '{model}'.", code="invalid_model", param=f"{param}.model")
    current = base if base is not None else events.default_session(model, new_id("sess"))
    try:
        session, _ = merge_session(current, {**requested, "model": model}, {}, path=param, stored=True)
    except InvalidRequest as exc:
        raise ApiError(400, exc.message, code=exc.code, param=exc.param) from None
    return session


async def start_session(sim: SimulatorState, call: Call, session_config: dict[str, Any]) -> None:
    """Attach a running Realtime session to the call (sidebands join it with ?call_id=)."""
    from simulator.realtime import RealtimeSession  # the WebSocket side; imported late to keep the modules apart

    call.session_config = session_config
    session = RealtimeSession(sim, session_config=session_config, model=session_config["model"], call=call)
    await session.start()
    call.session = session


async def end_session(call: Call, reason: str) -> None:
    if call.session is not None:
        await call.session.end(reason=reason)


# -- /v1/realtime/client_secrets -----------------------------------------------------------------


async def create_client_secret(request: Request) -> Response:
    sim: SimulatorState = request.app.state.sim
    authenticate(request)
    body = await json_body(request, required=False)
    expires = body.get("expires_after") or {}
    if not isinstance(expires, dict):
        raise ApiError(
            400, "Invalid type for 'expires_after': expected an object.", code="invalid_type", param="expires_after"
        )
    if expires.get("anchor", "created_at") != "created_at":
        raise ApiError(
            400,
            "Invalid value: 'expires_after.anchor' must be 'created_at'.",
            code="invalid_value",
            param="expires_after.anchor",
        )
    seconds = expires.get("seconds", SECRET_SECONDS_DEFAULT)
    if (
        not isinstance(seconds, int)
        or isinstance(seconds, bool)
        or not SECRET_SECONDS_MIN <= seconds <= SECRET_SECONDS_MAX
    ):
        raise ApiError(
            400,
            f"Invalid 'expires_after.seconds': expected an integer from {SECRET_SECONDS_MIN} to {SECRET_SECONDS_MAX}.",
            code="invalid_value",
            param="expires_after.seconds",
        )
    session = effective_session(sim, body.get("session"))
    secret = ClientSecret(
        value=f"ek_{secrets.token_hex(16)}", expires_at=int(time.time()) + seconds, session_config=session
    )
    sim.client_secrets[secret.value] = secret
    return JSONResponse({"value": secret.value, "expires_at": secret.expires_at, "session": session})


# -- /v1/realtime/calls (WebRTC) -----------------------------------------------------------------


def _sdp_answer(offer: str) -> str:
    """A well-formed answer to the offer's media sections. No media ever flows: the simulator speaks
    through the sideband WebSocket only, so ICE candidates and the fingerprint are placeholders."""
    lines = [line.strip() for line in offer.replace("\r\n", "\n").split("\n") if line.strip()]
    sections: list[tuple[str, str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append((line.split()[0][2:], str(len(sections))))
        elif line.startswith("a=mid:") and sections:
            sections[-1] = (sections[-1][0], line[6:])
    ufrag, pwd = secrets.token_hex(4), secrets.token_hex(12)
    fingerprint = ":".join(f"{b:02X}" for b in secrets.token_bytes(32))
    out = [
        "v=0",
        f"o=- {secrets.randbelow(10**18)} 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE " + " ".join(mid for _, mid in sections),
        "a=msid-semantic: WMS *",
    ]
    for media, mid in sections:
        if media == "application":
            out += ["m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "c=IN IP4 0.0.0.0", "a=sctp-port:5000"]
        else:
            out += [
                f"m={media} 9 UDP/TLS/RTP/SAVPF 111",
                "c=IN IP4 0.0.0.0",
                "a=rtpmap:111 opus/48000/2",
                "a=sendrecv",
                "a=rtcp-mux",
            ]
        out += [
            f"a=mid:{mid}",
            f"a=ice-ufrag:{ufrag}",
            f"a=ice-pwd:{pwd}",
            f"a=fingerprint:sha-256 {fingerprint}",
            "a=setup:passive",
            "a=candidate:1 1 udp 2130706431 127.0.0.1 3478 typ host",
        ]
    return "\r\n".join(out) + "\r\n"


async def create_call(request: Request) -> Response:
    sim: SimulatorState = request.app.state.sim
    secret = authenticate(request, client_secret_ok=True)
    content_type = request.headers.get("content-type", "")
    requested: Any = None
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        sdp = form.get("sdp")
        if hasattr(sdp, "read"):
            sdp = (await sdp.read()).decode()  # type: ignore[union-attr]
        raw_session = form.get("session")
        if hasattr(raw_session, "read"):
            raw_session = (await raw_session.read()).decode()  # type: ignore[union-attr]
        if raw_session:
            try:
                requested = json.loads(str(raw_session))
            except json.JSONDecodeError:
                raise ApiError(
                    400, "The 'session' part is not valid JSON.", code="invalid_json", param="session"
                ) from None
    elif content_type.startswith("application/sdp"):
        sdp = (await request.body()).decode(errors="replace")
    else:
        raise ApiError(400, "Send the SDP offer as multipart/form-data (sdp, session) or as application/sdp.")
    if not isinstance(sdp, str) or not sdp.lstrip().startswith("v=0") or "\nm=" not in sdp.replace("\r\n", "\n"):
        raise ApiError(400, "Invalid 'sdp': expected an SDP offer with at least one media section.", param="sdp")
    if secret is not None:
        # The ek_ secret carries the session the server minted; a session part may only refine it.
        session = effective_session(sim, requested, base=secret.session_config)
    elif requested is None:
        raise ApiError(
            400, "Missing required parameter: 'session'.", code="missing_required_parameter", param="session"
        )
    else:
        session = effective_session(sim, requested)
    call = Call(call_id=new_call_id(), kind="webrtc", status="accepted", created_at=time.time())
    sim.calls[call.call_id] = call
    await start_session(sim, call, session)
    return Response(
        _sdp_answer(sdp),
        status_code=201,
        media_type="application/sdp",
        headers={"Location": f"/v1/realtime/calls/{call.call_id}"},
    )


# -- /v1/realtime/calls/{call_id}/... (section 8.3) ----------------------------------------------


def _call(request: Request, *, statuses: tuple[str, ...]) -> Call:
    sim: SimulatorState = request.app.state.sim
    call = sim.calls.get(request.path_params["call_id"])
    # [INFERRED] A call that has ended, or was already rejected or referred, is as gone as an unknown one.
    if call is None or call.status not in statuses:
        raise call_not_found()
    return call


async def accept_call(request: Request) -> Response:
    sim: SimulatorState = request.app.state.sim
    authenticate(request)
    call = _call(request, statuses=("incoming", "accepted"))
    body = await json_body(request)
    if body.get("type") != "realtime":
        raise ApiError(400, "Missing required parameter: 'type'.", code="missing_required_parameter", param="type")
    if call.status == "accepted":
        # [INFERRED] OpenAI does not document a second accept; refusing it keeps the first session intact.
        raise ApiError(400, f"Call {call.call_id} has already been accepted.", code="invalid_value", param="call_id")
    session = effective_session(sim, body, param="session")
    await start_session(sim, call, session)
    call.status = "accepted"
    return Response(status_code=200)


async def reject_call(request: Request) -> Response:
    authenticate(request)
    call = _call(request, statuses=("incoming",))
    body = await json_body(request, required=False)
    status_code = body.get("status_code", 603)
    if not isinstance(status_code, int) or isinstance(status_code, bool) or not 400 <= status_code <= 699:
        raise ApiError(
            400,
            "Invalid 'status_code': expected a SIP error status (400-699).",
            code="invalid_value",
            param="status_code",
        )
    call.status, call.reject_status = "rejected", status_code
    return Response(status_code=200)


async def refer_call(request: Request) -> Response:
    authenticate(request)
    call = _call(request, statuses=("accepted",))
    body = await json_body(request)
    target = body.get("target_uri")
    if not isinstance(target, str) or not target:
        raise ApiError(
            400, "Missing required parameter: 'target_uri'.", code="missing_required_parameter", param="target_uri"
        )
    if not target.startswith(("tel:", "sip:", "sips:")):
        raise ApiError(
            400, "Invalid 'target_uri': expected a tel: or sip: URI.", code="invalid_value", param="target_uri"
        )
    if call.kind != "sip":
        raise ApiError(400, "Only SIP calls can be referred.", code="invalid_value", param="call_id")
    call.status, call.refer_target = "referred", target
    await end_session(call, "call referred")
    return Response(status_code=200)


async def hangup_call(request: Request) -> Response:
    authenticate(request)
    call = _call(request, statuses=("incoming", "accepted"))
    call.status = "ended"
    await end_session(call, "call ended")
    return Response(status_code=200)


# -- /sim: the telephone network's side ----------------------------------------------------------


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
    call = _call(request, statuses=("accepted",))
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
    call = _call(request, statuses=("incoming", "accepted"))
    call.status = "ended"
    await end_session(call, "caller hung up")
    return JSONResponse({"call_id": call.call_id, "status": call.status})


# -- routing -------------------------------------------------------------------------------------


async def sim_approvals(request: Request) -> Response:
    """Every mcp_approval_response that reached the simulator over a Realtime socket, oldest
    first, with the wall-clock time of its arrival: what a test or benchmark of a console needs
    to know about what reached "OpenAI"."""
    sim: SimulatorState = request.app.state.sim
    authenticate(request)
    return JSONResponse({"data": list(sim.approvals_received)})


def _api(handler: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def http_routes() -> list[BaseRoute]:
    from simulator.responses_api import create_response, faults_endpoint, retrieve_response

    post = ["POST"]
    return [
        Route("/v1/realtime/client_secrets", _api(create_client_secret), methods=post),
        Route("/v1/realtime/calls", _api(create_call), methods=post),
        Route("/v1/realtime/calls/{call_id}/accept", _api(accept_call), methods=post),
        Route("/v1/realtime/calls/{call_id}/reject", _api(reject_call), methods=post),
        Route("/v1/realtime/calls/{call_id}/refer", _api(refer_call), methods=post),
        Route("/v1/realtime/calls/{call_id}/hangup", _api(hangup_call), methods=post),
        Route("/v1/responses", _api(create_response), methods=post),
        Route("/v1/responses/{response_id}", _api(retrieve_response), methods=["GET"]),
        Route("/sim/calls", _api(sim_place_call), methods=post),
        Route("/sim/calls", _api(sim_list_calls), methods=["GET"]),
        Route("/sim/calls/{call_id}", _api(sim_get_call), methods=["GET"]),
        Route("/sim/calls/{call_id}/say", _api(sim_say), methods=post),
        Route("/sim/calls/{call_id}/hangup", _api(sim_caller_hangup), methods=post),
        Route("/sim/approvals", _api(sim_approvals), methods=["GET"]),
        Route("/sim/responses/faults", _api(faults_endpoint), methods=["GET", "POST"]),
    ]
