"""The relay: a client's WebSocket in, one upstream Realtime session out (DESIGN.md, flow 1).

The consumer is only the loop (STYLE.md 3.4): frames pass both ways, and the upstream side
(the few frames that matter go to `handlers.dispatch`, the follow-up response, decisions back
through the outbox, nudged by the channel-layer group of the session) is the
`session.UpstreamSession` that the sideband bridge uses too.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from approvals import events
from config.consumers import LeanDispatchMixin
from realtime_bridge import client, handlers, protocol
from realtime_bridge.session import OUTBOX_POLL_SECONDS, FollowUp, UpstreamSession

__all__ = ["OUTBOX_POLL_SECONDS", "FollowUp", "RelayConsumer", "client_close_code"]

log = logging.getLogger(__name__)

MAX_CLIENT_MESSAGE_CHARS = 16 * 2**20  # OpenAI accepts audio appends of up to 15 MiB


def client_close_code(code: int) -> tuple[int, str]:
    """The close code to give the client for an upstream close code, and a note for the reason.

    Daphne (autobahn) can send only 1000 or 3000-4999, and 1005/1006/1015 mean "no close
    frame" anyway, so upstream's 1001/1011/1012/... reach the client as 4001/4011/4012 and the
    reason says which code it was.
    """
    if code == 1000 or 3000 <= code <= 4999:
        return code, ""
    if 1001 <= code <= 1015:
        return 4000 + code - 1000, f"upstream closed with {code}"
    return 4000, f"upstream closed with {code}"


def _mask(token: str) -> str:
    token = token[:80]
    return f"{token[:6]}***{token[-4:]}" if len(token) > 12 else "***"


class RelayConsumer(LeanDispatchMixin, AsyncWebsocketConsumer):
    upstream: client.Upstream | None = None
    session_id: int | None = None
    core: UpstreamSession | None = None

    # --- Opening ---------------------------------------------------------------------------

    async def connect(self) -> None:
        self.closing = False
        self.secret_values: list[str] = []
        self.tools: list[dict[str, Any]] = []
        self.tasks: list[asyncio.Task[None]] = []

        # Like OpenAI, always complete the upgrade and report problems in an `error` event
        # followed by a close (section 1.3). A browser that offered subprotocols must get one
        # of them back, or Chromium fails the handshake (section 1.1).
        offered = self.scope.get("subprotocols") or []
        await self.accept(subprotocol="realtime" if "realtime" in offered else None)

        headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in self.scope.get("headers", [])}
        if "openai-beta" in headers:
            return await self._refuse(
                "The OpenAI-Beta header is not supported by the GA Realtime API.",
                code="beta_api_shape_disabled",
                close_code=4000,
            )
        token_text = self._token(headers, offered)
        if not token_text:
            return await self._refuse("Missing bearer or basic authentication in header", code=None, close_code=3000)
        token = await database_sync_to_async(handlers.authenticate)(token_text)
        if token is None:
            return await self._refuse(
                f"Incorrect API key provided: {_mask(token_text)}. "
                "Ask your Countersign administrator for a client token.",
                code="invalid_api_key",
                close_code=3000,
            )
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        if "call_id" in query:
            return await self._refuse(
                "Countersign attaches to calls itself; connect with ?model= to start a session.",
                code="call_id_not_supported",
                close_code=4000,
            )
        model = (query.get("model") or [""])[0]
        if not model:
            return await self._refuse("You must provide a model parameter", code="missing_model", close_code=4000)

        self.tools, self.secret_values = await database_sync_to_async(handlers.registered_tools)()
        tools = self.tools
        try:
            self.upstream = await client.connect(
                api_key=settings.OPENAI_API_KEY, base_url=settings.OPENAI_BASE_URL, model=model
            )
        except Exception as exc:
            log.warning("relay: upstream connect failed: %s", exc)
            return await self._refuse(
                "Countersign could not reach the Realtime API. Try again shortly.",
                code="upstream_unavailable",
                close_code=4011,  # 1011 (server error) in the range Daphne can send
                error_type="server_error",
            )
        session = await database_sync_to_async(handlers.open_relay_session)(token=token, model=model)
        self.session_id = session.pk
        await self.channel_layer.group_add(events.session_group(session.pk), self.channel_name)
        if tools:
            # Put the registered MCP servers (with their credentials) into the upstream session.
            await self.upstream.send(
                protocol.dumps(
                    {
                        "type": "session.update",
                        "event_id": protocol.new_event_id(),
                        "session": {"type": "realtime", "tools": tools},
                    }
                )
            )
        self.core = UpstreamSession(self.upstream, session.pk)
        self.core.start()
        self.tasks = [asyncio.create_task(self._read_upstream())]

    @staticmethod
    def _token(headers: dict[str, str], offered: list[str]) -> str:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        for proto in offered:
            if proto.startswith("openai-insecure-api-key."):
                return proto.removeprefix("openai-insecure-api-key.")
        return ""

    async def _refuse(
        self, message: str, *, code: str | None, close_code: int, error_type: str = "invalid_request_error"
    ) -> None:
        event = json.loads(protocol.error_event(message, code=code))
        event["error"]["type"] = error_type
        await self.send(text_data=protocol.dumps(event))
        self.closing = True
        await self.close(code=close_code, reason=f"{error_type}.{code}" if code else error_type)

    # --- Client → upstream -----------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        upstream = self.upstream
        if upstream is None or self.closing:
            return
        if text_data is None:
            # OpenAI answers a binary frame with a non-fatal invalid_event error (section 1.1).
            await upstream.send(bytes_data or b"")
            return
        if protocol.is_plain_audio_append(text_data):
            await upstream.send(text_data)
            return
        if len(text_data) > MAX_CLIENT_MESSAGE_CHARS:
            await self.send(text_data=protocol.error_event("Event too large.", code="message_too_large"))
            return
        try:
            event = json.loads(text_data)
        except ValueError:
            await self.send(
                text_data=protocol.error_event("Invalid event: failed to parse JSON value.", code="invalid_json")
            )
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self.send(text_data=protocol.error_event("Invalid event: missing 'type'.", code="invalid_event"))
            return
        client_event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        if event["type"] == "session.update" and isinstance(event.get("session"), dict) and "tools" in event["session"]:
            # Registered servers may have changed since the session opened (section 3.2:
            # the tools array is replaced as a whole, so ours go in with every update).
            self.tools, self.secret_values = await database_sync_to_async(handlers.registered_tools)()
        try:
            event, refusals = protocol.sanitize_client_event(event, self.tools)
        except protocol.Refusal as refusal:
            await self.send(
                text_data=protocol.error_event(
                    refusal.message, code=refusal.code, param=refusal.param, client_event_id=client_event_id
                )
            )
            return
        for refusal in refusals:
            await self.send(
                text_data=protocol.error_event(
                    refusal.message, code=refusal.code, param=refusal.param, client_event_id=client_event_id
                )
            )
        if event["type"] == "response.create" and self.core is not None:
            self.core.followup.response_active = True
        # Re-serialised, never the raw text: upstream must see exactly what was checked here.
        await upstream.send(protocol.dumps(event))

    # --- Upstream → client -----------------------------------------------------------------

    async def _read_upstream(self) -> None:
        assert self.core is not None
        try:
            closed = await self.core.read(passthrough=self._pass_on, forward=self._forward)
            if not self.closing:
                self.closing = True
                code, note = client_close_code(closed.code)
                reason = ": ".join(part for part in (note, closed.reason) if part)
                await self.close(code=code, reason=reason or None)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("relay: session %s reader failed", self.session_id)
            if not self.closing:
                self.closing = True
                await self.close(code=4011, reason="server_error")

    async def _pass_on(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            await self.send(bytes_data=frame)
        else:
            await self.send(text_data=frame)

    async def _forward(self, frame: str, event: dict[str, Any] | None) -> None:
        if event is not None and event.get("type") in ("session.created", "session.updated"):
            frame = protocol.dumps(protocol.scrub_session_event(event))
        await self.send(text_data=protocol.redact(frame, self.secret_values))

    # --- Decisions (outbox) ----------------------------------------------------------------

    async def relay_decision(self, message: dict[str, Any]) -> None:
        """Nudge from approvals.events after a decision or expiry committed."""
        if self.core is not None and not self.closing:
            await self.core.drain_outbox()

    # --- Closing -----------------------------------------------------------------------------

    async def disconnect(self, code: int) -> None:
        self.closing = True
        for task in self.tasks:
            task.cancel()
        if self.core is not None:
            # Closes upstream, then lets the db worker finish what was accepted first.
            await self.core.stop(reason="client disconnected")
        elif self.upstream is not None:
            await self.upstream.close(code=1000, reason="client disconnected")
        if self.session_id is not None:
            await self.channel_layer.group_discard(events.session_group(self.session_id), self.channel_name)
            await database_sync_to_async(handlers.close_session)(
                self.session_id, code=code, reason="The guest's session ended before a decision."
            )
