"""The client side of a relayed session, whatever server carries its WebSocket.

`RelayGate` does what the relay owes its client and OpenAI, and nothing about transport:
the handshake checks (section 1.3: the upgrade succeeds, then one `error` and a close), the
upstream session with the registered MCP servers put in, the checks on every client event,
and the scrubbing of what goes back. `RelayConsumer` (Channels, on Daphne) and `run_relay`
(a plain `websockets` server, for the voice hot path) are thin shells around it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from approvals import services
from approvals.models import ClientToken, RealtimeSession
from realtime_bridge import client, handlers, leases, limits, protocol
from realtime_bridge.session import FailureHook, UpstreamSession

log = logging.getLogger(__name__)

MAX_CLIENT_MESSAGE_CHARS = 16 * 2**20  # OpenAI accepts audio appends of up to 15 MiB
# Arrays and objects nested deeper than this are refused before they are parsed: Python's parser
# recurses once per level (RecursionError near 1,000), and so does everything that walks the
# event afterwards. 128 is serde_json's default limit; no Realtime event nests anywhere near it.
MAX_CLIENT_JSON_DEPTH = 128
TOKEN_SUBPROTOCOL = "openai-insecure-api-key."
# How long upstream may take to send its first frame (session.created, or its refusal).
FIRST_FRAME_SECONDS = 15.0


class Refused(Exception):
    """The session cannot open: send `event` (an `error`), then close with `code`/`reason`."""

    def __init__(self, message: str, *, code: str | None, close_code: int, error_type: str = "invalid_request_error"):
        super().__init__(message)
        event = json.loads(protocol.error_event(message, code=code))
        event["error"]["type"] = error_type
        self.event = protocol.dumps(event)
        self.close_code = close_code
        self.reason = f"{error_type}.{code}" if code else error_type

    @classmethod
    def by_upstream(cls, frame: str, *, close_code: int, reason: str) -> Refused:
        """Upstream refused the session (an unknown model: `error` invalid_model, then 4000):
        the client gets upstream's own `error` event and close, as if it had connected there."""
        refused = cls("The Realtime API refused the session.", code=None, close_code=close_code)
        refused.event, refused.reason = frame, reason
        return refused


def _mask(token: str) -> str:
    token = token[:80]
    return f"{token[:6]}***{token[-4:]}" if len(token) > 12 else "***"


def bearer_token(headers: dict[str, str], subprotocols: list[str]) -> str:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    for proto in subprotocols:
        if proto.startswith(TOKEN_SUBPROTOCOL):
            return proto.removeprefix(TOKEN_SUBPROTOCOL)
    return ""


def client_close_code(code: int, *, server_limited: bool = False) -> tuple[int, str]:
    """The close code to give the client for an upstream close, and a note for the reason.

    1005/1006/1015 mean "no close frame" and may not be sent in one. Daphne (autobahn) can send
    only 1000 or 3000-4999 (`server_limited`), so there upstream's 1001/1011/1012/... reach the
    client as 4001/4011/4012 and the reason says which code it was.
    """
    if code == 1000 or 3000 <= code <= 4999:
        return code, ""
    if code in (1005, 1006, 1015):
        return (4011 if server_limited else 1011), f"upstream closed with {code}"
    if 1001 <= code <= 1014:
        return (4000 + code - 1000, f"upstream closed with {code}") if server_limited else (code, "")
    return 4000, f"upstream closed with {code}"


def _open_leased(token: ClientToken, model: str) -> RealtimeSession:
    """The session row, with this process's lease on it from the start (realtime_bridge/leases.py)."""
    session = handlers.open_relay_session(token=token, model=model)
    services.hold_sessions([session.pk], holder=leases.holder_name(), seconds=leases.lease_seconds())
    return session


