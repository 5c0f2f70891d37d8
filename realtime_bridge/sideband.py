"""The sideband bridge: `manage.py run_bridge` processes holding a `?call_id=` socket per live
call (REALTIME_PROTOCOL.md section 8.1), catching approval requests exactly like the relay
(the shared realtime_bridge.session.UpstreamSession) and sending the decisions back.

- Which calls: the database is the truth, and each call is held by one bridge at a time, through
  a lease on its row (`Call.leased_by`, `Call.lease_expires_at`, BRIDGE_LEASE_SECONDS). On start
  and every tick (RESCAN_SECONDS, or a third of the lease if shorter) a bridge renews the leases
  it holds and claims live calls that nobody holds (new ones, released ones, or ones whose
  holder died and let its lease expire), up to its fair share (`_claim_calls`); each claim is a
  conditional UPDATE, so of two bridges one wins. A nudge on the channel-layer group
  `events.BRIDGE_CALLS` after an accept makes the claim immediate; the least busy bridge
  tries first. A bridge detaches from a call it no longer holds (taken over while it could not
  renew), and from all of them once it has not been able to renew for a whole lease.
- Decisions: each attached session listens on its own channel, joined to
  `events.session_group(session_id)`, for the `relay.decision` nudge; the outbox poll and a
  drain on every (re)attach make up for a lost nudge or a decision made while the bridge was down.
- The end of a call: a sideband closed normally (1000), or refused with `call_id_not_found`
  on a reattach, means the call is over: `calls.end_call` closes its session, which cancels its
  pending requests. Any other close (a network drop, a restart upstream) is retried with backoff.
- A bridge that stops (SIGTERM) or dies leaves its calls live: they belong to the caller, not
  to our socket. One that stops releases its leases and nudges the other bridges, which attach at
  once; one that dies leaves them to expire, and another bridge (or its own restart: a new
  process is a new holder) takes them over then. Either way the new holder sends, on attach, the
  decisions made meanwhile (the outbox). Within a lease's overlap (a holder frozen past its
  lease, then back) two bridges may briefly both be attached; the holder that lost its lease
  detaches at its next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from approvals import events
from approvals.models import ApprovalRequest
from realtime_bridge import calls, client
from realtime_bridge.models import Call
from realtime_bridge.session import OUTBOX_POLL_SECONDS, UpstreamSession

log = logging.getLogger(__name__)

RESCAN_SECONDS = 5.0
# A nudged call is claimed after a pause this long per call the bridge already holds, so that
# the least busy bridge tends to win it; at most NUDGE_DELAY_MAX (the phone is still ringing).
NUDGE_DELAY_PER_CALL = 0.02
NUDGE_DELAY_MAX = 0.25
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)
# Close codes of a sideband that mean "this call is over", not "try again".
CALL_OVER_CODES = frozenset({1000, 4000})
# The bridge's database work runs on a pool of threads, not on Channels' one shared thread: with
# hundreds of calls the reads and writes of different sessions would otherwise queue behind each
# other. Each session still applies its own events in order (its db worker awaits each one).
_DB_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="bridge-db")


def db(func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    # DatabaseSyncToAsync closes stale connections before and after, in whichever thread it runs.
    return database_sync_to_async(func, thread_sensitive=False, executor=_DB_POOL)


def lease_seconds() -> float:
    return float(max(1, settings.BRIDGE_LEASE_SECONDS))


def _attachable() -> Any:
    return Call.objects.live().filter(session__isnull=False)


def _claimable(name: str, now: Any) -> Q:
    """Nobody holds it, its holder let the lease expire, or it is ours already."""
    return Q(leased_by="") | Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now) | Q(leased_by=name)


def _claim_calls(name: str) -> list[tuple[int, str, int]]:
    """Renew this bridge's leases and claim free calls up to its fair share: the live calls
    divided by the bridges holding any (counting this one). A bridge that holds none counts
    itself in, so no call is ever left out; one that holds its share leaves the rest to the
    others. Returns the calls this bridge holds now."""
    now = timezone.now()
    until = now + timedelta(seconds=lease_seconds())
    live = _attachable()
    live.filter(leased_by=name).update(lease_expires_at=until)
    holders = set(live.filter(lease_expires_at__gte=now).exclude(leased_by="").values_list("leased_by", flat=True))
    total = live.count()
    share = math.ceil(total / len(holders | {name})) if total else 0
    room = share - live.filter(leased_by=name).count()
    if room > 0:
        candidates = live.filter(_claimable(name, now)).exclude(leased_by=name).order_by("pk")
        free = list(candidates.values_list("pk", flat=True)[:room])
        if free:
            # Conditional again: another bridge may have claimed some since the read.
            live.filter(pk__in=free).filter(_claimable(name, now)).update(leased_by=name, lease_expires_at=until)
    return list(live.filter(leased_by=name).values_list("pk", "call_id", "session_id"))


def _claim_call(name: str, call_pk: int) -> tuple[int, str, int] | None:
    """Claim one call (a nudge). Returns it when this bridge holds it now."""
    now = timezone.now()
    live = _attachable().filter(pk=call_pk)
    live.filter(_claimable(name, now)).update(leased_by=name, lease_expires_at=now + timedelta(seconds=lease_seconds()))
    return live.filter(leased_by=name).values_list("pk", "call_id", "session_id").first()


def _release_calls(name: str) -> list[int]:
    """Let go of this bridge's calls (a clean stop): another bridge may claim them at once."""
    held = list(Call.objects.filter(leased_by=name).values_list("pk", flat=True))
    Call.objects.filter(pk__in=held, leased_by=name).update(leased_by="", lease_expires_at=None)
    return held


