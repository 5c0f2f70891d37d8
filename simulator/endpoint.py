"""`GET /v1/realtime`: authentication and handshake failures (REALTIME_PROTOCOL.md section 1.3), then a
RealtimeSession of its own (`?model=`) or of a call (`?call_id=`).

Reference: https://platform.openai.com/docs/guides/realtime-websocket
"""

from __future__ import annotations

import json
import time

from starlette.websockets import WebSocket

from simulator import events
from simulator.realtime import RealtimeSession
from simulator.session_config import InvalidRequest
from simulator.state import SimulatorState
from simulator.validation import checked


async def _refuse(websocket: WebSocket, message: str, code: str | None, close_code: int) -> None:
    """Section 1.3: after the 101, one error event, then the close with reason `<type>.<code>`."""
    payload = events.error(message, code=code)
    if websocket.app.state.sim.config.validate_events:
        checked(payload)
    await websocket.send_text(json.dumps(payload))
    reason = "invalid_request_error" + (f".{code}" if code else "")
    await websocket.close(code=close_code, reason=reason)


def _mask(key: str) -> str:
    return f"{key[:5]}…{key[-4:]}" if len(key) > 12 else "***"


def _credentials(websocket: WebSocket) -> str | None:
    authorization = websocket.headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    # Section 1.1: browsers send the key as the subprotocol `openai-insecure-api-key.<key>`.
    for protocol in websocket.scope.get("subprotocols") or []:
        if protocol.startswith("openai-insecure-api-key."):
            return protocol.removeprefix("openai-insecure-api-key.")
    return None


async def realtime_endpoint(websocket: WebSocket) -> None:
    """`GET /v1/realtime?model=…` (a new session) or `?call_id=…` (attach to a call's session)."""
    state: SimulatorState = websocket.app.state.sim
    config = state.config
    # Section 1.1 [INFERRED]: select "realtime" when offered, or Chromium fails the handshake.
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)

    key = _credentials(websocket)
    secret = None
    if key is None:
        await _refuse(websocket, "Missing bearer or basic authentication in header", None, 3000)
        return
    if key != config.api_key:
        secret = state.client_secrets.get(key)
        if secret is None or secret.expires_at < time.time():
            await _refuse(
                websocket,
                f"Incorrect API key provided: {_mask(key)}. "
                "You can find your API key at https://platform.openai.com/account/api-keys.",
                "invalid_api_key",
                3000,
            )
            return
    if "openai-beta" in websocket.headers:
        await _refuse(
            websocket,
            "The 'OpenAI-Beta' header is not supported by the GA Realtime API; remove it.",
            "beta_api_shape_disabled",
            4000,
        )
        return

    call_id = websocket.query_params.get("call_id")
    if call_id is not None:
        call = state.calls.get(call_id)
        if call is None or call.session is None or call.session.ended:
            await _refuse(websocket, "No session found for the provided call_id", "call_id_not_found", 4000)
            return
        await call.session.attach(websocket)
        return

    stored = dict(secret.session_config) if secret is not None else {}
    model = websocket.query_params.get("model") or stored.get("model")
    if not model:
        await _refuse(websocket, "Missing required parameter: 'model'.", "missing_model", 4000)
        return
    if model not in config.models:
        await _refuse(
            websocket,
            f"Invalid value: '{model}'. Supported values are: {', '.join(config.models)}.",
            "invalid_model",
            4000,
        )
        return
    try:
        session = RealtimeSession(state, session_config=stored, model=model)
    except InvalidRequest as exc:
        await _refuse(websocket, exc.message, exc.code, 4000)
        return
    try:
        await session.attach(websocket)
    finally:
        # Section 10.12 [INFERRED]: a ?model= session belongs to its socket.
        await session.end(1000, "session ended")
