"""The sideband bridge: one process (`manage.py run_bridge`) holding a `?call_id=` socket per
live call (REALTIME_PROTOCOL.md section 8.1), catching approval requests exactly like the relay
(the shared realtime_bridge.session.UpstreamSession) and sending the decisions back.

- Which calls: the database is the truth. On start and every RESCAN_SECONDS the bridge reads
  the live calls (`Call.objects.live()`) and attaches to those it does not hold; a nudge on the
  channel-layer group `calls.BRIDGE_CALLS_GROUP` after an accept only makes that immediate.
- Decisions: each attached session listens on its own channel, joined to
  `events.session_group(session_id)`, for the `relay.decision` nudge; the outbox poll and a
  drain on every (re)attach make up for a lost nudge or a decision made while the bridge was down.
- The end of a call: a sideband closed normally (1000), or refused with `call_id_not_found`
  on a reattach, means the call is over: `calls.end_call` closes its session, which cancels its
  pending requests. Any other close (a network drop, a restart upstream) is retried with backoff.
- A bridge that stops (SIGTERM) or dies leaves its calls live: they belong to the caller, not
  to our socket, and the next bridge reattaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from approvals import events
from approvals.models import ApprovalRequest
from realtime_bridge import calls, client
from realtime_bridge.models import Call
from realtime_bridge.session import OUTBOX_POLL_SECONDS, UpstreamSession

log = logging.getLogger(__name__)

RESCAN_SECONDS = 5.0
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)
# Close codes of a sideband that mean "this call is over", not "try again".
CALL_OVER_CODES = frozenset({1000, 4000})
# The bridge's database work runs on a pool of threads, not on Channels' one shared thread: with
# hundreds of calls the reads and writes of different sessions would otherwise queue behind each
# other. Each session still applies its own events in order (its db worker awaits each one).
_DB_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="bridge-db")


def db(func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    # DatabaseSyncToAsync closes stale connections before and after, in whichever thread it runs.
    return database_sync_to_async(func, thread_sensitive=False, executor=_DB_POOL)  # type: ignore[call-arg]


def _live_calls() -> list[tuple[int, str, int]]:
    return list(Call.objects.live().filter(session__isnull=False).values_list("pk", "call_id", "session_id"))


def _call_if_live(call_pk: int) -> tuple[int, str, int] | None:
    return (
        Call.objects.live().filter(pk=call_pk, session__isnull=False).values_list("pk", "call_id", "session_id").first()
    )


def _sessions_with_unsent(session_ids: list[int]) -> set[int]:
    rows = ApprovalRequest.objects.unsent_decisions().filter(session_id__in=session_ids).values_list("session_id")
    return {session_id for (session_id,) in rows}


class Bridge:
    """Holds the sideband sessions of one process. `run()` until `stop` is set."""

    def __init__(self) -> None:
        self.tasks: dict[int, asyncio.Task[None]] = {}  # call pk → its attach loop
        self.sessions: dict[int, UpstreamSession] = {}  # call pk → its current socket's session
        self.stopping = False
        self.layer = get_channel_layer()

    async def run(self, stop: asyncio.Event) -> None:
        listener = asyncio.create_task(self._listen_for_calls())
        poller = asyncio.create_task(self._poll_outboxes())
        try:
            while not stop.is_set():
                await self.rescan()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RESCAN_SECONDS)
        finally:
            self.stopping = True
            await _cancel(listener)
            await _cancel(poller)
            await self.shutdown()

    async def rescan(self) -> None:
        try:
            live = await db(_live_calls)()
        except Exception:
            log.exception("bridge: could not read the live calls")
            return
        for call_pk, call_id, session_id in live:
            self.ensure(call_pk, call_id, session_id)

    def ensure(self, call_pk: int, call_id: str, session_id: int) -> None:
        task = self.tasks.get(call_pk)
        if (task is None or task.done()) and not self.stopping:
            task = asyncio.create_task(self._hold(call_pk, call_id, session_id))
            self.tasks[call_pk] = task
            task.add_done_callback(partial(self._forget, call_pk))

    def _forget(self, call_pk: int, task: asyncio.Task[None]) -> None:
        # A long-running bridge sees many calls come and go: keep only the ones it holds.
        if self.tasks.get(call_pk) is task:
            del self.tasks[call_pk]

    async def _listen_for_calls(self) -> None:
        if self.layer is None:
            return
        channel = await self.layer.new_channel()
        await self.layer.group_add(calls.BRIDGE_CALLS_GROUP, channel)
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bridge: channel layer receive failed")
                await asyncio.sleep(1)
                continue
            if message.get("type") == calls.BRIDGE_ATTACH:
                found = await db(_call_if_live)(int(message["call"]))
                if found:
                    self.ensure(*found)

    async def _poll_outboxes(self) -> None:
        """One query a second for every held session, rather than one per session: decisions
        whose nudge was lost (the channel layer is at-most-once) still go out."""
        while True:
            await asyncio.sleep(OUTBOX_POLL_SECONDS)
            held = {s.session_id: s for s in self.sessions.values()}
            if not held:
                continue
            try:
                due = await db(_sessions_with_unsent)(list(held))
            except Exception:
                log.exception("bridge: outbox poll failed")
                continue
            await asyncio.gather(*(self._drain(held[session_id]) for session_id in due), return_exceptions=True)

    @staticmethod
    async def _drain(session: UpstreamSession) -> None:
        try:
            await session.drain_outbox()
        except client.UpstreamClosed:
            pass  # its reader sees the close too
        except Exception:
            log.exception("bridge: session %s could not send a decision", session.session_id)

    async def _hold(self, call_pk: int, call_id: str, session_id: int) -> None:
        """Keep a sideband attached to the call until the call is over."""
        failures = 0
        while not self.stopping:
            try:
                upstream = await client.connect(
                    api_key=settings.OPENAI_API_KEY, base_url=settings.OPENAI_BASE_URL, call_id=call_id
                )
            except Exception as exc:
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                log.warning("bridge: attach to %s failed (%s); retrying in %.1f s", call_id, exc, delay)
                await asyncio.sleep(delay)
                continue
            session = UpstreamSession(upstream, session_id, name="sideband", db=db, poll=False)
            closed = await self._serve(call_pk, session)
            if self.stopping:
                return
            if closed is not None and closed.code in CALL_OVER_CODES:
                outcome = "The call ended." if closed.code == 1000 else "The call is gone upstream."
                log.info("bridge: call %s over (%s %s)", call_id, closed.code, closed.reason)
                await db(calls.end_call)(call_pk, outcome=f"{outcome} {closed.reason}".strip(), code=closed.code)
                return
            delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
            failures += 1
            log.warning("bridge: sideband of %s dropped (%s); reattaching in %.1f s", call_id, closed, delay)
            await asyncio.sleep(delay)

    async def _serve(self, call_pk: int, session: UpstreamSession) -> client.UpstreamClosed | None:
        """One sideband socket, from attach to close."""
        self.sessions[call_pk] = session
        session.start()
        listener: asyncio.Task[None] | None = None
        reader: asyncio.Task[client.UpstreamClosed] | None = None
        channel = None
        group = events.session_group(session.session_id)
        try:
            if self.layer is not None:
                channel = await self.layer.new_channel()
                await self.layer.group_add(group, channel)
                listener = asyncio.create_task(self._listen_for_decisions(channel, session))
            # Decisions made while no socket was attached (a bridge restart) go now.
            reader = asyncio.create_task(session.read())
            await session.drain_outbox()
            return await reader
        except client.UpstreamClosed as closed:
            return closed
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("bridge: sideband of call %s failed", call_pk)
            return None
        finally:
            for task in (listener, reader):
                if task is not None:
                    await _cancel(task)
            if channel is not None and self.layer is not None:
                with contextlib.suppress(Exception):
                    await self.layer.group_discard(group, channel)
            await session.stop()
            if self.sessions.get(call_pk) is session:
                del self.sessions[call_pk]

    async def _listen_for_decisions(self, channel: str, session: UpstreamSession) -> None:
        assert self.layer is not None
        while True:
            message: dict[str, Any] = await self.layer.receive(channel)
            if message.get("type") == events.RELAY_DECISION:
                await self._drain(session)

    async def shutdown(self) -> None:
        """Detach from every call, leaving the calls (and their sessions) live."""
        self.stopping = True
        for task in list(self.tasks.values()):
            await _cancel(task)


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel a task and wait for it: the channel layer unsubscribes in a cancelled receive(),
    which must finish before the loop closes (else it is cancelled a second time, mid-way)."""
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        await task
