"""One relayed session, from handshake to close, whatever server carries the client's WebSocket
(DESIGN.md, flow 1): the relay loop, written once.

Two thin adapters carry it: `consumers.RelayConsumer` (Channels, on Daphne, at /v1/realtime) and
`relay_server` (`manage.py run_relay`, a plain `websockets` server for the voice hot path). An
adapter gives the relay a `ClientSocket` (send a frame, close, join and leave the channel-layer
group of the session) and hands it the client's frames; everything else is here: the handshake
and the upstream session (`gate.RelayGate`), the upstream reader, the client's events, the
decisions a nudge carries, and the end.

The audio fast path (a plain `input_audio_buffer.append`, 50 frames a second per guest) stays in
the adapter's own receive loop: it goes straight onto the upstream socket, with no await or
allocation added for it here.

How a session ends, whichever way it goes, with `end()` run once:
- the client leaves: the adapter calls `end(code)` with the client's close code;
- upstream closes: the client is closed with upstream's code (`gate.client_close_code`), then
  the adapter's close path calls `end`;
- anything fails (opening, a client frame, the upstream reader, the database worker, joining
  the group): `fail()` writes the one log line of it, closes the client with a server error
  and ends the session itself, without waiting for the client.
`end` closes upstream, lets the database worker finish what it was given, leaves the group and
closes the session row, which cancels its pending requests (approvals.services.close_session).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, Awaitable
from typing import Any, Protocol

import structlog
from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer
from websockets.exceptions import ConnectionClosed

from approvals import events
from realtime_bridge import handlers, leases, outbound, protocol
from realtime_bridge.client import UpstreamClosed
from realtime_bridge.gate import MAX_CLIENT_MESSAGE_CHARS, Refused, RelayGate, client_close_code
from realtime_bridge.session import UpstreamSession

log = logging.getLogger(__name__)

CLOSE_REASON = "The guest's session ended before a decision."


class ClientSocket(Protocol):
    """The client's WebSocket as a server carries it. `send` is on the path of every frame
    upstream sends: an adapter gives its server's own send where it can."""

    def send(self, frame: str | bytes, /) -> Awaitable[None]: ...

    def close(self, code: int, reason: str, /) -> Awaitable[None]: ...

    def join(self, group: str, relay: Relay, /) -> Awaitable[None]:
        """Receive the group's `relay.decision` nudges into `relay.on_decision`."""
        ...

    def leave(self, group: str, /) -> Awaitable[None]: ...


class DecisionChannel:
    """A session's own channel on the channel layer, joined to its decision group once the
    session is open, with a task that hands the group's `relay.decision` nudges and `relay.stop`
    (staff ended the session) to the relay.
    Both servers use it: a channel taken only for an admitted session, so a refused handshake
    (a flood of bad tokens included) costs no Redis work at all."""

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.listener: asyncio.Task[None] | None = None

    async def join(self, group: str, relay: Relay) -> None:
        if self.layer is None:
            raise RuntimeError("the relay needs a channel layer (CHANNEL_LAYERS) to receive decisions")
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(group, self.channel)
        self.listener = asyncio.create_task(self._listen(self.layer, self.channel, relay))

    @staticmethod
    async def _listen(layer: BaseChannelLayer, channel: str, relay: Relay) -> None:
        while True:
            message = await layer.receive(channel)
            if message.get("type") == events.RELAY_DECISION:
                await relay.on_decision(message)
            elif message.get("type") == events.RELAY_STOP:
                await relay.on_stop(message)

    async def leave(self, group: str) -> None:
        if self.listener is not None:
            # Awaited: the channel layer unsubscribes in the cancelled receive().
            self.listener.cancel()
            with contextlib.suppress(BaseException):
                await self.listener
        if self.layer is not None and self.channel is not None:
            await self.layer.group_discard(group, self.channel)


