"""The relay on Channels: a client's WebSocket at /v1/realtime, served by Daphne.

An adapter only (STYLE.md 3.4): the session itself, from handshake to close, is
`relay.Relay`, which `run_relay` (relay_server.py) carries too. Channels pushes each client
frame into `receive`; a plain audio append goes straight upstream from there, everything else
to `Relay.client_frame`. Decisions arrive as `relay.decision` messages on a channel the session
takes once it is open (relay.DecisionChannel), as on run_relay.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer

from approvals.dispatch import LeanDispatchMixin
from realtime_bridge import protocol
from realtime_bridge.client import UpstreamClosed
from realtime_bridge.gate import MAX_CLIENT_MESSAGE_CHARS
from realtime_bridge.relay import DecisionChannel, Relay

# Set in the scope by the server of config/daphne_server.py (which may not be imported here).
CLOSE_CODES_EXTENSION = "countersign.close_codes"


class _ConsumerSocket:
    """The consumer's WebSocket as the relay sees it (relay.ClientSocket)."""

    __slots__ = ("consumer", "decisions")

    def __init__(self, consumer: RelayConsumer) -> None:
        self.consumer = consumer
        self.decisions = DecisionChannel()

    async def send(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            await self.consumer.send(bytes_data=frame)
        else:
            await self.consumer.send(text_data=frame)

    async def close(self, code: int, reason: str) -> None:
        await self.consumer.close(code=code, reason=reason or None)

    async def join(self, group: str, relay: Relay) -> None:
        await self.decisions.join(group, relay)

    async def leave(self, group: str) -> None:
        await self.decisions.leave(group)


class RelayConsumer(LeanDispatchMixin, AsyncWebsocketConsumer):
    # No channel from Channels for every connection: taking one subscribes on Redis, for each
    # handshake of a flood of bad tokens too, and /healthz's round trip queued behind them (issue
    # 16.5). A session that opens takes its own (relay.DecisionChannel). The alias names no
    # configured layer, so Channels gives this consumer none.
    channel_layer_alias = "relay-sessions-take-their-own-channel"
    relay: Relay | None = None

    async def connect(self) -> None:
        # Like OpenAI, always complete the upgrade and report problems in an `error` event
        # followed by a close (section 1.3). A browser that offered subprotocols must get one
        # of them back, or Chromium fails the handshake (section 1.1).
        offered = list(self.scope.get("subprotocols") or [])
        await self.accept(subprotocol="realtime" if "realtime" in offered else None)
        headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in self.scope.get("headers", [])}
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        # Daphne as shipped (autobahn) can send only 1000 and 3000-4999 as close codes; the
        # server of config/daphne_server.py sends every code and says so in the scope.
        limited = CLOSE_CODES_EXTENSION not in (self.scope.get("extensions") or {})
        self.relay = Relay(_ConsumerSocket(self), name="relay", server_limited=limited)
        client = self.scope.get("client")
        address = str(client[0]) if client else None
        await self.relay.open(headers=headers, subprotocols=offered, query=query, address=address)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        relay = self.relay
        if relay is None or relay.core is None or relay.closing:
            return
        if text_data is not None and len(text_data) > MAX_CLIENT_MESSAGE_CHARS:
            await relay.too_large()
        elif text_data is not None and protocol.is_plain_audio_append(text_data):
            # The audio fast path (relay.py): straight onto the upstream socket.
            try:
                await relay.core.upstream.send(text_data)
            except UpstreamClosed:
                pass  # the reader sees the close too and closes the guest with its code
            except Exception as exc:
                relay.fail("sending audio upstream", exc)
        elif bytes_data is not None and len(bytes_data) > MAX_CLIENT_MESSAGE_CHARS:
            await relay.too_large()
        else:
            await relay.client_frame(text_data if text_data is not None else bytes_data or b"")

    async def disconnect(self, code: int) -> None:
        if self.relay is not None:
            await self.relay.end(code)
