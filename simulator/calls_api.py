"""The Realtime HTTP side of the simulator: client secrets, WebRTC calls and call control.

    POST /v1/realtime/client_secrets          mint an ek_ secret for a session config (section 3.2 item 3)
    POST /v1/realtime/calls                   WebRTC: SDP offer in, fake SDP answer out (section 3.2 item 5)
    POST /v1/realtime/calls/{id}/accept       SIP call control (section 8.3)
    POST /v1/realtime/calls/{id}/reject|refer|hangup

A SIP or WebRTC call owns a RealtimeSession (simulator/realtime.py) from its accept on; sidebands
join it with `GET /v1/realtime?call_id=`.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from simulator import events
from simulator.http_common import ApiError, authenticate, call_not_found, json_body
from simulator.ids import new_id
from simulator.realtime import RealtimeSession
from simulator.session_config import InvalidRequest, merge_session
from simulator.state import Call, ClientSecret, SimulatorState

DEFAULT_MODEL = "gpt-realtime"
SECRET_SECONDS_DEFAULT = 600
SECRET_SECONDS_MIN, SECRET_SECONDS_MAX = 10, 7200


def new_call_id() -> str:
    # Section 8.1: call ids look like rtc_479a275623b54bdb9b6fbae2f7cbd408.
    return f"rtc_{secrets.token_hex(16)}"


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


def find_call(request: Request, *, statuses: tuple[str, ...]) -> Call:
    sim: SimulatorState = request.app.state.sim
    call = sim.calls.get(request.path_params["call_id"])
    # [INFERRED] A call that has ended, or was already rejected or referred, is as gone as an unknown one.
    if call is None or call.status not in statuses:
        raise call_not_found()
    return call


async def accept_call(request: Request) -> Response:
    sim: SimulatorState = request.app.state.sim
    authenticate(request)
    call = find_call(request, statuses=("incoming", "accepted"))
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
    call = find_call(request, statuses=("incoming",))
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
    call = find_call(request, statuses=("accepted",))
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
    call = find_call(request, statuses=("incoming", "accepted"))
    call.status = "ended"
    await end_session(call, "call ended")
    return Response(status_code=200)
