"""The staff dashboard's WebSocket: authenticate, join the group, send a snapshot, relay events.

Nothing else (house rule 9): decisions are HTTP POSTs with CSRF, not WebSocket messages.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from approvals import events
from approvals.dispatch import LeanDispatchMixin
from approvals.models import ApprovalRequest, audience_allows


@database_sync_to_async
def _snapshot(user: Any) -> list[dict[str, Any]]:
    return [req.to_dict() for req in ApprovalRequest.objects.queue().visible_to(user)]


@database_sync_to_async
def _group_names(user: Any) -> frozenset[str]:
    return frozenset(user.groups.values_list("name", flat=True))


class DashboardConsumer(LeanDispatchMixin, AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        # A lazy User, or AnonymousUser (AuthMiddlewareStack); the stubs know only the proxy.
        user: Any = self.scope.get("user")
        if user is None or not (user.is_active and user.is_staff):
            # Closing before accept refuses the handshake (HTTP 403).
            await self.close()
            return
        # Join before reading the snapshot: an event committed in between then arrives after
        # the snapshot instead of falling between the two.
        # Each person sees the requests their groups may decide (superusers: all). Group
        # membership is read once per connection; a change shows on the next reconnect.
        self.superuser = bool(user.is_superuser)
        # Not `self.groups`: channels treats that as channel-layer groups to leave on disconnect.
        self.person_groups = await _group_names(user)
        await self.channel_layer.group_add(events.DASHBOARD, self.channel_name)
        await self.accept()
        await self.send_json({"type": "snapshot", "requests": await _snapshot(user)})

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(events.DASHBOARD, self.channel_name)

    async def approvals_request_changed(self, event: dict[str, Any]) -> None:
        if audience_allows(event.get("audience", ""), superuser=self.superuser, groups=self.person_groups):
            await self.send(text_data=event["frame"])  # already the browser's JSON (events.py)
        else:
            # Not theirs (any more): an escalation moves the card to the next group's queue.
            await self.send(text_data=events.request_removed_frame(event["id"]))
