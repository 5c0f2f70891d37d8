"""Who has a staff dashboard open now (presence): one row per open dashboard socket.

In the database, not in the channel layer: the layer delivers at most once and Redis may be
down, but who is online decides whether a request escalates at once
(`escalate_when_nobody_online`), so it must survive a lost message. The consumer writes a row
when a dashboard connects, refreshes `seen_at` while it stays (a heartbeat) and deletes it on
disconnect; a row whose process died without a disconnect goes stale after
PRESENCE_STALE_SECONDS and stops counting."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import models
from django.db.models import Q
from django.utils import timezone


class DashboardPresenceQuerySet(models.QuerySet["DashboardPresence"]):
    def fresh(self, now: datetime | None = None) -> DashboardPresenceQuerySet:
        """Rows refreshed within PRESENCE_STALE_SECONDS, of active staff."""
        now = now or timezone.now()
        return self.filter(
            seen_at__gt=now - timedelta(seconds=settings.PRESENCE_STALE_SECONDS),
            user__is_active=True,
            user__is_staff=True,
        )


class DashboardPresence(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # The socket's channel-layer name: unique per open dashboard, so a reconnect is a new row.
    channel_name = models.CharField(max_length=200, unique=True)
    connected_at = models.DateTimeField(default=timezone.now)
    seen_at = models.DateTimeField(default=timezone.now)

    objects = DashboardPresenceQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["user", "seen_at"], name="presence_user_seen")]

    def __str__(self) -> str:
        return f"{self.user_id} on {self.channel_name}"


def online_members(groups: list[str], *, now: datetime | None = None) -> list[Any]:
    """The active staff with a fresh dashboard who are members of any of `groups` ([] = any
    staff member; superusers count for every group, as they may decide every request), by name."""
    ids = DashboardPresence.objects.fresh(now).values("user_id")
    users = get_user_model().objects.filter(pk__in=ids)
    if groups:
        users = users.filter(Q(groups__name__in=groups) | Q(is_superuser=True)).distinct()
    return sorted(users, key=lambda u: (u.get_full_name() or u.get_username()).lower())
