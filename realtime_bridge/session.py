"""The upstream side of one session, shared by the relay (RelayConsumer) and the sideband
bridge (run_bridge): reading upstream frames, handing the ones that matter to
`handlers.dispatch` in order, the follow-up `response.create`, and the outbox drain.

What differs between the two is only what happens to a frame besides that: the relay passes
it on to its client (the `forward` callback of `read()`), a sideband keeps it to itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async

from realtime_bridge import client, handlers, holding, outbound, protocol

log = logging.getLogger(__name__)

# How often a session with undelivered decisions checks the outbox by itself, in case the
# nudge over the channel layer (at-most-once) was lost.
OUTBOX_POLL_SECONDS = 1.0

# Runs a sync (Django) function off the event loop: `database_sync_to_async` by default.
DbCall = Callable[[Callable[..., Any]], Callable[..., Awaitable[Any]]]
# Passes on a frame that was not parsed: bytes, or a high-volume type (protocol.SERVER_PASSTHROUGH).
Passthrough = Callable[[str | bytes], Awaitable[None]]
# Passes on a parsed text frame: the text, and the event (None when it was not a JSON object).
Forward = Callable[[str, dict[str, Any] | None], Awaitable[None]]
# Told where (a stage, for the log) and why a session cannot go on.
FailureHook = Callable[[str, BaseException], None]


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
        self.ids: list[str] = []  # the answered requests the next follow-up tells of

    def want(self, approval_request_id: str) -> None:
        if approval_request_id in self.done_for:
            return
        self.done_for.add(approval_request_id)
        self.ids.append(approval_request_id)
        self.state = "wanted"

    def should_send(self) -> bool:
        if self.state == "wanted" and not self.response_active:
            self.state = "requested"
            self.response_active = True  # optimistic: ours is on its way
            return True
        return False


class UpstreamSession:
    """One upstream socket and the session row it belongs to.

    `start()` runs the database worker (events applied in order, off the reading path) and the
    outbox poll; `read()` reads until upstream closes; `drain_outbox()` sends decided answers
    (called on a nudge, by the poll, and on (re)attach); `stop()` ends the tasks, letting the
    database worker finish what it was given.
    """

    def __init__(
        self,
        upstream: client.Upstream,
        session_id: int,
        *,
        name: str = "relay",
        db: DbCall = database_sync_to_async,
        poll: bool = True,
        on_failure: FailureHook | None = None,
    ) -> None:
        """`db`: how database work leaves the event loop. `poll`: whether this session polls the
        outbox itself (the sideband bridge polls for all its sessions at once instead).
        `on_failure` (stage, error), when set, is told of an event the database worker could not
        apply, and the worker stops; without it the error is logged and the worker goes on."""
        self.upstream = upstream
        self.session_id = session_id
        self.name = name
        self.db = db
        self.poll = poll
        self.on_failure = on_failure
        self.closing = False
        self.followup = FollowUp()
        self.holding = holding.HoldingLine()
        self.undelivered: set[str] = set()
        self.sent_ids: set[int] = set()
        self.db_queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.outbox_lock = asyncio.Lock()
        self._db_task: asyncio.Task[None] | None = None
        self._poll_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._db_task = asyncio.create_task(self._db_worker())
        if self.poll:
            self._poll_task = asyncio.create_task(self._poll_outbox())

    # --- Upstream frames -------------------------------------------------------------------

    async def read(
        self, *, passthrough: Passthrough | None = None, forward: Forward | None = None
    ) -> client.UpstreamClosed:
        """Read upstream frames until the socket closes; returns how it closed. A relay passes
        every frame on to its client through the two callbacks; a sideband gives none."""
        upstream = self.upstream
        while True:
            try:
                frame = await upstream.recv()
            except client.UpstreamClosed as closed:
                return closed
            if isinstance(frame, bytes) or protocol.sniff_server_type(frame):
                if passthrough is not None:
                    await passthrough(frame)
                continue
            try:
                event = json.loads(frame)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                event = None
            if forward is not None:
                await forward(frame, event)
            if event is not None:
                try:
                    await self.handle(event.get("type"), event)
                except client.UpstreamClosed as closed:
                    return closed  # closed under the follow-up response.create

    async def handle(self, kind: str | None, event: dict[str, Any]) -> None:
        """Queue the event for the database if a handler wants it, and track the response
        lifecycle and the items that call for a follow-up response."""
        if kind in handlers.HANDLED_TYPES:
            self.db_queue.put_nowait(event)
        self.holding.observe(kind, event)
        followup = self.followup
        if kind == "response.created":
            followup.response_active = True
            if followup.state == "requested":
                followup.state = None
                followup.ids.clear()  # told: kept until then, for a refused follow-up's retry
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
                followup.ids.clear()
        await self._speak_if_quiet()

    async def _speak_if_quiet(self) -> None:
        """Ask for the follow-up when it is due; else, with no response active, for the oldest
        holding line still to say (holding.py). Each earns response.created, which keeps the
        next one waiting for its response.done."""
        followup = self.followup
        if followup.should_send():
            instructions = self.holding.outcome_for(followup.ids)
            await self.upstream.send(protocol.response_create_event(instructions=instructions))
            return
        if followup.response_active or followup.state == "wanted":
            return
        due = self.holding.due()
        if due is not None:
            approval_id, instructions = due
            event_id = protocol.new_event_id()
            followup.response_active = True  # optimistic, as for the follow-up
            self.holding.mark_sent(event_id, approval_id, instructions)
            await self.upstream.send(
                protocol.response_create_event(instructions=instructions, tool_choice="none", event_id=event_id)
            )

    async def _db_worker(self) -> None:
        """Apply upstream events to the database in order, without holding up the reading."""
        while True:
            event = await self.db_queue.get()
            if event is None:
                return
            try:
                frames = await self.db(handlers.dispatch)(self.session_id, event)
                for frame in frames or ():
                    await self.upstream.send(frame)
                await self._hold(event)
            except client.UpstreamClosed:
                pass  # the reader sees the close too and ends the session
            except Exception as exc:
                if self.on_failure is not None:
                    # An event it could not record (an approval request no one would see):
                    # the owner ends the session rather than carry on without it.
                    self.on_failure("recording upstream events", exc)
                    return
                log.exception("%s: session %s could not record %s", self.name, self.session_id, event.get("type"))

    async def _hold(self, event: dict[str, Any]) -> None:
        """After an approval request is recorded: its holding line, if it waits for staff."""
        item = event.get("item") or {}
        if item.get("type") != "mcp_approval_request" or not self.holding.voice or not item.get("id"):
            return
        try:
            line = await self.db(holding.line_for)(self.session_id, str(item["id"]))
        except Exception:
            # A holding line is a courtesy: the session goes on without it.
            log.exception("%s: session %s could not prepare a holding line", self.name, self.session_id)
            return
        self.holding.hold(str(item["id"]), line)
        await self._speak_if_quiet()

    # --- Decisions (outbox) ----------------------------------------------------------------

    async def _poll_outbox(self) -> None:
        while True:
            await asyncio.sleep(OUTBOX_POLL_SECONDS)
            if self.undelivered:
                try:
                    await self.drain_outbox()
                except client.UpstreamClosed:
                    return  # the reader sees the close too and ends the session
                except Exception:
                    log.exception("%s: session %s outbox poll failed", self.name, self.session_id)

    async def drain_outbox(self) -> None:
        """Send every decided answer of this session the database says is unsent."""
        if self.closing:
            return
        async with self.outbox_lock:
            decisions = await self.db(outbound.unsent)(self.session_id)
            await self._send_locked(decisions)

    async def deliver(self, decision: outbound.Decision) -> None:
        """Send one answer a nudge carried: the committed decision itself (approvals.events), so
        the guest does not wait for a database read. Exactly once as in drain_outbox: under the
        same lock, skipped when sent already, marked after."""
        if self.closing:
            return
        async with self.outbox_lock:
            await self._send_locked([decision])

    async def _send_locked(self, decisions: list[outbound.Decision]) -> None:
        sent = []
        for decision in decisions:
            if decision.request_id in self.sent_ids:
                continue  # sent already; its mark may not have committed yet
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
            self.holding.answered(decision.approval_request_id, approve=decision.approve, reason=decision.reason)
            if not decision.approve:
                # No tool runs, so no mcp_call may ever come: ask the model to tell the guest.
                self.followup.want(decision.approval_request_id)
        if sent:
            await self._speak_if_quiet()
            await self.db(outbound.mark_sent)(sent)

    # --- Closing -----------------------------------------------------------------------------

    async def stop(self, *, reason: str = "session ended", db_timeout: float = 30) -> None:
        """Stop polling, close the upstream socket, and let the database worker finish the
        events it already has (a decision must not lose the request it answers)."""
        self.closing = True
        if self._poll_task is not None:
            self._poll_task.cancel()
        await self.upstream.close(code=1000, reason=reason)
        if self._db_task is not None:
            self.db_queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._db_task, timeout=db_timeout)
