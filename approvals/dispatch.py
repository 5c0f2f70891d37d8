"""What every Countersign consumer shares (the dashboard here, the relay in realtime_bridge)."""

from __future__ import annotations

from typing import Any

from channels.consumer import get_handler_name


class LeanDispatchMixin:
    """Dispatch without Channels' per-message `aclose_old_connections()`.

    Since Channels 4.2, `AsyncConsumer.dispatch` hops into the one shared sync thread to close
    stale database connections before *every* handler: every audio frame a guest streams into
    the relay, every card pushed to each of a hundred dashboards. Our consumers touch the
    database only through `database_sync_to_async`, which closes old connections in its own
    thread before and after each call (channels/db.py), so the extra hop does no work for us
    and costs each message a thread round trip.
    """

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
