"""Presence: which staff have a dashboard open (approvals/models/presence.py), written by the
dashboard consumer only, through these functions. When a person's LAST dashboard closes, their
claims are released (someone who left cannot be "on it")."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from approvals import events
from approvals.models import DashboardPresence
from approvals.services._common import on_commit
from approvals.services.claims import RELEASED_ON_DISCONNECT, release_claims_of

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def dashboard_connected(user: User, *, channel_name: str) -> None:
    """A dashboard of `user` opened on `channel_name`. Side effects: a presence row; after
    commit a presence event to every dashboard."""
    now = timezone.now()
    with transaction.atomic():
        DashboardPresence.objects.update_or_create(
            channel_name=channel_name, defaults={"user": user, "connected_at": now, "seen_at": now}
        )
        on_commit(events.presence_changed)


def dashboard_seen(*, channel_name: str) -> bool:
    """The heartbeat of an open dashboard. Returns False when its row is gone (a sweep of stale
    rows removed it): the caller writes it again with dashboard_connected."""
    return DashboardPresence.objects.filter(channel_name=channel_name).update(seen_at=timezone.now()) == 1


def dashboard_disconnected(user: User, *, channel_name: str) -> int:
    """A dashboard of `user` closed. When it was their last one (no other fresh row), release
    their claims. Returns how many claims were released. Side effects: the row is deleted;
    audit CLAIM_RELEASED per claim; after commit a presence event and the cards' events."""
    with transaction.atomic():
        DashboardPresence.objects.filter(channel_name=channel_name).delete()
        on_commit(events.presence_changed)
        still_open = DashboardPresence.objects.fresh().filter(user=user).exists()
    if still_open:
        return 0
    return release_claims_of(user, why=RELEASED_ON_DISCONNECT)


def forget_stale_dashboards() -> int:
    """Delete presence rows not refreshed for PRESENCE_STALE_SECONDS (their process died) and
    release the claims of people who have no fresh dashboard left. Returns rows deleted."""
    stale = DashboardPresence.objects.exclude(pk__in=DashboardPresence.objects.fresh().values("pk"))
    users = {row.user for row in stale.select_related("user")}
    deleted, _ = stale.delete()
    for user in users:
        if not DashboardPresence.objects.fresh().filter(user=user).exists():
            release_claims_of(user, why=RELEASED_ON_DISCONNECT)
    if deleted:
        on_commit(partial(events.presence_changed))
    return deleted
