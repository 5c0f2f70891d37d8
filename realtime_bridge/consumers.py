"""The relay: a client's WebSocket in, one upstream Realtime session out (DESIGN.md, flow 1).

The consumer is only the loop (STYLE.md 3.4): frames pass both ways, the few that matter go
to `handlers.dispatch` (sync, through one ordered queue per session), and decisions come back
through the outbox (`outbound.claim_unsent`), nudged by the channel-layer group of the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from approvals import events
from config.consumers import LeanDispatchMixin
from realtime_bridge import client, handlers, outbound, protocol

log = logging.getLogger(__name__)

# How often a session with undelivered decisions checks the outbox by itself, in case the
# nudge over the channel layer (at-most-once) was lost.
OUTBOX_POLL_SECONDS = 1.0
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


class FollowUp:
    """When to send `response.create` so the model tells the guest what happened.

    Never while a response is active (`conversation_already_has_active_response`, section 5.5),
    once per approval request, and not at all if the model already spoke after the tool call
    (the `held` profile, where the answer comes inside the same response).
    """

    def __init__(self) -> None:
        self.response_active = False
        self.state: str | None = None  # None | "wanted" | "requested"
        self.done_for: set[str] = set()

    def want(self, approval_request_id: str) -> None:
        if approval_request_id in self.done_for:
            return
        self.done_for.add(approval_request_id)
        self.state = "wanted"

    def should_send(self) -> bool:
        if self.state == "wanted" and not self.response_active:
            self.state = "requested"
            self.response_active = True  # optimistic: ours is on its way
            return True
        return False


class RelayConsumer(LeanDispatchMixin, AsyncWebsocketConsumer):
    upstream: client.Upstream | None = None
    session_id: int | None = None

    # --- Opening ---------------------------------------------------------------------------

    async def connect(self) -> None:
        self.closing = False
        self.followup = FollowUp()
        self.undelivered: set[str] = set()
        self.sent_ids: set[int] = set()
        self.secret_values: list[str] = []
        self.tools: list[dict[str, Any]] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.db_queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.outbox_lock = asyncio.Lock()

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
        self.tasks = [
            asyncio.create_task(self._read_upstream()),
            asyncio.create_task(self._db_worker()),
            asyncio.create_task(self._poll_outbox()),
        ]

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
        if event["type"] == "response.create":
            self.followup.response_active = True
        # Re-serialised, never the raw text: upstream must see exactly what was checked here.
        await upstream.send(protocol.dumps(event))

    # --- Upstream → client -----------------------------------------------------------------

    async def _read_upstream(self) -> None:
        assert self.upstream is not None
        send = self.send
        try:
            while True:
                try:
                    frame = await self.upstream.recv()
                except client.UpstreamClosed as closed:
                    if not self.closing:
                        self.closing = True
                        code, note = client_close_code(closed.code)
                        reason = ": ".join(part for part in (note, closed.reason) if part)
                        await self.close(code=code, reason=reason or None)
                    return
                if isinstance(frame, bytes):
                    await send(bytes_data=frame)
                    continue
                if protocol.sniff_server_type(frame):
                    await send(text_data=frame)
                    continue
                await self._handle_server_frame(frame)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("relay: session %s reader failed", self.session_id)
            if not self.closing:
                self.closing = True
                await self.close(code=4011, reason="server_error")

    async def _handle_server_frame(self, frame: str) -> None:
        try:
            event = json.loads(frame)
        except ValueError:
            await self.send(text_data=protocol.redact(frame, self.secret_values))
            return
        kind = event.get("type") if isinstance(event, dict) else None
        if kind in ("session.created", "session.updated"):
            frame = protocol.dumps(protocol.scrub_session_event(event))
        await self.send(text_data=protocol.redact(frame, self.secret_values))
        if kind in handlers.HANDLED_TYPES:
            self.db_queue.put_nowait(event)
        await self._observe(kind, event)

    async def _observe(self, kind: str | None, event: dict[str, Any]) -> None:
        """Track the response lifecycle and the items that call for a follow-up response."""
        followup = self.followup
        if kind == "response.created":
            followup.response_active = True
            if followup.state == "requested":
                followup.state = None
        elif kind == "response.done":
            followup.response_active = False
        elif kind == "error":
            if (event.get("error") or {}).get("code") == "conversation_already_has_active_response":
                followup.response_active = True
                if followup.state == "requested":
                    followup.state = "wanted"  # ours was refused: try again after response.done
        elif kind == "conversation.item.done":
            item = event.get("item") or {}
            if item.get("type") == "mcp_approval_request" and item.get("id"):
                self.undelivered.add(str(item["id"]))
            elif item.get("type") == "mcp_call" and item.get("approval_request_id"):
                followup.want(str(item["approval_request_id"]))
            elif item.get("type") == "message" and item.get("role") == "assistant" and followup.state == "wanted":
                followup.state = None  # the model already spoke after the tool call
        if followup.should_send() and self.upstream is not None:
            await self.upstream.send(protocol.response_create_event())

    async def _db_worker(self) -> None:
        """Apply upstream events to the database in order, without holding up the relaying."""
        while True:
            event = await self.db_queue.get()
            if event is None:
                return
            try:
                await database_sync_to_async(handlers.dispatch)(self.session_id, event)
            except Exception:
                log.exception("relay: session %s could not record %s", self.session_id, event.get("type"))

    # --- Decisions (outbox) ----------------------------------------------------------------

    async def relay_decision(self, message: dict[str, Any]) -> None:
        """Nudge from approvals.events after a decision or expiry committed."""
        await self._drain_outbox()

    async def _poll_outbox(self) -> None:
        while True:
            await asyncio.sleep(OUTBOX_POLL_SECONDS)
            if self.undelivered:
                await self._drain_outbox()

    async def _drain_outbox(self) -> None:
        if self.upstream is None or self.session_id is None or self.closing:
            return
        async with self.outbox_lock:
            decisions = await database_sync_to_async(outbound.unsent)(self.session_id)
            sent = []
            for decision in decisions:
                if decision.request_id in self.sent_ids:
                    continue  # sent already; its mark has not committed yet
                await self.upstream.send(
                    protocol.approval_response_event(
                        approval_request_id=decision.approval_request_id,
                        approve=decision.approve,
                        reason=decision.reason,
                    )
                )
                self.sent_ids.add(decision.request_id)
                sent.append(decision.request_id)
                self.undelivered.discard(decision.approval_request_id)
                if not decision.approve:
                    # No tool runs, so no mcp_call may ever come: ask the model to tell the guest.
                    self.followup.want(decision.approval_request_id)
            if sent and self.followup.should_send():
                await self.upstream.send(protocol.response_create_event())
            if sent:
                await database_sync_to_async(outbound.mark_sent)(sent)

    # --- Closing -----------------------------------------------------------------------------

    async def disconnect(self, code: int) -> None:
        self.closing = True
        for task in self.tasks:
            if task is not self.tasks[1]:  # the db worker drains what was accepted first
                task.cancel()
        if self.upstream is not None:
            await self.upstream.close(code=1000, reason="client disconnected")
        if self.tasks:
            self.db_queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.tasks[1], timeout=30)
        if self.session_id is not None:
            await self.channel_layer.group_discard(events.session_group(self.session_id), self.channel_name)
            await database_sync_to_async(handlers.close_session)(
                self.session_id, code=code, reason="The guest's session ended before a decision."
            )
