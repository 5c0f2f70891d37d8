"""What every HTTP handler of the simulator shares: OpenAI's error shape, its authentication and
its JSON bodies.

Handlers find the process state at `request.app.state.sim` (a SimulatorState). Errors use OpenAI's JSON
error shape `{"error": {"message", "type", "param", "code"}}` with OpenAI's status codes.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from simulator.state import ClientSecret, SimulatorState


class ApiError(Exception):
    """An OpenAI-shaped HTTP error; raised anywhere below a handler, rendered by `api()`."""

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


def api(handler: Any) -> Any:
    """The route endpoint of `handler`: an ApiError raised below it becomes OpenAI's error response."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint
