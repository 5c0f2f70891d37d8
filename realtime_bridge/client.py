"""OpenAI, as the bridge reaches it: the one factory of SDK clients (`openai_client`), and the
upstream Realtime connection opened through it.

Every call to OpenAI goes through the official SDK, built here from OPENAI_API_KEY and
OPENAI_BASE_URL, so whatever stands behind that URL (OpenAI, the simulator) sees a normal client
(REALTIME_PROTOCOL.md 1.2). Realtime frames are read and written as text: the relay passes most
of them on untouched, and the SDK's `recv()` would build a pydantic model of every audio delta
for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, overload

from django.conf import settings
from openai import AsyncOpenAI, OpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from websockets.exceptions import ConnectionClosed

__all__ = ["ConnectionClosed", "Upstream", "UpstreamClosed", "connect", "openai_client"]


@overload
def openai_client(
    *, use_async: Literal[False] = False, max_retries: int = 0, timeout: float | None = None
) -> OpenAI: ...


@overload
def openai_client(*, use_async: Literal[True], max_retries: int = 0, timeout: float | None = None) -> AsyncOpenAI: ...


def openai_client(
    *, use_async: bool = False, max_retries: int = 0, timeout: float | None = None
) -> OpenAI | AsyncOpenAI:
    """The SDK client for OPENAI_API_KEY at OPENAI_BASE_URL, one per process for each
    configuration: each client builds an httpx client and a TLS context, which every session or
    call would otherwise carry for nothing. `max_retries`: the SDK's own retries, 0 where the
    caller decides what may be sent again (a retried resumption could answer approvals twice).
    `timeout`: seconds per HTTP request; None keeps the SDK's default."""
    return _client(settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL, use_async, max_retries, timeout)


@lru_cache(maxsize=16)
def _client(
    api_key: str, base_url: str, use_async: bool, max_retries: int, timeout: float | None
) -> OpenAI | AsyncOpenAI:
    kind = AsyncOpenAI if use_async else OpenAI
    if timeout is None:
        return kind(api_key=api_key, base_url=base_url, max_retries=max_retries)
    return kind(api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout)


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

    def unread(self, frame: str | bytes) -> None:
        """Give back a frame read already (the relay reads upstream's first frame itself): the
        next recv() returns it. The instance's recv is replaced once, for that one call, so the
        path of every other frame is left as it is."""

        async def first() -> str | bytes:
            del self.recv  # the class's own recv again
            return frame

        self.recv = first  # type: ignore[method-assign]

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


async def connect(*, model: str | None = None, call_id: str | None = None, open_timeout: float = 15.0) -> Upstream:
    """Open an upstream session (`?model=`) or attach a sideband to a call (`?call_id=`).
    Raises whatever the SDK raises when the socket cannot open."""
    client = openai_client(use_async=True)
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
