"""What a Realtime session's work writes to: its conversation, its responses and its attached sockets.

simulator/listing.py (tool import) and simulator/turns.py (responses) take a Conversation, and
simulator/realtime.py builds the session on top of it, so that neither of them needs the session's
client-event handling. REALTIME_PROTOCOL.md is the specification; section numbers refer to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from simulator.ids import new_id
from simulator.state import Call, SimulatorState
from simulator.validation import checked

logger = logging.getLogger(__name__)


@dataclass
class McpServer:
    """One `server_label` of the session: its definition and the outcome of listing its tools (section 4)."""

    label: str
    definition: dict[str, Any]
    list_item_id: str
    status: str = "listing"  # listing | completed | failed
    tools: list[dict[str, Any]] = field(default_factory=list)
    failure: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Response:
    id: str
    in_conversation: bool
    modalities: list[str]
    metadata: dict[str, str] | None
    tool_choice: Any
    context: list[dict[str, Any]] | None
    servers: dict[str, McpServer]
    voice: str
    output: list[dict[str, Any]] = field(default_factory=list)
    status: str = "in_progress"
    task: asyncio.Task[None] | None = None
    tokens_out: int = 0
    finished: bool = False
    # This response's own instructions (response.create), which replace the session's for it.
    instructions: str | None = None


@dataclass
class PendingApproval:
    request: dict[str, Any]
    call: dict[str, Any]
    output_index: int
    response: Response
    server: McpServer


class Conversation:
    """A session's items, MCP servers, pending approvals and active response, and the sockets its
    server events go to. `call` is the SIP or WebRTC call that owns the session, if any."""

    def __init__(self, state: SimulatorState, *, call: Call | None = None) -> None:
        self.state = state
        self.config = state.config
        self.call = call
        self.id = new_id("sess")
        self.conversation_id = new_id("conv")
        self.items: list[dict[str, Any]] = []
        self.servers: dict[str, McpServer] = {}
        self.pending_approvals: dict[str, PendingApproval] = {}
        self.active: Response | None = None
        self.ended = False
        self._sockets: list[WebSocket] = []
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def socket_count(self) -> int:
        """How many sockets are attached now (for a call: its sidebands)."""
        return len(self._sockets)

    def frame(self, payload: dict[str, Any]) -> str:
        """The text frame of one server event (strictly validated first under --validate-events)."""
        if self.config.validate_events:
            checked(payload)
        return json.dumps(payload)

    async def emit(self, *batch: dict[str, Any]) -> None:
        """Send events, in order and without interleaving, to every attached socket."""
        async with self._lock:
            frames = [self.frame(e) for e in batch]
            for websocket in list(self._sockets):
                try:
                    for frame in frames:
                        await websocket.send_text(frame)
                except Exception:
                    logger.info("dropping a socket of %s that failed to send", self.id)
                    self._sockets.remove(websocket)

    async def reply(self, websocket: WebSocket, payload: dict[str, Any]) -> None:
        """Send one event to one socket only (an error caused by that socket's client event)."""
        async with self._lock:
            if websocket in self._sockets:
                with contextlib.suppress(Exception):
                    await websocket.send_text(self.frame(payload))

    def append_item(self, item: dict[str, Any]) -> str | None:
        """Add an item at the end of the conversation; returns the previous item's id (section 2)."""
        previous = self.items[-1]["id"] if self.items else None
        self.items.append(item)
        return previous

    def previous_of(self, item_id: str) -> str | None:
        for n, item in enumerate(self.items):
            if item["id"] == item_id:
                return self.items[n - 1]["id"] if n else None
        return None

    def find(self, item_id: str) -> dict[str, Any] | None:
        return next((i for i in self.items if i["id"] == item_id), None)

    def response_finished(self, resp: Response) -> None:
        if self.active is resp:
            self.active = None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` as work of this session: end() cancels it."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def end(self, code: int = 1000, reason: str = "call ended") -> None:
        """Close every attached socket and stop all work of this session."""
        if self.ended:
            return
        self.ended = True
        for task in list(self._tasks):
            task.cancel()
        async with self._lock:
            sockets, self._sockets = self._sockets, []
        for websocket in sockets:
            with contextlib.suppress(Exception):
                if websocket.application_state != WebSocketState.DISCONNECTED:
                    await websocket.close(code=code, reason=reason)