def _sessions_with_unsent(session_ids: list[int]) -> set[int]:
    rows = ApprovalRequest.objects.unsent_decisions().filter(session_id__in=session_ids).values_list("session_id")
    return {session_id for (session_id,) in rows}


def bridge_name() -> str:
    """`host:pid:nonce`: which process holds a call (the nonce, because pids repeat)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"[:100]


class Bridge:
    """Holds the sideband sessions of one process. `run()` until `stop` is set."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or bridge_name()
        self.tasks: dict[int, asyncio.Task[None]] = {}  # call pk → its attach loop
        self.sessions: dict[int, UpstreamSession] = {}  # call pk → its current socket's session
        self.stopping = False
        self.layer = get_channel_layer()
        # Claims and the reconciliation of a tick do not interleave: a tick must not drop a call
        # that a nudge claimed after the tick's read.
        self.claim_lock = asyncio.Lock()
        self.claims: set[asyncio.Task[None]] = set()  # nudged calls being claimed
        self.renewed_at = time.monotonic()

    @property
    def tick_seconds(self) -> float:
        return min(RESCAN_SECONDS, lease_seconds() / 3)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("bridge %s: started", self.name)
        listener = asyncio.create_task(self._listen_for_calls())
        poller = asyncio.create_task(self._poll_outboxes())
        try:
            while not stop.is_set():
                await self.rescan()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.tick_seconds)
        finally:
            self.stopping = True
            await _cancel(listener)
            await _cancel(poller)
            await self.shutdown()

    async def rescan(self) -> None:
        """One tick: renew and claim leases, attach to the calls held, detach from the others."""
        async with self.claim_lock:
            try:
                held = await db(_claim_calls)(self.name)
            except Exception:
                log.exception("bridge %s: could not renew its calls", self.name)
                if time.monotonic() - self.renewed_at > lease_seconds():
                    # Others may hold our calls by now: two sidebands on a call would both answer.
                    await self._detach(set(self.tasks))
                return
            self.renewed_at = time.monotonic()
            held_pks = {pk for pk, _, _ in held}
            await self._detach(set(self.tasks) - held_pks)
            for call_pk, call_id, session_id in held:
                self.ensure(call_pk, call_id, session_id)

    async def _detach(self, call_pks: set[int]) -> None:
        """Stop holding these calls' sidebands (the calls stay live: another bridge has them, or
        they ended)."""
        for call_pk in call_pks:
            task = self.tasks.pop(call_pk, None)
            if task is not None and not task.done():
                log.info("bridge %s: call %s is no longer held here; detaching", self.name, call_pk)
                await _cancel(task)

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
        await self.layer.group_add(events.BRIDGE_CALLS, channel)
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bridge: channel layer receive failed")
                await asyncio.sleep(1)
                continue
            if message.get("type") == events.BRIDGE_ATTACH:
                call_pk = int(message["call"])
                if call_pk not in self.tasks:
                    claim = asyncio.create_task(self._claim_nudged(call_pk))
                    self.claims.add(claim)
                    claim.add_done_callback(self.claims.discard)

    async def _claim_nudged(self, call_pk: int) -> None:
        # The least busy bridge tries first (module docstring); the claim decides.
        await asyncio.sleep(min(NUDGE_DELAY_MAX, len(self.tasks) * NUDGE_DELAY_PER_CALL))
        async with self.claim_lock:
            if self.stopping or call_pk in self.tasks:
                return
            try:
                found = await db(_claim_call)(self.name, call_pk)
            except Exception:
                log.exception("bridge %s: could not claim call %s", self.name, call_pk)
                return
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
                upstream = await client.connect(call_id=call_id)
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
        """Detach from every call, leaving the calls (and their sessions) live, then release them
        and tell the other bridges, so that one of them attaches at once."""
        self.stopping = True
        for task in [*self.claims, *self.tasks.values()]:
            await _cancel(task)
        try:
            released = await db(_release_calls)(self.name)
        except Exception:
            log.exception("bridge %s: could not release its calls; they pass on when the leases expire", self.name)
            return
        if self.layer is None:
            return
        for call_pk in released:
            with contextlib.suppress(Exception):
                await self.layer.group_send(events.BRIDGE_CALLS, {"type": events.BRIDGE_ATTACH, "call": call_pk})


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel a task and wait for it: the channel layer unsubscribes in a cancelled receive(),
    which must finish before the loop closes (else it is cancelled a second time, mid-way)."""
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        await task
