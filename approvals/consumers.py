"""The staff dashboard's WebSocket: authenticate, join the group, send a snapshot, relay events.

Nothing else (house rule 9): decisions are HTTP POSTs with CSRF, not WebSocket messages.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from approvals import events, services
from approvals.dispatch import LeanDispatchMixin
from approvals.models import ApprovalRequest, audience_allows


@database_sync_to_async
def _snapshot(user: Any) -> list[dict[str, Any]]:
    return [req.to_dict() for req in ApprovalRequest.objects.queue().visible_to(user)]


@database_sync_to_async
def _group_names(user: Any) -> frozenset[str]:
    return frozenset(user.groups.values_list("name", flat=True))


@database_sync_to_async
def _connected(user: Any, channel_name: str) -> dict[str, list[str]]:
    services.dashboard_connected(user, channel_name=channel_name)
    return events.online_by_group()


@database_sync_to_async
def _seen(user: Any, channel_name: str) -> None:
    if not services.dashboard_seen(channel_name=channel_name):
        services.dashboard_connected(user, channel_name=channel_name)


@database_sync_to_async
def _disconnected(user: Any, channel_name: str) -> None:
    services.dashboard_disconnected(user, channel_name=channel_name)


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
        # Presence (approvals/models/presence.py): this dashboard counts as online from now on;
        # the row is refreshed by the heartbeat and removed on disconnect, which releases the
        # person's claims when it was their last dashboard.
        self.present_user = user
        online = await _connected(user, self.channel_name)
        await self.send_json({"type": "presence", "online": self._online_for_me(online)})
        self.heartbeat = asyncio.create_task(self._heartbeat())

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(events.DASHBOARD, self.channel_name)
        heartbeat = getattr(self, "heartbeat", None)
        if heartbeat is not None:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        if getattr(self, "present_user", None) is not None:
            await _disconnected(self.present_user, self.channel_name)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(settings.PRESENCE_HEARTBEAT_SECONDS)
            try:
                await _seen(self.present_user, self.channel_name)
            except Exception:
                continue

    def _online_for_me(self, online: dict[str, list[str]]) -> dict[str, list[str]]:
        """Who is online in this person's groups ({group: [names]}); people in no group see
        all staff online, under ""; superusers every group that has someone online."""
        if self.superuser:
            return {name: names for name, names in online.items() if name}
        if not self.person_groups:
            return {"": online.get("", [])}
        return {name: online.get(name, []) for name in sorted(self.person_groups)}

    async def approvals_presence_changed(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "presence", "online": self._online_for_me(event["online"])})

    async def approvals_request_changed(self, event: dict[str, Any]) -> None:
        if audience_allows(event.get("audience", ""), superuser=self.superuser, groups=self.person_groups):
            await self.send(text_data=event["frame"])  # already the browser's JSON (events.py)
        elif "earlier_audience" in event and audience_allows(
            event["earlier_audience"], superuser=False, groups=self.person_groups
        ):
            # It escalated away from this person's group: the card is stamped "Escalated to …"
            # and kept under "Just decided" (dashboard.js), instead of vanishing.
            await self.send(text_data=events.request_escalated_frame(event["frame"]))
        else:
            # Not theirs: only its id, so that a stale card goes.
            await self.send(text_data=events.request_removed_frame(event["id"]))
