"""The staff dashboard's WebSocket: authenticate, join the group, send a snapshot, relay events.

Nothing else (house rule 9): decisions are HTTP POSTs with CSRF, not WebSocket messages.
The socket lives only as long as its person may see the queue: it joins the person's own group
(a logout or a loss of access closes it, approvals/signals.py) and re-checks its login session
every DASHBOARD_RECHECK_SECONDS (an expired or deleted session closes it).
"""

from __future__ import annotations

import asyncio
import contextlib
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user
from django.utils.translation import gettext

from approvals import events, services
from approvals.dispatch import LeanDispatchMixin
from approvals.models import REVIEW_ONLY_GROUP, ApprovalRequest, audience_allows


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


@database_sync_to_async
def _session_ended(session_key: str | None, user_id: int) -> int | None:
    """The close code when the login session `session_key` no longer lets `user_id` see the
    queue (deleted, expired, logged out, password changed: CLOSE_LOGGED_OUT; the account is no
    longer active staff: CLOSE_NOT_ALLOWED); None while it does. Read afresh from the session
    store with Django's own check (auth.get_user: backend, session hash)."""
    if not session_key:
        return events.CLOSE_LOGGED_OUT
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]
    if not user.is_authenticated or user.pk != user_id:
        return events.CLOSE_LOGGED_OUT
    if not (user.is_active and user.is_staff):
        return events.CLOSE_NOT_ALLOWED
    return None


class DashboardConsumer(LeanDispatchMixin, AsyncJsonWebsocketConsumer):
    recheck: asyncio.Task[None] | None = None
    ending = False

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
        self.user_id = int(user.pk)
        session = self.scope.get("session")
        self.session_key = session.session_key if session is not None else None
        # Not `self.groups`: channels treats that as channel-layer groups to leave on disconnect.
        self.person_groups = await _group_names(user)
        await self.channel_layer.group_add(events.DASHBOARD, self.channel_name)
        await self.channel_layer.group_add(events.staff_user_group(self.user_id), self.channel_name)
        await self.accept()
        snapshot: dict[str, Any] = {"type": "snapshot", "requests": await _snapshot(user)}
        if REVIEW_ONLY_GROUP in self.person_groups:
            # A reviewer sees the queue but decides nothing (services.check_may_decide refuses
            # them anyway): their page shows the cards without buttons, and says why.
            snapshot.update(
                may_decide=False,
                why=gettext("Members of %(group)s review decisions and never make them.")
                % {"group": REVIEW_ONLY_GROUP},
            )
        await self.send_json(snapshot)
        # Presence (approvals/models/presence.py): this dashboard counts as online from now on;
        # the row is refreshed by the heartbeat and removed on disconnect, which releases the
        # person's claims when it was their last dashboard.
        self.present_user = user
        online = await _connected(user, self.channel_name)
        await self.send_json({"type": "presence", "online": self._online_for_me(online)})
        self.heartbeat = asyncio.create_task(self._heartbeat())
        self.recheck = asyncio.create_task(self._recheck(float(settings.DASHBOARD_RECHECK_SECONDS)))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """The browser sends nothing on this socket (decisions are POSTs). Whatever arrives is
        ignored unparsed: the JSON consumer's own `receive` would raise on anything that is not
        JSON and take the person's dashboard (and its presence clean-up) down with it."""

    async def _recheck(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            code = await _session_ended(self.session_key, self.user_id)
            if code is not None:
                await self._end(code)
                return

    async def _end(self, code: int) -> None:
        if not self.ending:
            self.ending = True
            await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        if self.recheck is not None and self.recheck is not asyncio.current_task():
            self.recheck.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.recheck
        await self.channel_layer.group_discard(events.DASHBOARD, self.channel_name)
        if hasattr(self, "user_id"):
            await self.channel_layer.group_discard(events.staff_user_group(self.user_id), self.channel_name)
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

    async def approvals_grants_changed(self, event: dict[str, Any]) -> None:
        if not self.ending:
            await self.send_json({"type": "grants"})

    async def staff_ended(self, event: dict[str, Any]) -> None:
        """Logged out (in this login session, or everywhere), deactivated, or no longer staff."""
        key = event.get("session_key")
        if key and key != self.session_key:
            return  # a logout in another browser of the same person
        await self._end(int(event["code"]))

    async def approvals_request_changed(self, event: dict[str, Any]) -> None:
        if self.ending:
            return  # closed: nothing more for a person who may no longer see the queue
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
