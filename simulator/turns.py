"""What the scripted model does in one response: speak, or call an MCP tool (with or without approval).

Event orders follow REALTIME_PROTOCOL.md: the text turn of section 5.2 ("Follow-up", from a live capture),
the approval path of sections 5.2 (profile `split`) and 5.3 (profile `held`), the deny path of 5.4 and
the no-approval path of section 6. Each knob of section 11 is read from the session's SimulatorConfig.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
from typing import Any

from simulator import events, mcp_client, script
from simulator.config import SimulatorConfig
from simulator.conversation import Conversation, McpServer, PendingApproval, Response
from simulator.events import event
from simulator.ids import new_id

logger = logging.getLogger(__name__)

# 50 ms of 24 kHz 16-bit silence per spoken chunk: the simulator does not synthesise speech.
_SILENCE = base64.b64encode(bytes(2400)).decode()
_FORCED_ERRORS: dict[str, dict[str, Any]] = {
    "protocol_error": {"type": "protocol_error", "code": -32602, "message": "Invalid params (simulated)"},
    "tool_execution_error": {"type": "tool_execution_error", "message": "The tool failed (simulated)."},
    "http_error": {"type": "http_error", "code": 502, "message": "Bad Gateway (simulated)"},
}


def snapshot(session: Conversation, resp: Response, **extra: Any) -> dict[str, Any]:
    return events.response_object(
        resp.id,
        status=resp.status,
        output=copy.deepcopy(resp.output),
        conversation_id=session.conversation_id if resp.in_conversation else None,
        output_modalities=resp.modalities,
        voice=resp.voice,
        metadata=resp.metadata,
        **extra,
    )


async def run(session: Conversation, resp: Response) -> None:
    """The body of one response, from response.created on."""
    try:
        await session.emit(event("response.created", response=snapshot(session, resp)))
        for server in resp.servers.values():
            # Response-level tools not imported yet are listed first (section 3.2 item 2).
            await server.done.wait()
        kind, *plan = _plan(session, resp)
        instructed = script.instructed_text(resp.instructions)
        if kind == "say" and instructed:
            plan = [f"{plan[0]} {instructed}"]
        if kind == "call":
            await _tool_call(session, resp, *plan)
        else:
            if session.config.latency:
                await asyncio.sleep(session.config.latency)  # knob latency: the model "thinks"
            await speak(session, resp, plan[0])
            await finish(session, resp, "completed")
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("response %s failed", resp.id)
        await finish(session, resp, "failed", error={"type": "server_error", "message": "The simulator failed."})


def _user_text(item: dict[str, Any]) -> str:
    texts = []
    for part in item.get("content") or []:
        texts.append(part.get("text") or part.get("transcript") or "")
    return " ".join(t for t in texts if t)


def _plan(session: Conversation, resp: Response) -> tuple[Any, ...]:
    """Read the conversation's last meaningful item and decide: ("call", server, name, args) or ("say", text)."""
    context = resp.context if resp.context is not None else session.items
    relevant = [i for i in context if i.get("type") != "mcp_list_tools"]
    if not relevant:
        return ("say", "Hello! How can I help you today?")
    last = relevant[-1]
    if last.get("type") == "message" and last.get("role") == "user":
        # Section 4: a turn can only use tools that were imported (and allowed) before it started.
        available = {label: s.tools for label, s in resp.servers.items() if s.status == "completed"}
        words = script.words_to_plan([i for i in relevant if i.get("type") == "message"])
        plan = script.plan_message(words, available, tools_allowed=resp.tool_choice != "none")
        if isinstance(plan, script.Say):
            return ("say", plan.text)
        return ("call", resp.servers[plan.server_label], plan.name, plan.arguments_json)
    if last.get("type") in ("mcp_call", "mcp_approval_request", "mcp_approval_response"):
        return ("say", _after_tool_text(relevant))
    return ("say", script.reply_text(_user_text(last)) if last.get("role") != "assistant" else "Anything else?")


def _after_tool_text(items: list[dict[str, Any]]) -> str:
    """The follow-up (R2) after a tool call: its result, its denial, or that it is still running."""
    at = max(
        n for n, i in enumerate(items) if i.get("type") in ("mcp_call", "mcp_approval_request", "mcp_approval_response")
    )
    calls = [n for n, i in enumerate(items[: at + 1]) if i.get("type") == "mcp_call"]
    if not calls:
        return "Anything else?"
    call = items[calls[-1]]
    # A denial first: with deny_behavior mcp_call_error the denied call also carries an error.
    denials = [i for i in items[calls[-1] :] if i.get("type") == "mcp_approval_response" and not i.get("approve")]
    if denials:
        return script.denied_text(call["name"], denials[-1].get("reason"))
    if call.get("output") is not None or call.get("error") is not None:
        return script.result_text(call["name"], call.get("output"), call.get("error"))
    return script.pending_text(call["name"])


