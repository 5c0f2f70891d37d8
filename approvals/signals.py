"""Closing a staff member's open dashboards when they may no longer see them: on logout, and
when their account is deactivated or loses staff status. (An expired or deleted login session
is caught by the dashboard consumer's periodic recheck, approvals/consumers.py.) Connected in
ApprovalsConfig.ready()."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction

from approvals import events

# The two flags without which a person may not hold a dashboard open.
_ACCESS_FIELDS = frozenset({"is_active", "is_staff"})


def on_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """django.contrib.auth's `user_logged_out`: close the dashboards of the login session that
    ends (sent before Django flushes it, so its key is still known)."""
    if user is None or request is None:
        return
    session = getattr(request, "session", None)
    key = session.session_key if session is not None else None
    # A logout without a known session (none to compare) closes all of the person's dashboards.
    events.staff_ended(user.pk, code=events.CLOSE_LOGGED_OUT, session_key=key or None)


def on_user_saved(sender: Any, instance: Any, created: bool, update_fields: Any = None, **kwargs: Any) -> None:
    """`post_save` of the user model: an account saved inactive or without staff status closes
    all of its dashboards, after commit (a rolled-back change closes nothing).

    A model signal here, not an explicit hook (house rule: hooks, not signals), because the
    code that changes users is mostly not ours: Django's user admin, `manage.py shell`,
    `changepassword`, the demo seed. Every one of them goes through User.save(), so this is the
    one place none of them can miss. It does not compare with the old flags (that would cost a
    read on every save): closing the dashboards of someone who has none is a no-op message.
    QuerySet.update() bypasses it; the consumer's periodic recheck catches that too."""
    if created:
        return
    if update_fields is not None and not (_ACCESS_FIELDS & set(update_fields)):
        return  # e.g. the login's last_login update: not an access change
    if instance.is_active and instance.is_staff:
        return
    transaction.on_commit(partial(events.staff_ended, instance.pk, code=events.CLOSE_NOT_ALLOWED), robust=True)
