"""The relay on Channels: a client's WebSocket at /v1/realtime, served by Daphne.

An adapter only (STYLE.md 3.4): the session itself, from handshake to close, is
`relay.Relay`, which `run_relay` (relay_server.py) carries too. Channels pushes each client
frame into `receive`; a plain audio append goes straight upstream from there, everything else
to `Relay.client_frame`. Decisions arrive as `relay.decision` messages on the consumer's
channel, joined to the session's group.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer

from approvals.dispatch import LeanDispatchMixin
from realtime_bridge import protocol
from realtime_bridge.client import UpstreamClosed
from realtime_bridge.relay import Relay


class _ConsumerSocket:
    """The consumer's WebSocket as the relay sees it (relay.ClientSocket)."""

    __slots__ = ("consumer",)

    def __init__(self, consumer: RelayConsumer) -> None:
        self.consumer = consumer

    async def send(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            await self.consumer.send(bytes_data=frame)
        else:
            await self.consumer.send(text_data=frame)

    async def close(self, code: int, reason: str) -> None:
        await self.consumer.close(code=code, reason=reason or None)

    async def join(self, group: str, relay: Relay) -> None:
        # The nudges come to this consumer's channel, dispatched to relay_decision below.
        await self.consumer.channel_layer.group_add(group, self.consumer.channel_name)

    async def leave(self, group: str) -> None:
        await self.consumer.channel_layer.group_discard(group, self.consumer.channel_name)


class RelayConsumer(LeanDispatchMixin, AsyncWebsocketConsumer):
    relay: Relay | None = None

    async def connect(self) -> None:
        # Like OpenAI, always complete the upgrade and report problems in an `error` event
        # followed by a close (section 1.3). A browser that offered subprotocols must get one
        # of them back, or Chromium fails the handshake (section 1.1).
        offered = list(self.scope.get("subprotocols") or [])
        await self.accept(subprotocol="realtime" if "realtime" in offered else None)
        headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in self.scope.get("headers", [])}
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        # Daphne (autobahn) can send only 1000 and 3000-4999 as close codes.
        self.relay = Relay(_ConsumerSocket(self), name="relay", server_limited=True)
        await self.relay.open(headers=headers, subprotocols=offered, query=query)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        relay = self.relay
        if relay is None or relay.core is None or relay.closing:
            return
        if text_data is not None and protocol.is_plain_audio_append(text_data):
            # The audio fast path (relay.py): straight onto the upstream socket.
            try:
                await relay.core.upstream.send(text_data)
            except UpstreamClosed:
                pass  # the reader sees the close too and closes the guest with its code
            except Exception as exc:
                relay.fail("sending audio upstream", exc)
        else:
            await relay.client_frame(text_data if text_data is not None else bytes_data or b"")

    async def relay_decision(self, message: dict[str, Any]) -> None:
        """Nudge from approvals.events after a decision or expiry committed."""
        if self.relay is not None:
            await self.relay.on_decision(message)

    async def relay_stop(self, message: dict[str, Any]) -> None:
        """A staff member stopped the session (approvals.events.relay_stop)."""
        if self.relay is not None:
            await self.relay.on_stop(message)

    async def disconnect(self, code: int) -> None:
        if self.relay is not None:
            await self.relay.end(code)
