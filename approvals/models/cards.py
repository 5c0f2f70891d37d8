"""What a staff card shows of a session beyond approvals' own fields. The apps above approvals
(realtime_bridge: a sideband session's phone call, a text agent's run) register a detail here
from their ready(); ApprovalRequest.to_dict() gives every card one key per detail, in the order
they were registered, and ApprovalRequestQuerySet.for_display() fetches what they read in its
one query."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from approvals.models.sessions import RealtimeSession


@dataclass(frozen=True)
class SessionDetail:
    read: Callable[[RealtimeSession], Any]
    related: tuple[str, ...]


_details: dict[str, SessionDetail] = {}


def register_session_detail(key: str, read: Callable[[RealtimeSession], Any], *, related: Sequence[str] = ()) -> None:
    """Show read(session) under `key` in every card's "session" (JSON data; None when the session
    has none). `related`: the relations of the session that `read` follows (select_related paths
    from the session), fetched with the cards. Registering a key again replaces it."""
    _details[key] = SessionDetail(read=read, related=tuple(related))


def session_details(session: RealtimeSession) -> dict[str, Any]:
    """Every registered detail of `session`, by key."""
    return {key: detail.read(session) for key, detail in _details.items()}


def related_paths() -> list[str]:
    """The select_related paths, from a request, of everything the details read."""
    return [f"session__{path}" for detail in _details.values() for path in detail.related]
