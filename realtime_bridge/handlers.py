"""Synchronous Django side of the Realtime paths: one handler per upstream event type, each
calling `approvals.services` (house rule 1); finished items go through `items.record`, as the
Responses runs' do. The relay and the sideband loop call `dispatch()` through
`database_sync_to_async`; tests call it directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from approvals import policy, services
from approvals.models import ClientToken, ConversationLine, McpServer, RealtimeSession
from realtime_bridge import items, protocol

log = logging.getLogger(__name__)


def registered_tools(session_id: int | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The `mcp` tool entries of the enabled registered servers, and every secret value in them
    (for the relay's last-resort redaction of anything sent to a client). A server in gateway
    mode gets the session's capability token (none without a session: the gateway refuses)."""
    servers = list(McpServer.objects.filter(enabled=True))
    tokens: dict[int, str] = {}
    session = RealtimeSession.objects.filter(pk=session_id).first() if session_id is not None else None
    if session is not None:
        tokens = {s.pk: services.gateway_token_for(session, s) for s in servers if s.gateway_mode}
    # The policies compiled in: never-ask and left-out tools (approvals/policy.py).
    tools, secret_values = policy.upstream_tools(servers, gateway_tokens=tokens), list(tokens.values())
    for server in servers:
        if server.gateway_mode:
            continue  # its credentials never leave Countersign
        if server.authorization:
            secret_values.append(server.authorization)
        secret_values.extend(str(v) for v in (server.headers or {}).values())
    return tools, secret_values


def authenticate(token: str) -> ClientToken | None:
    """The active client token for this plaintext (services.open_session marks it used)."""
    return ClientToken.objects.for_plaintext(token)


def open_relay_session(*, token: ClientToken, model: str) -> RealtimeSession:
    return services.open_session(
        kind=RealtimeSession.Kind.RELAY, label=token.label, metadata=token.metadata, client_token=token, model=model
    )


def close_session(session_id: int, *, code: int | None, reason: str) -> None:
    session = RealtimeSession.objects.get(pk=session_id)
    services.close_session(session, code=code, reason=reason)


# --- Upstream events ------------------------------------------------------------------------


def _on_item_done(session: RealtimeSession, event: dict[str, Any]) -> list[str] | None:
    item = event.get("item")
    if not isinstance(item, dict):
        return None
    kind = item.get("type")
    if kind == "mcp_list_tools" and isinstance(item.get("tools"), list):
        flagged = services.observe_listed_tools(server_label=str(item.get("server_label") or ""), tools=item["tools"])
        if flagged and session.kind == RealtimeSession.Kind.RELAY:
            # A tool changed under us: put the recompiled entries upstream at once, so that a
            # tool that was in require_approval.never asks from now on in this session too.
            tools, _secrets = registered_tools(session.pk)
            return [
                protocol.dumps(
                    {
                        "type": "session.update",
                        "event_id": protocol.new_event_id(),
                        "session": {"type": "realtime", "tools": tools},
                    }
                )
            ]
        return None
    if kind == "mcp_approval_request":
        protocol.parse_approval_request(item)  # a malformed item raises ValueError (see dispatch)
    elif kind == "mcp_call":
        protocol.parse_mcp_call(item)
    items.record(session, item)
    return None


def _on_transcription(session: RealtimeSession, event: dict[str, Any]) -> None:
    transcript = (event.get("transcript") or "").strip()
    if transcript:
        services.add_conversation_line(
            session=session, role=ConversationLine.Role.USER, text=transcript, item_id=event.get("item_id") or ""
        )


def _on_session(session: RealtimeSession, event: dict[str, Any]) -> None:
    upstream_id = (event.get("session") or {}).get("id")
    if upstream_id and upstream_id != session.upstream_session_id:
        # Bookkeeping of the session row, not an approval transition.
        RealtimeSession.objects.filter(pk=session.pk).update(upstream_session_id=str(upstream_id)[:100])


# A handler may return frames to send upstream (a session.update after tool drift).
HANDLERS: dict[str, Callable[[RealtimeSession, dict[str, Any]], list[str] | None]] = {
    "conversation.item.done": _on_item_done,
    "conversation.item.input_audio_transcription.completed": _on_transcription,
    "session.created": _on_session,
}

# The event types the consumers need to hand to dispatch() (everything else is only relayed).
HANDLED_TYPES = frozenset(HANDLERS)


def dispatch(session_id: int, event: dict[str, Any]) -> list[str]:
    """Apply one upstream event to the database. Safe to replay: every service is idempotent.
    Returns the frames (usually none) the caller must send upstream."""
    handler = HANDLERS.get(event.get("type", ""))
    if handler is None:
        return []
    session = RealtimeSession.objects.get(pk=session_id)
    try:
        return handler(session, event) or []
    except ValueError as exc:  # pydantic's ValidationError is a ValueError: a malformed item
        log.warning("session %s: ignored a malformed %s: %s", session_id, event.get("type"), exc)
        return []
