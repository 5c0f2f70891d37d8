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

from approvals import events
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


def _error_type(event: dict[str, Any]) -> str:
    """The `type` of an upstream `error` event (invalid_request_error, server_error, ...), for
    the metrics: a short known word, never free text."""
    kind = str((event.get("error") or {}).get("type") or "unknown")
    return kind if kind.replace("_", "").isalnum() and len(kind) <= 40 else "other"


# How long the relay waits, after a tool call finished or a denial went upstream, for a
# response the client (or the server) starts itself, before it asks for one (docs/agents-js.md,
# "One reply"). agents-js answers the mcp_call's conversation.item.done at once, so the window
# needs to cover one client round trip, not a human; a client that never asks hears the
# outcome this much later.
FOLLOWUP_GRACE_SECONDS = 0.75


class FollowUp:
    """Whether and when the relay sends `response.create` so that the model tells the guest
    what happened after a tool call: exactly one reply, whoever asks for it.

    The rule (documented in docs/agents-js.md and REALTIME_PROTOCOL.md sections 5.1 and 5.5):
    - A tool call that finished (the `mcp_call` item is done) or a denial the relay sent owes the
      guest one reply, once per approval request.
    - For `grace` seconds the relay waits: if the client sends its own `response.create`
      (agents-js does, `automaticallyTriggerResponseForMcpToolCalls`), or any response starts
      upstream (server VAD, a sideband's client), or the model already speaks after the call
      (the `held` profile), the reply is theirs and the relay sends nothing.
    - Otherwise the relay sends its own once no response is active (never while one is:
      `conversation_already_has_active_response`). A client `response.create` that arrives
      while the relay's follow-up is on its way or running is the same request come late: it is
      absorbed (not sent upstream), and the client sees the relay's response instead. A second
      call that finishes while the relay's reply runs gets another reply right after it.

    States: None (nothing owed), "waiting" (in the grace window), "wanted" (the relay will send
    when no response is active), "requested" (sent, not yet created), "ours" (running).
    """

    def __init__(self, grace: float = FOLLOWUP_GRACE_SECONDS) -> None:
        self.grace = grace
        self.response_active = False
        self.state: str | None = None
        self.done_for: set[str] = set()
        self.again = False
        self.ids: list[str] = []  # the answered requests the next follow-up tells of (holding.py)

    def want(self, approval_request_id: str) -> bool:
        """A reply is owed for this request; True when a grace window starts (the caller times it)."""
        if approval_request_id in self.done_for:
            return False
        self.done_for.add(approval_request_id)
        self.ids.append(approval_request_id)
        if self.state in ("requested", "ours"):
            # A second call finished while the relay's reply to the first is on its way: that
            # reply may not know of it, so another follows once it is done.
            self.again = True
            return False
        self.state = "waiting"
        return True

    def grace_over(self) -> None:
        if self.state == "waiting":
            self.state = "wanted"

    def client_response_create(self) -> bool:
        """The client sent `response.create`: True to pass it upstream, False to absorb it."""
        if self.state in ("requested", "ours"):
            return False
        if self.state in ("waiting", "wanted"):
            self.state = None  # the client asked for the reply itself
            self.ids.clear()
        self.response_active = True
        return True

    def observe(self, kind: str | None, event: dict[str, Any]) -> None:
        """Track an upstream event: the response lifecycle and the model speaking."""
        if kind == "response.created":
            self.response_active = True
            if self.state == "requested":
                self.state = "ours"
                self.ids.clear()  # told: kept until now, for a refused follow-up's retry
            elif self.state in ("waiting", "wanted") and (event.get("response") or {}).get("conversation_id", ""):
                # A response someone else started in the conversation (the client's, server VAD,
                # a sideband's client) gives the reply; an out-of-band one (no conversation) does not.
                self.state = None
                self.ids.clear()
        elif kind == "response.done":
            self.response_active = False
            if self.state == "ours":
                self.state = "wanted" if self.again else None
                self.again = False
        elif kind == "error":
            if (event.get("error") or {}).get("code") == "conversation_already_has_active_response":
                self.response_active = True
                if self.state == "requested":
                    self.state = "wanted"  # ours was refused: try again after response.done
        elif kind == "conversation.item.done":
            item = event.get("item") or {}
            spoke = item.get("type") == "message" and item.get("role") == "assistant"
            if spoke and self.state in ("waiting", "wanted"):
                self.state = None  # the model already spoke after the tool call
                self.ids.clear()

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
        followup_grace: float | None = None,
    ) -> None:
        """`db`: how database work leaves the event loop. `poll`: whether this session polls the
        outbox itself (the sideband bridge polls for all its sessions at once instead).
        `on_failure` (stage, error), when set, is told of an event the database worker could not
        apply, and the worker stops; without it the error is logged and the worker goes on.
        `followup_grace`: seconds to wait for someone else's reply after a tool call (FollowUp;
        None: FOLLOWUP_GRACE_SECONDS)."""
        self.upstream = upstream
        self.session_id = session_id
        self.name = name
        self.db = db
        self.poll = poll
        self.on_failure = on_failure
        self.closing = False
        self.followup = FollowUp(FOLLOWUP_GRACE_SECONDS if followup_grace is None else followup_grace)
        self.holding = holding.HoldingLine()
        self._grace_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
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
            if event is not None:
                # Before the client sees the frame: its answer to it (agents-js's response.create
                # after an mcp_call) must find the follow-up already owed (FollowUp).
                self.observe(event.get("type"), event)
            if forward is not None:
                await forward(frame, event)
            if event is not None:
                try:
                    await self.send_followup()
                except client.UpstreamClosed as closed:
                    return closed  # closed under the follow-up response.create

    async def handle(self, kind: str | None, event: dict[str, Any]) -> None:
        """`observe` the event, then send the follow-up if one is due now."""
        self.observe(kind, event)
        await self.send_followup()

    def observe(self, kind: str | None, event: dict[str, Any]) -> None:
        """Queue the event for the database if a handler wants it, and track the response
        lifecycle and the items that owe the guest a reply (FollowUp)."""
        if kind in handlers.HANDLED_TYPES:
            self.db_queue.put_nowait(event)
        self.holding.observe(kind, event)
        self.followup.observe(kind, event)
        if kind == "error":
            events.upstream_error.send(session_id=self.session_id, error_type=_error_type(event))
        elif kind == "conversation.item.done":
            item = event.get("item") or {}
            if item.get("type") == "mcp_approval_request" and item.get("id"):
                self.undelivered.add(str(item["id"]))
            elif item.get("type") == "mcp_call" and item.get("approval_request_id"):
                self._want_followup(str(item["approval_request_id"]))

    def _want_followup(self, approval_request_id: str) -> None:
        if self.followup.want(approval_request_id):
            if self._grace_timer is not None:
                self._grace_timer.cancel()
            self._grace_timer = asyncio.get_running_loop().call_later(self.followup.grace, self._grace_over)

    def _grace_over(self) -> None:
        self._grace_timer = None
        self.followup.grace_over()
        if self.followup.state == "wanted" and not self.closing:
            task = asyncio.create_task(self._send_followup_quietly())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_followup_quietly(self) -> None:
        try:
            await self.send_followup()
        except client.UpstreamClosed:
            pass  # the reader sees the close too and ends the session
        except Exception:
            log.exception("%s: session %s could not send the follow-up response", self.name, self.session_id)

    async def send_followup(self) -> None:
        """Ask for the follow-up when it is due, with instructions from the answers' reasons only
        (holding.py); else, with no response active and no reply owed, for the oldest holding line
        still to say. Each earns response.created, which keeps the next waiting for response.done."""
        followup = self.followup
        if followup.should_send():
            instructions = self.holding.outcome_for(followup.ids)
            await self.upstream.send(protocol.response_create_event(instructions=instructions))
            return
        if followup.response_active or followup.state is not None:
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

    # The holding line's and the follow-up's one way out (holding.py calls it by this name).
    _speak_if_quiet = send_followup

    def client_response_create(self) -> bool:
        """The client sent `response.create`: True to pass it upstream (FollowUp)."""
        return self.followup.client_response_create()

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
                    if not self.closing:
                        await self.db(outbound.expire_missed_deadlines)(self.session_id)
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
                # No tool runs, so an mcp_call may never come: the guest is owed a reply now.
                self._want_followup(decision.approval_request_id)
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
        if self._grace_timer is not None:
            self._grace_timer.cancel()
        await self.upstream.close(code=1000, reason=reason)
        if self._db_task is not None:
            self.db_queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._db_task, timeout=db_timeout)
