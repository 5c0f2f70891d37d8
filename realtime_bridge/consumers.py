"""The relay on Channels: a client's WebSocket in, one upstream Realtime session out (DESIGN.md,
flow 1), served by Daphne at /v1/realtime.

The consumer is only the loop (STYLE.md 3.4). What the relay owes its client is
`gate.RelayGate` (handshake, checks on client events, scrubbing), and the upstream side (the
frames that matter go to `handlers.dispatch`, the follow-up response, decisions back through
the outbox, nudged by the channel-layer group of the session) is `session.UpstreamSession`;
`run_relay` (a plain `websockets` server) and the sideband bridge use the same two.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from approvals import events
from approvals.dispatch import LeanDispatchMixin
from realtime_bridge import handlers, outbound, protocol
from realtime_bridge.client import UpstreamClosed
from realtime_bridge.gate import Refused, RelayGate, client_close_code
from realtime_bridge.session import UpstreamSession

log = logging.getLogger(__name__)


class RelayConsumer(LeanDispatchMixin, AsyncWebsocketConsumer):
    core: UpstreamSession | None = None
    session_id: int | None = None

    async def connect(self) -> None:
        self.closing = False
        self.gate = RelayGate()
        self.tasks: list[asyncio.Task[None]] = []
        # Like OpenAI, always complete the upgrade and report problems in an `error` event
        # followed by a close (section 1.3). A browser that offered subprotocols must get one
        # of them back, or Chromium fails the handshake (section 1.1).
        offered = self.scope.get("subprotocols") or []
        await self.accept(subprotocol="realtime" if "realtime" in offered else None)
        headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in self.scope.get("headers", [])}
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        try:
            token, model = await self.gate.admit(headers=headers, subprotocols=offered, query=query)
            # 4011: 1011 (server error) in the range Daphne can send.
            self.core = await self.gate.open_upstream(token, model, server_error_code=4011)
        except Refused as refused:
            self.closing = True
            await self.send(text_data=refused.event)
            await self.close(code=refused.close_code, reason=refused.reason)
            return
        self.session_id = self.core.session_id
        await self.channel_layer.group_add(events.session_group(self.session_id), self.channel_name)
        self.tasks = [asyncio.create_task(self._read_upstream())]

    # --- Client → upstream -----------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        core = self.core
        if core is None or self.closing:
            return
        try:
            if text_data is None:
                # OpenAI answers a binary frame with a non-fatal invalid_event error (section 1.1).
                await core.upstream.send(bytes_data or b"")
            elif protocol.is_plain_audio_append(text_data):
                await core.upstream.send(text_data)
            else:
                to_upstream, errors = await self.gate.from_client(text_data)
                for error in errors:
                    await self.send(text_data=error)
                if to_upstream is not None:
                    await core.upstream.send(to_upstream)
        except UpstreamClosed:
            pass  # upstream went away under a send: _read_upstream sees it and closes the guest with its code

    # --- Upstream → client -----------------------------------------------------------------

    async def _read_upstream(self) -> None:
        assert self.core is not None
        try:
            closed = await self.core.read(passthrough=self._pass_on, forward=self._forward)
            if not self.closing:
                self.closing = True
                code, note = client_close_code(closed.code, server_limited=True)
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
        await self.send(text_data=self.gate.to_client(frame, event))

    # --- Decisions (outbox) ----------------------------------------------------------------

    async def relay_decision(self, message: dict[str, Any]) -> None:
        """Nudge from approvals.events after a decision or expiry committed."""
        if self.core is not None and not self.closing:
            decision = outbound.from_nudge(message)
            if decision is not None:
                await self.core.deliver(decision)
            else:
                await self.core.drain_outbox()

    # --- Closing -----------------------------------------------------------------------------

    async def disconnect(self, code: int) -> None:
        self.closing = True
        for task in self.tasks:
            task.cancel()
        if self.core is not None:
            # Closes upstream, then lets the db worker finish what was accepted first.
            await self.core.stop(reason="client disconnected")
        if self.session_id is not None:
            await self.channel_layer.group_discard(events.session_group(self.session_id), self.channel_name)
            await database_sync_to_async(handlers.close_session)(
                self.session_id, code=code, reason="The guest's session ended before a decision."
            )
