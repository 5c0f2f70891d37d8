"""A Realtime session: its config, conversation, MCP servers, responses and attached WebSockets.

REALTIME_PROTOCOL.md is the specification; section numbers below refer to it. simulator/endpoint.py serves
`GET /v1/realtime`; simulator/conversation.py holds what the session's work writes to (items, sockets);
simulator/items.py handles the `conversation.item.*` events; simulator/listing.py imports MCP tools and
simulator/turns.py runs responses. A `?model=` session belongs
to its socket and dies with it; a SIP or WebRTC call owns a RealtimeSession that any number of
`?call_id=` sockets attach to (section 8.1), each receiving every server event. Errors caused by a
client event go only to the socket that sent it.

Reference: https://platform.openai.com/docs/api-reference/realtime-client-events
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from simulator import events, items, listing, turns
from simulator.conversation import Conversation, McpServer, Response
from simulator.events import event
from simulator.ids import new_id
from simulator.session_config import InvalidRequest, check_response, merge_session
from simulator.state import Call, SimulatorState

# 100 ms of 24 kHz 16-bit mono, the smallest buffer the API commits [independent repos, section 2.1].
_MIN_COMMIT_BYTES = 4800


class RealtimeSession(Conversation):
    """One Realtime session: its config, conversation, MCP servers, responses and attached sockets.

    `state`: the process's SimulatorState. `session_config`: the initial session (a client secret's or a
    SIP accept's body; `{}` for a plain `?model=` socket); raises InvalidRequest if it is not acceptable.
    """

    def __init__(
        self, state: SimulatorState, *, session_config: dict[str, Any], model: str, call: Call | None = None
    ) -> None:
        super().__init__(state, call=call)
        self.model = model
        self.definitions: dict[str, dict[str, Any]] = {}
        session, resolved = merge_session(events.default_session(model, self.id), session_config or {}, {}, stored=True)
        session["model"] = model
        self.session = session
        self._initial_tools = resolved or {}
        self._started = False
        self._audio_bytes = 0
        self._handlers: dict[str, Callable[[WebSocket, dict[str, Any]], Awaitable[None]]] = {
            "session.update": self._session_update,
            "session.close": self._session_close,
            "input_audio_buffer.append": self._audio_append,
            "session.input_audio_buffer.append": self._audio_append,
            "input_audio_buffer.commit": self._audio_commit,
            "input_audio_buffer.clear": self._audio_clear,
            "conversation.item.create": partial(items.create, self),
            "conversation.item.truncate": partial(items.truncate, self),
            "conversation.item.delete": partial(items.delete, self),
            "conversation.item.retrieve": partial(items.retrieve, self),
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
        }
        if call is not None:
            # Section 1.4: only WebRTC, SIP and sideband connections have an output audio buffer to clear.
            self._handlers["output_audio_buffer.clear"] = self._output_audio_clear

    # ---- public API (also used by the HTTP side for SIP and WebRTC calls) -------------------------------

    async def start(self) -> None:
        """Begin importing the configured MCP tools. Idempotent; attach() calls it if nobody did."""
        if self._started:
            return
        self._started = True
        self._apply_tools(self._initial_tools)

    async def attach(self, websocket: WebSocket) -> None:
        """Serve one accepted WebSocket on this session until it closes: session.created, then client events."""
        async with self._lock:
            if self.ended:
                return
            # Section 1.4: session.created is the first server event, on sideband connects too [INFERRED].
            try:
                await websocket.send_text(self.frame(event("session.created", session=copy.deepcopy(self.session))))
            except Exception:
                return  # gone before the first event
            self._sockets.append(websocket)
        await self.start()
        try:
            while not self.ended:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("text") is not None:
                    await self._handle_text(websocket, message["text"])
                else:
                    # Section 1.1: a binary frame gets a non-fatal invalid_event [CAPTURE].
                    await self.reply(
                        websocket, events.error("Invalid event: binary frames are not supported.", code="invalid_event")
                    )
        except (WebSocketDisconnect, RuntimeError):
            pass  # the peer went away, or end() closed the socket under us
        finally:
            if websocket in self._sockets:
                self._sockets.remove(websocket)

    async def inject_user_text(self, text: str) -> None:
        """As if the caller said `text`: a user message item, then a response as server VAD would start one."""
        item = {
            "id": new_id("item"),
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_text", "text": text}],
        }
        previous = self.append_item(item)
        await self.emit(
            event("conversation.item.added", previous_item_id=previous, item=copy.deepcopy(item)),
            event("conversation.item.done", previous_item_id=previous, item=copy.deepcopy(item)),
        )
        detection = (self.session.get("audio") or {}).get("input", {}).get("turn_detection")
        if detection and detection.get("create_response", True) and self.active is None:
            self._start_response({}, None)

    async def tools_ready(self) -> None:
        """Wait until every MCP server of the session finished listing (completed or failed)."""
        await asyncio.gather(*(server.done.wait() for server in list(self.servers.values())))

    # ---- internals ------------------------------------------------------------------------------------

    async def _handle_text(self, websocket: WebSocket, text: str) -> None:
        try:
            data = json.loads(text)
        except ValueError:
            await self.reply(websocket, events.error("Invalid event: failed to parse JSON value.", code="invalid_json"))
            return
        if not isinstance(data, dict):
            await self.reply(websocket, events.error("Invalid event: expected a JSON object.", code="invalid_event"))
            return
        client_event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
        type_ = data.get("type")
        handler = self._handlers.get(type_) if isinstance(type_, str) else None
        try:
            if handler is None:
                if type_ is None:
                    raise InvalidRequest(
                        "Missing required parameter: 'type'.", code="missing_required_parameter", param="type"
                    )
                # Section 2.1: the live server's message lists the accepted types [CAPTURE].
                supported = ", ".join(f"'{t}'" for t in self._handlers)
                raise InvalidRequest(
                    f"Invalid value: '{type_}'. Supported values are: {supported}.", code="invalid_value", param="type"
                )
            await handler(websocket, data)
        except InvalidRequest as exc:
            payload = events.error(exc.message, code=exc.code, param=exc.param, client_event_id=client_event_id)
            await self.reply(websocket, payload)

    def _apply_tools(self, resolved: dict[str, dict[str, Any]]) -> None:
        """Remember definitions for label reuse; list every server that is new or whose definition changed."""
        self.definitions.update(copy.deepcopy(resolved))
        for label, definition in resolved.items():
            current = self.servers.get(label)
            if current is not None and current.definition == definition:
                continue
            self.servers[label] = self._list(label, definition)

    def _list(self, label: str, definition: dict[str, Any]) -> McpServer:
        server = McpServer(label=label, definition=copy.deepcopy(definition), list_item_id=new_id("mcpl"))
        self.spawn(listing.run_listing(self, server))
        return server

    def _mcp_labels(self) -> list[str]:
        return [t["server_label"] for t in self.session.get("tools") or [] if t.get("type") == "mcp"]

    def _start_response(self, body: dict[str, Any], response_tools: dict[str, dict[str, Any]] | None) -> None:
        if response_tools is None:
            servers = {label: self.servers[label] for label in self._mcp_labels() if label in self.servers}
        else:
            # Response-level tools replace the session's for this response only (section 3.2 item 2).
            self.definitions.update(copy.deepcopy(response_tools))
            servers = {}
            for label, definition in response_tools.items():
                known = self.servers.get(label)
                servers[label] = known if known and known.definition == definition else self._list(label, definition)
        context = None
        if body.get("input") is not None:
            context = [self.find(i["id"]) or i if i.get("type") == "item_reference" else i for i in body["input"]]
            context = [i for i in context if i.get("type") != "item_reference"]
        output = (self.session.get("audio") or {}).get("output") or {}
        resp = Response(
            id=new_id("resp"),
            in_conversation=body.get("conversation", "auto") != "none",
            modalities=list(body.get("output_modalities") or self.session.get("output_modalities") or ["audio"]),
            metadata=body.get("metadata"),
            tool_choice=body.get("tool_choice", self.session.get("tool_choice", "auto")),
            context=context,
            servers=servers,
            voice=str(output.get("voice") or "marin"),
            instructions=body.get("instructions") if isinstance(body.get("instructions"), str) else None,
        )
        self.active = resp
        resp.task = self.spawn(turns.run(self, resp))

    # ---- client events --------------------------------------------------------------------------------

    async def _session_update(self, websocket: WebSocket, data: dict[str, Any]) -> None:
        if "session" not in data:
            raise InvalidRequest(
                "Missing required parameter: 'session'.", code="missing_required_parameter", param="session"
            )
        merged, resolved = merge_session(self.session, data["session"], self.definitions)
        merged["model"] = self.model
        self.session = merged
        # Section 4 step 1: session.updated comes before the listing events of tools it added.
        await self.emit(event("session.updated", session=copy.deepcopy(self.session)))
        if resolved is not None:
            self._apply_tools(resolved)

    async def _session_close(self, websocket: WebSocket, data: dict[str, Any]) -> None:
        if self.call is None:
            await self.end(1000, "session closed")
        else:
            # A sideband leaving does not end the call.
            if websocket in self._sockets:
                self._sockets.remove(websocket)
            await websocket.close(code=1000, reason="session closed")

    async def _audio_append(self, websocket: WebSocket, data: dict[str, Any]) -> None:
        # Audio is accepted and counted, never transcribed: the scripted model reads text items only.
        audio = data.get("audio")
        try:
            if not isinstance(audio, str):
                raise ValueError
            self._audio_bytes += len(base64.b64decode(audio, validate=True))
        except (ValueError, binascii.Error):
            raise InvalidRequest(
                "Invalid value for 'audio': expected base64-encoded audio.", code="invalid_value", param="audio"
            ) from None

    async def _audio_commit(self, websocket: WebSocket, data: dict[str, Any]) -> None:
        if self._audio_bytes < _MIN_COMMIT_BYTES:
            ms = self._audio_bytes / 48
            raise InvalidRequest(
                "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
                f"but buffer only has {ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
                param=None,
            )
        self._audio_bytes = 0
        item = {
            "id": new_id("item"),
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        previous = self.append_item(item)
        await self.emit(
            event("input_audio_buffer.committed", previous_item_id=previous, item_id=item["id"]),
            event("conversation.item.added", previous_item_id=previous, item=copy.deepcopy(item)),
            event("conversation.item.done", previous_item_id=previous, item=copy.deepcopy(item)),
        )

    async def _audio_clear(self, websocket: WebSocket, data: dict[str, Any]) -> None:
        self._audio_bytes = 0
        await self.emit(event("input_audio_buffer.cleared"))

    async def _output_audio_clear(self, websocket: WebSocket, data: dict[str, Any]) -> None:
        if self.active is not None:
            await self.emit(event("output_audio_buffer.cleared", response_id=self.active.id))

    async def _response_create(self, websocket: WebSocket, data: dict[str, Any]) -> None:
        body = data.get("response") or {}
        # Not part of OpenAI's API: a record of what the model was asked, for the console's tests
        # (GET /sim/response_creates).
        self.state.response_creates.append(
            {
                "at": time.time(),
                "session_id": self.id,
                "event_id": data.get("event_id"),
                "while_active": self.active is not None,
                "instructions": body.get("instructions") if isinstance(body, dict) else None,
                "tool_choice": body.get("tool_choice") if isinstance(body, dict) else None,
            }
        )
        if self.active is not None:
            # Section 2.1 / 10.2 [many independent repos].
            raise InvalidRequest(
                f"Conversation already has an active response in progress: {self.active.id}. "
                "Wait until the response is finished before creating a new one.",
                code="conversation_already_has_active_response",
                param=None,
            )
        response_tools = check_response(body, self.definitions)
        self._start_response(body, response_tools)

    async def _response_cancel(self, websocket: WebSocket, data: dict[str, Any]) -> None:
        resp = self.active
        wanted = data.get("response_id")
        if resp is None or (wanted is not None and wanted != resp.id):
            raise InvalidRequest(
                "Cancellation failed: no active response found", code="response_cancel_not_active", param=None
            )
        if resp.task is not None and not resp.task.done():
            resp.task.cancel()
            await asyncio.wait([resp.task])
        for approval_id, pending in list(self.pending_approvals.items()):
            if pending.response is resp:
                del self.pending_approvals[approval_id]
        for item in resp.output:
            if item.get("status") == "in_progress":
                item["status"] = "incomplete"
        await turns.finish(self, resp, "cancelled", reason="client_cancelled")