async def _add_output(session: Conversation, resp: Response, item: dict[str, Any]) -> int:
    """response.output_item.added, then conversation.item.added (section 5.2); returns the output_index."""
    index = len(resp.output)
    resp.output.append(item)
    batch = [event("response.output_item.added", response_id=resp.id, output_index=index, item=copy.deepcopy(item))]
    if resp.in_conversation:
        previous = session.append_item(item)
        batch.append(event("conversation.item.added", previous_item_id=previous, item=copy.deepcopy(item)))
    await session.emit(*batch)
    return index


def _item_done(session: Conversation, resp: Response, item: dict[str, Any]) -> list[dict[str, Any]]:
    if not resp.in_conversation:
        return []
    return [event("conversation.item.done", previous_item_id=session.previous_of(item["id"]), item=copy.deepcopy(item))]


def _output_done(resp: Response, index: int, item: dict[str, Any]) -> dict[str, Any]:
    return event("response.output_item.done", response_id=resp.id, output_index=index, item=copy.deepcopy(item))


async def speak(session: Conversation, resp: Response, text: str) -> None:
    """One assistant message, in the text-turn order of section 5.2 [CAPTURE]."""
    item = events.assistant_message(new_id("item"))
    index = await _add_output(session, resp, item)
    audio = "audio" in resp.modalities
    where = {"response_id": resp.id, "item_id": item["id"], "output_index": index, "content_index": 0}
    part: dict[str, Any] = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
    await session.emit(event("response.content_part.added", **where, part=dict(part)))
    words = text.split(" ")
    for n, word in enumerate(words):
        delta = word if n == 0 else " " + word
        if audio:
            await session.emit(
                event(
                    "response.output_audio_transcript.delta",
                    **where,
                    delta=delta,
                    obfuscation=events.obfuscation(delta),
                ),
                event("response.output_audio.delta", **where, delta=_SILENCE),
            )
        else:
            await session.emit(
                event("response.output_text.delta", **where, delta=delta, obfuscation=events.obfuscation(delta))
            )
    if audio:
        closing = [
            event("response.output_audio.done", **where),
            event("response.output_audio_transcript.done", **where, transcript=text),
        ]
        part = {"type": "audio", "transcript": text}
        item["content"] = [{"type": "output_audio", "transcript": text}]
    else:
        closing = [event("response.output_text.done", **where, text=text)]
        part = {"type": "text", "text": text}
        item["content"] = [{"type": "output_text", "text": text}]
    item["status"] = "completed"
    resp.tokens_out += len(words)
    await session.emit(
        *closing,
        event("response.content_part.done", **where, part=part),
        *_item_done(session, resp, item),
        _output_done(resp, index, item),
    )


async def _tool_call(session: Conversation, resp: Response, server: McpServer, name: str, arguments: str) -> None:
    config = session.config
    call = events.mcp_call_item(new_id("mcp"), server.label, name)
    index = await _add_output(session, resp, call)
    if config.latency:
        await asyncio.sleep(config.latency)
    where = {"response_id": resp.id, "item_id": call["id"], "output_index": index}
    for start in range(0, len(arguments), 12):
        delta = arguments[start : start + 12]
        # Section 2: agents-js requires `obfuscation` on this event, so it is always sent.
        await session.emit(
            event("response.mcp_call_arguments.delta", **where, delta=delta, obfuscation=events.obfuscation(delta))
        )
    call["arguments"] = arguments
    await session.emit(event("response.mcp_call_arguments.done", **where, arguments=arguments))
    tool = next(t for t in server.tools if t["name"] == name)
    if not mcp_client.requires_approval(server.definition, tool):
        # Section 6: the call runs inside this response; then (knob) the model speaks, and the response ends.
        await run_mcp_call(session, resp, call, index, server, output_item_done=True)
        if config.no_approval_autospeak == "on":
            await speak(session, resp, script.result_text(name, call["output"], call["error"]))
        await finish(session, resp, "completed")
        return
    request = events.approval_request_item(new_id("mcpr"), server.label, name, arguments)
    request_index = len(resp.output)
    resp.output.append(request)
    batch = []
    if config.approval_output_item_events:
        batch.append(event("response.output_item.added", response_id=resp.id, output_index=request_index, item=request))
    if resp.in_conversation:
        previous = session.append_item(request)
        batch.append(event("conversation.item.added", previous_item_id=previous, item=copy.deepcopy(request)))
        batch.append(event("conversation.item.done", previous_item_id=previous, item=copy.deepcopy(request)))
    if config.approval_output_item_events:
        batch.append(_output_done(resp, request_index, request))
    session.pending_approvals[request["id"]] = PendingApproval(request, call, index, resp, server)
    await session.emit(*batch)
    if config.approval_profile == "split":
        # Section 5.2: R1 ends here; the mcp_call item has no output yet.
        await finish(session, resp, "completed")
    # Profile `held` (section 5.3): R1 stays in progress until the approval arrives.