class RelayGate:
    def __init__(self) -> None:
        self.tools: list[dict[str, Any]] = []
        self.secret_values: list[str] = []
        self.core: UpstreamSession | None = None
        self.session_id: int | None = None

    async def admit(
        self,
        *,
        headers: dict[str, str],
        subprotocols: list[str],
        query: dict[str, list[str]],
        address: str | None = None,
        server_limited: bool = False,
    ) -> tuple[ClientToken, str]:
        """Check the handshake; returns (client token, model) or raises Refused.
        `headers` are lower-cased names; `subprotocols` what the client offered; `address` the
        client's, when this server has not counted its handshake already (run_relay has)."""
        if address is not None and not limits.HANDSHAKES.allow(address):
            # First, before any database work: a flood must cost as little as possible.
            raise Refused(
                limits.RATE_LIMITED_MESSAGE, code="rate_limit_exceeded", close_code=4008 if server_limited else 1008
            )
        if "openai-beta" in headers:
            raise Refused(
                "The OpenAI-Beta header is not supported by the GA Realtime API.",
                code="beta_api_shape_disabled",
                close_code=4000,
            )
        token_text = bearer_token(headers, subprotocols)
        if not token_text:
            raise Refused("Missing bearer or basic authentication in header", code=None, close_code=3000)
        token: ClientToken | None = await database_sync_to_async(handlers.authenticate)(token_text)
        if token is None:
            raise Refused(
                f"Incorrect API key provided: {_mask(token_text)}. "
                "Ask your Countersign administrator for a client token.",
                code="invalid_api_key",
                close_code=3000,
            )
        if "call_id" in query:
            raise Refused(
                "Countersign attaches to calls itself; connect with ?model= to start a session.",
                code="call_id_not_supported",
                close_code=4000,
            )
        model = (query.get("model") or [""])[0]
        if not model:
            raise Refused("You must provide a model parameter", code="missing_model", close_code=4000)
        if not await database_sync_to_async(limits.sessions_left)(token):
            raise Refused(
                "This client token has as many live sessions as it may hold "
                f"({settings.RELAY_MAX_SESSIONS_PER_TOKEN}). Close one first.",
                code="rate_limit_exceeded",
                close_code=4008 if server_limited else 1008,
            )
        return token, model

    async def open_upstream(
        self, token: ClientToken, model: str, *, server_limited: bool = False, on_failure: FailureHook | None = None
    ) -> UpstreamSession:
        """Open the upstream session with the registered MCP servers put in, and its session row.
        Raises Refused when upstream cannot be reached or refuses the session (with upstream's
        own `error` event and close code); on any other error, closes what it had opened (the
        upstream socket, the session row) and re-raises."""
        server_error_code = 4011 if server_limited else 1011
        try:
            upstream = await client.connect(model=model)
        except Exception as exc:
            log.warning("relay: upstream connect failed: %s", exc)
            raise Refused(
                "Countersign could not reach the Realtime API. Try again shortly.",
                code="upstream_unavailable",
                close_code=server_error_code,
                error_type="server_error",
            ) from None
        # Before any row is written or the tools are sent: a session upstream refuses (an
        # unknown model) must reach the client as upstream's error, not as a failed send.
        try:
            first = await self._first_frame(upstream, server_limited=server_limited)
        except BaseException:
            await upstream.close(code=1011, reason="server error")  # a no-op when upstream closed it
            raise
        upstream.unread(first)
        session_id: int | None = None
        try:
            session = await database_sync_to_async(_open_leased)(token, model)
            session_id = self.session_id = session.pk
            # Again with the session: a server in gateway mode gets its capability token.
            self.tools, self.secret_values = await database_sync_to_async(handlers.registered_tools)(session_id)
            if self.tools:
                # Put the registered MCP servers (with their credentials) into the upstream session.
                await upstream.send(
                    protocol.dumps(
                        {
                            "type": "session.update",
                            "event_id": protocol.new_event_id(),
                            "session": {"type": "realtime", "tools": self.tools},
                        }
                    )
                )
            self.core = UpstreamSession(upstream, session_id, on_failure=on_failure)
            self.core.start()
        except BaseException:
            await upstream.close(code=1011, reason="server error")
            if session_id is not None:
                await database_sync_to_async(handlers.close_session)(
                    session_id, code=None, reason="The session could not be opened."
                )
            raise
        return self.core

    async def _first_frame(self, upstream: client.Upstream, *, server_limited: bool) -> str | bytes:
        """Upstream's first frame: `session.created`, or an `error` followed by a close when it
        refuses the session (section 1.3), which raises Refused.by_upstream."""
        try:
            frame = await asyncio.wait_for(upstream.recv(), FIRST_FRAME_SECONDS)
        except client.UpstreamClosed as closed:
            code, _ = client_close_code(closed.code, server_limited=server_limited)
            raise Refused(
                f"The Realtime API closed the session as it opened ({closed.code} {closed.reason}).".strip(),
                code="upstream_closed",
                close_code=code,
                error_type="server_error",
            ) from None
        except TimeoutError:
            await upstream.close(code=1011, reason="no session.created")
            raise Refused(
                "The Realtime API did not open the session. Try again shortly.",
                code="upstream_unavailable",
                close_code=4011 if server_limited else 1011,
                error_type="server_error",
            ) from None
        if not isinstance(frame, str) or '"error"' not in frame[:200]:
            return frame
        try:
            event = json.loads(frame)
        except ValueError:
            return frame
        if not isinstance(event, dict) or event.get("type") != "error":
            return frame
        # A refusal: its close follows at once (OpenAI sends both in the same instant).
        try:
            while True:
                await asyncio.wait_for(upstream.recv(), FIRST_FRAME_SECONDS)
        except client.UpstreamClosed as closed:
            code, note = client_close_code(closed.code, server_limited=server_limited)
            reason = ": ".join(part for part in (note, closed.reason) if part)
        except TimeoutError:
            # An error that did not end the session: it goes on, and the client sees the error.
            return frame
        log.info("relay: upstream refused the session: %s", reason)
        raise Refused.by_upstream(frame, close_code=code, reason=reason)

    async def from_client(self, text: str) -> tuple[str | None, list[str]]:
        """One client text frame: what to send upstream (None: nothing) and error events for the
        client. A plain audio append is the caller's fast path and should not come here."""
        if len(text) > MAX_CLIENT_MESSAGE_CHARS:
            return None, [protocol.error_event("Event too large.", code="message_too_large")]
        if protocol.nested_deeper_than(text, MAX_CLIENT_JSON_DEPTH):
            message = f"Invalid event: failed to parse JSON value: nested deeper than {MAX_CLIENT_JSON_DEPTH} levels."
            return None, [protocol.error_event(message, code="invalid_json")]
        try:
            event = json.loads(text)
        except (ValueError, RecursionError):
            return None, [protocol.error_event("Invalid event: failed to parse JSON value.", code="invalid_json")]
        if ("\\ud" in text or "\\uD" in text) and not protocol.encodable(event):
            # A JSON-escaped lone surrogate ("\ud800") parses, but is no text: it cannot be
            # sent on as UTF-8. Refused like any invalid JSON; the session goes on.
            message = "Invalid event: failed to parse JSON value: a lone surrogate is not text."
            return None, [protocol.error_event(message, code="invalid_json")]
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return None, [protocol.error_event("Invalid event: missing 'type'.", code="invalid_event")]
        client_event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        if event["type"] == "session.update" and isinstance(event.get("session"), dict) and "tools" in event["session"]:
            # Registered servers may have changed since the session opened (section 3.2: the
            # tools array is replaced as a whole, so ours go in with every update).
            self.tools, self.secret_values = await database_sync_to_async(handlers.registered_tools)(self.session_id)
        try:
            event, refusals = protocol.sanitize_client_event(event, self.tools)
        except protocol.Refusal as refusal:
            refusals, event = [refusal], None
        errors = [
            protocol.error_event(r.message, code=r.code, param=r.param, client_event_id=client_event_id)
            for r in refusals
        ]
        if event is None:
            return None, errors
        if event["type"] == "response.create" and self.core is not None and not self.core.client_response_create():
            return None, errors  # the relay's own follow-up is already giving that reply (session.FollowUp)
        # Re-serialised, never the raw text: upstream must see exactly what was checked here.
        return protocol.dumps(event), errors

    def to_client(self, frame: str, event: dict[str, Any] | None) -> str:
        """A parsed upstream frame as the client may see it: no MCP credentials, ever."""
        if event is not None and event.get("type") in ("session.created", "session.updated"):
            frame = protocol.dumps(protocol.scrub_session_event(event))
        return protocol.redact(frame, self.secret_values)