class Relay:
    """One client's session. `server_limited`: the server can send only 1000 and 3000-4999 as
    close codes (Daphne), so upstream's other codes and the relay's own server error go in the
    4000 range."""

    def __init__(self, client: ClientSocket, *, name: str, server_limited: bool = False) -> None:
        self.client = client
        self.name = name
        self.server_limited = server_limited
        self.server_error_code = 4011 if server_limited else 1011
        self.gate = RelayGate()
        self.core: UpstreamSession | None = None
        # Set once the client is being closed (or refused): nothing more goes to it, and the
        # frames it still sends are dropped.
        self.closing = False
        self.group: str | None = None
        self._reader: asyncio.Task[None] | None = None
        self._failing: asyncio.Task[None] | None = None
        self._ending: asyncio.Task[None] | None = None
        # Why upstream is closed when the session ends (a staff member's stop says so).
        self._upstream_reason = "client disconnected"

    @property
    def session_id(self) -> int | None:
        return self.core.session_id if self.core is not None else None

    # --- Opening ---------------------------------------------------------------------------

    async def open(
        self,
        *,
        headers: dict[str, str],
        subprotocols: list[str],
        query: dict[str, list[str]],
        address: str | None = None,
    ) -> bool:
        """Admit the client and open its upstream session, join its decision group and start
        reading upstream. False when the session did not open: the client got an `error` event
        and a close (section 1.3), and nothing of it is left open. `address`: the client's, to
        count its handshake (limits.py); None when the server counted it before the upgrade."""
        try:
            token, model = await self.gate.admit(
                headers=headers,
                subprotocols=subprotocols,
                query=query,
                address=address,
                server_limited=self.server_limited,
            )
            self.core = await self.gate.open_upstream(
                token, model, server_limited=self.server_limited, on_failure=self.fail
            )
        except Refused as refused:
            await self._refuse(refused)
            return False
        except Exception:
            # open_upstream has closed what it had opened.
            log.exception("%s: a session failed to open", self.name)
            error = Refused(
                "Countersign could not open the session.",
                code=None,
                close_code=self.server_error_code,
                error_type="server_error",
            )
            await self._refuse(error)
            return False
        # Every log line of this session (its reader and its answers too) names it (observability/logs.py).
        structlog.contextvars.bind_contextvars(session_id=self.core.session_id)
        try:
            self.group = events.session_group(self.core.session_id)
            await self.client.join(self.group, self)
        except Exception as exc:
            self.group = None
            self.fail("joining its decision group", exc)
            await self.end(self.server_error_code)
            return False
        self._reader = asyncio.create_task(self._read_upstream())
        leases.LEASES.hold(self.core.session_id, self._lease_lost)
        return True

    def _lease_lost(self) -> None:
        self.fail("keeping its lease", RuntimeError("the session was closed by the lease sweep"))

    async def _refuse(self, refused: Refused) -> None:
        self.closing = True
        with contextlib.suppress(ConnectionClosed):  # the client left during the handshake
            await self.client.send(refused.event)
            await self.client.close(refused.close_code, refused.reason)

    # --- Upstream → client -----------------------------------------------------------------

    async def _read_upstream(self) -> None:
        assert self.core is not None
        try:
            closed = await self.core.read(passthrough=self.client.send, forward=self._forward)
        except ConnectionClosed:
            return  # the client left under a send: its close ends the session
        except Exception as exc:
            self.fail("reading upstream", exc)
            return
        if not self.closing:
            self.closing = True
            code, note = client_close_code(closed.code, server_limited=self.server_limited)
            with contextlib.suppress(ConnectionClosed):
                await self.client.close(code, ": ".join(part for part in (note, closed.reason) if part))

    async def _forward(self, frame: str, event: dict[str, Any] | None) -> None:
        await self.client.send(self.gate.to_client(frame, event))

    # --- Client → upstream -----------------------------------------------------------------

    async def pump(self, frames: AsyncIterable[str | bytes]) -> None:
        """Relay the client's frames, pulled from `frames`, until the client closes (the
        websockets server). A server that pushes frames calls `client_frame` for each one that
        is not a plain audio append instead (RelayConsumer.receive)."""
        assert self.core is not None
        send = self.core.upstream.send
        is_plain_audio_append = protocol.is_plain_audio_append
        try:
            async for frame in frames:
                if len(frame) > MAX_CLIENT_MESSAGE_CHARS:
                    await self.too_large()
                    return
                if isinstance(frame, str) and is_plain_audio_append(frame):
                    try:
                        await send(frame)
                    except UpstreamClosed:
                        pass  # the reader sees the close too and closes the client with its code
                else:
                    await self.client_frame(frame)
        except ConnectionClosed:
            pass
        except Exception as exc:
            self.fail("reading the client", exc)

    async def too_large(self) -> None:
        """A client message over the relay's limit (OpenAI's own is about 15 MiB of audio): an
        `error` event, then a close with 1009 (message too big; 4009 where the server cannot
        send it) and the error in the reason, as OpenAI closes on a refusal (section 1.3)."""
        if self.closing:
            return
        refused = Refused(
            f"Event too large: a client event may be at most {MAX_CLIENT_MESSAGE_CHARS} bytes.",
            code="message_too_large",
            close_code=4009 if self.server_limited else 1009,
        )
        log.warning("%s: session %s sent a message over the limit; closing it", self.name, self.session_id)
        await self._refuse(refused)
        await self.end(refused.close_code)

    async def client_frame(self, frame: str | bytes) -> None:
        """One client frame off the audio fast path: checked by the gate, answered with `error`
        events where refused (the session goes on, as OpenAI's does), sent upstream as checked.
        Never raises: upstream gone is left to the reader; any other error ends the session."""
        core = self.core
        if core is None or self.closing:
            return
        try:
            if isinstance(frame, bytes):
                # OpenAI answers a binary frame with a non-fatal invalid_event error (section 1.1).
                await core.upstream.send(frame)
                return
            to_upstream, errors = await self.gate.from_client(frame)
            for error in errors:
                await self.client.send(error)
            if to_upstream is not None:
                await core.upstream.send(to_upstream)
        except (UpstreamClosed, ConnectionClosed):
            pass  # upstream: the reader closes the client with its code; the client: it has left
        except Exception as exc:
            self.fail("a client event", exc)

    # --- Decisions (outbox) ----------------------------------------------------------------

    async def on_decision(self, message: dict[str, Any]) -> None:
        """A `relay.decision` nudge (approvals.events) after a decision or expiry committed:
        send the decision it carries, or what the outbox holds. A failure here loses nothing:
        the outbox poll sends it within a second."""
        core = self.core
        if core is None or self.closing:
            return
        try:
            decision = outbound.from_nudge(message)
            if decision is not None:
                with structlog.contextvars.bound_contextvars(approval_request_id=decision.request_id):
                    await core.deliver(decision)
            else:
                await core.drain_outbox()
        except UpstreamClosed:
            pass
        except Exception:
            log.exception(
                "%s: session %s could not send a decision now; the outbox poll will", self.name, self.session_id
            )

    async def on_stop(self, message: dict[str, Any]) -> None:
        """A `relay.stop` (approvals.events, after services.stop_session committed): close the
        client with the stop's code and reason, then end the session, which closes upstream. The
        session row is closed and its requests cancelled already; `end` finds nothing to do there."""
        if self.core is None or self._ending is not None:
            return
        code = int(message.get("code") or events.STOPPED_CLOSE_CODE)
        reason = str(message.get("reason") or events.STOPPED_CLOSE_REASON)
        log.info("%s: session %s stopped by staff", self.name, self.session_id)
        self._upstream_reason = "stopped by staff"
        if not self.closing:
            self.closing = True
            with contextlib.suppress(Exception):
                await self.client.close(code, reason)
        await self.end(code)

    # --- Ending ----------------------------------------------------------------------------

    def fail(self, stage: str, exc: BaseException) -> None:
        """Something failed at `stage`: log it (the session's one line about it), close the
        client with a server error and end the session. Later failures of a session already
        ending are its echoes, not news."""
        if self._failing is not None or self._ending is not None:
            return
        log.error("%s: session %s failed %s", self.name, self.session_id, stage, exc_info=exc)
        events.upstream_error.send(session_id=self.session_id, error_type="session_failed")
        self._failing = asyncio.create_task(self._close_and_end())

    async def _close_and_end(self) -> None:
        if not self.closing:
            self.closing = True
            with contextlib.suppress(Exception):
                await self.client.close(self.server_error_code, "server_error")
        await self.end(self.server_error_code)

    async def end(self, code: int | None) -> None:
        """End the session, once, whoever calls first (`code`: the close code to record):
        stop reading, close upstream, let the database worker finish, leave the group, close
        the session row (which cancels its pending requests). Later calls wait for the first."""
        if self._ending is None:
            self._ending = asyncio.create_task(self._end(code))
        await asyncio.shield(self._ending)

    async def _end(self, code: int | None) -> None:
        self.closing = True
        core = self.core
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        if core is None:
            return
        leases.LEASES.release(core.session_id)
        try:
            await core.stop(reason=self._upstream_reason)
            if self.group is not None:
                with contextlib.suppress(Exception):
                    await self.client.leave(self.group)
            await database_sync_to_async(handlers.close_session)(core.session_id, code=code, reason=CLOSE_REASON)
        except Exception:
            log.exception("%s: session %s did not close cleanly", self.name, core.session_id)