async def after_approval(session: Conversation, pending: PendingApproval, answer: dict[str, Any]) -> None:
    """Sections 5.2 and 5.4: what follows an mcp_approval_response (its item was already echoed)."""
    config = session.config
    resp = pending.response
    held = not resp.finished
    call = pending.call
    call["approval_request_id"] = pending.request["id"]
    try:
        if answer["approve"]:
            await run_mcp_call(
                session,
                resp,
                call,
                pending.output_index,
                pending.server,
                output_item_done=held or config.mcp_call_output_item_done,
            )
            text = script.result_text(call["name"], call["output"], call["error"])
        else:
            # The tool never runs. [INFERRED] default: nothing more (section 5.4).
            if config.deny_behavior == "mcp_call_error":
                reason = answer.get("reason")
                call["error"] = {
                    "type": "tool_execution_error",
                    "message": "The user rejected this tool call." + (f" Reason: {reason}" if reason else ""),
                }
                batch = _item_done(session, resp, call)
                if held or config.mcp_call_output_item_done:
                    batch.append(_output_done(resp, pending.output_index, call))
                await session.emit(*batch)
            text = script.denied_text(call["name"], answer.get("reason"))
        if held:
            # Section 5.3: the same response speaks, then ends.
            await speak(session, resp, text)
            await finish(session, resp, "completed")
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("approval continuation of %s failed", call["id"])
        if held:
            await finish(session, resp, "failed", error={"type": "server_error", "message": "The simulator failed."})


async def _call(config: SimulatorConfig, definition: dict[str, Any], name: str, arguments: str) -> tuple[Any, Any]:
    if config.tool_result != "ok":
        # Knob tool_result: the outcome is forced and the real server is not called.
        return None, dict(_FORCED_ERRORS[config.tool_result])
    return await mcp_client.call_tool(definition, name, arguments)


async def run_mcp_call(
    session: Conversation,
    resp: Response,
    call: dict[str, Any],
    index: int,
    server: McpServer,
    *,
    output_item_done: bool,
) -> None:
    """response.mcp_call.in_progress, the real tools/call, then completed|failed and the final item."""
    # Section 2: these events carry no response_id.
    await session.emit(event("response.mcp_call.in_progress", item_id=call["id"], output_index=index))
    output, error = await _call(session.config, server.definition, call["name"], call["arguments"])
    call["output"], call["error"] = output, error
    status = event(
        "response.mcp_call.completed" if error is None else "response.mcp_call.failed",
        item_id=call["id"],
        output_index=index,
    )
    items = _item_done(session, resp, call)
    if output_item_done:
        items.insert(0, _output_done(resp, index, call))
    if session.config.mcp_call_done_order == "completed_first":
        await session.emit(status, *items)
    else:
        await session.emit(*items, status)


async def finish(
    session: Conversation,
    resp: Response,
    status: str,
    *,
    reason: str | None = None,
    error: dict[str, Any] | None = None,
) -> None:
    """response.done then rate_limits.updated. The response stops being active before response.done goes
    out, so a client that answers response.done with response.create is never told one is still active."""
    if resp.finished:
        return
    resp.finished = True
    resp.status = status
    session.response_finished(resp)
    details: dict[str, Any] | None = None
    if status != "completed":
        details = {"type": status, "reason": reason} if error is None else {"type": status, "error": error}
    tokens_in = 20 + 5 * len(session.items)
    done = snapshot(session, resp, status_details=details, usage=events.usage(tokens_in, resp.tokens_out, 0))
    await session.emit(event("response.done", response=done), events.rate_limits(tokens_in + resp.tokens_out))
