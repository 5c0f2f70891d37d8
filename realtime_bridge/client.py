"""The upstream Realtime connection, opened through the official openai SDK. No Django here.

The SDK builds the URL and headers exactly as it does for any app (REALTIME_PROTOCOL.md 1.2),
so whatever stands behind OPENAI_BASE_URL (OpenAI, the simulator) sees a normal client.
Frames are read and written as text: the relay passes most of them on untouched, and the
SDK's `recv()` would build a pydantic model of every audio delta for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from websockets.exceptions import ConnectionClosed

__all__ = ["ConnectionClosed", "Upstream", "UpstreamClosed", "connect"]


@dataclass
class UpstreamClosed(Exception):
    code: int
    reason: str


class Upstream:
    def __init__(self, connection: AsyncRealtimeConnection) -> None:
        self._connection = connection
        # The SDK's own websocket (a websockets ClientConnection): reading text from it directly
        # avoids the bytes→str copy of `recv_bytes()` on every relayed frame.
        self._ws = connection._connection

    async def recv(self) -> str | bytes:
        """The next frame; raises UpstreamClosed with the close code and reason when it ends."""
        try:
            return await self._ws.recv()
        except ConnectionClosed as exc:
            frame = exc.rcvd
            raise UpstreamClosed(frame.code if frame else 1006, frame.reason if frame else "") from None

    async def send(self, data: str | bytes) -> None:
        # Straight onto the socket: the SDK's send_raw() keeps a send queue and receipts for its
        # own reconnects, which a relay never uses (a `?model=` session dies with its socket),
        # and that bookkeeping (a task lookup per frame) is paid 50 times a second per guest.
        try:
            await self._ws.send(data)
        except ConnectionClosed as exc:
            frame = exc.rcvd
            raise UpstreamClosed(frame.code if frame else 1006, frame.reason if frame else "") from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        try:
            await self._connection.close(code=code, reason=reason)
        except Exception:  # closing an already broken socket: nothing left to do
            pass


@lru_cache(maxsize=8)
def _client(api_key: str, base_url: str) -> AsyncOpenAI:
    # One SDK client per key and URL for the whole process: each AsyncOpenAI builds an httpx
    # client and TLS context, which every relayed session would otherwise carry for nothing.
    return AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0)


async def connect(
    *, api_key: str, base_url: str, model: str | None = None, call_id: str | None = None, open_timeout: float = 15.0
) -> Upstream:
    """Open an upstream session (`?model=`) or attach a sideband to a call (`?call_id=`)."""
    client = _client(api_key, base_url)
    # compression=None: the SDK turns permessage-deflate off only when max_size is left unset,
    # and deflating base64 audio 50 times a second per guest costs far more than it saves.
    options = {"open_timeout": open_timeout, "max_size": 32 * 2**20, "compression": None}
    kwargs: dict[str, object] = {"websocket_connection_options": options}
    if call_id:
        kwargs["call_id"] = call_id
    else:
        kwargs["model"] = model
    connection = await client.realtime.connect(**kwargs).enter()  # type: ignore[arg-type]
    return Upstream(connection)
