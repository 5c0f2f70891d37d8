"""Who is reached for a request, and the writes of a person's own notification settings.

Nothing here changes a request: decisions go through approvals.services.decide, with its checks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet

from approvals import policy
from approvals.models import ApprovalRequest
from notify.models import NotificationPreference, PushSubscription, SlackLink

if TYPE_CHECKING:
    from django.contrib.auth.models import User

CHANNELS = ("push", "email", "slack")


def routed_staff(req: ApprovalRequest, *, channel: str | None = None) -> QuerySet[Any]:
    """The active staff the request's current step is routed to: the members of its groups, or
    every staff member when it names none (superusers may decide everything but are reached only
    through their groups). With `channel`, only those who left that channel on."""
    if channel is not None and channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    people = get_user_model().objects.filter(is_active=True, is_staff=True)
    groups = req.audience_groups
    if groups:
        people = people.filter(groups__name__in=groups)
    if channel is not None:
        # No preference row means the defaults: every channel on.
        people = people.filter(
            Q(notification_preference__isnull=True) | Q(**{f"notification_preference__{channel}": True})
        )
    return people.distinct()


def quick_actions_allowed(req: ApprovalRequest) -> bool:
    """Whether a notification may offer Approve and Deny buttons for this request: only while it
    is pending and its rule requires nothing a button press cannot give (a note to the guest, a
    confirmation, a passkey step-up: the plan's `requires`, frozen when the request opened)."""
    if req.status != ApprovalRequest.Status.PENDING:
        return False
    return not policy.Requires.from_plan(req.plan)


def is_claimed(req: ApprovalRequest) -> bool:
    """Whether someone has said "I'm on it" (and the claim has not lapsed): a claimed request
    gets no half-deadline reminder."""
    claim: dict[str, Any] | None = req.to_dict().get("claim")
    return claim is not None


def reachable_by_push(groups: list[str]) -> bool:
    """A reachability provider (approvals.events.reachability_providers): someone of `groups`
    ([] = any staff) has a push subscription and push turned on."""
    people = get_user_model().objects.filter(is_active=True, is_staff=True)
    if groups:
        people = people.filter(groups__name__in=groups)
    people = people.filter(Q(notification_preference__isnull=True) | Q(notification_preference__push=True))
    return PushSubscription.objects.filter(user__in=people).exists()


def preferences_for(user: User) -> NotificationPreference:
    """The person's channels (unsaved defaults when they never changed them)."""
    pref = NotificationPreference.objects.filter(user=user).first()
    return pref if pref is not None else NotificationPreference(user=user)


def set_preferences(user: User, *, push: bool, email: bool, slack: bool) -> NotificationPreference:
    """Turn each channel of `user` on or off. Side effects: none beyond the row."""
    pref, _ = NotificationPreference.objects.update_or_create(
        user=user, defaults={"push": push, "email": email, "slack": slack}
    )
    return pref


def subscribe(user: User, *, endpoint: str, p256dh: str, auth: str, user_agent: str = "") -> PushSubscription:
    """Record this browser's push subscription for `user`. An endpoint names one browser
    profile: when someone else logs in on it, the subscription moves to them (the previous
    person's notifications must not show on a device they no longer use)."""
    sub, _ = PushSubscription.objects.update_or_create(
        endpoint=endpoint,
        defaults={"user": user, "p256dh": p256dh, "auth": auth, "user_agent": user_agent[:300]},
    )
    return sub


def unsubscribe(user: User, *, endpoint: str) -> bool:
    """Forget `user`'s subscription at `endpoint`; False when there was none."""
    deleted, _ = PushSubscription.objects.filter(user=user, endpoint=endpoint).delete()
    return deleted > 0


def link_slack(user: User, *, slack_user_id: str, team_id: str, how: str) -> SlackLink | None:
    """Link a Slack user to `user` (once: either side already linked elsewhere stays as it is).
    Returns the link, or None when the Slack user or the person is linked to someone else."""
    try:
        with transaction.atomic():
            link, _ = SlackLink.objects.get_or_create(
                slack_user_id=slack_user_id, defaults={"user": user, "team_id": team_id, "how": how}
            )
    except IntegrityError:  # `user` is linked to another Slack user
        return None
    return link if link.user_id == user.pk else None


def slack_user(slack_user_id: str) -> User | None:
    """The staff member a Slack user acts as, if linked."""
    link = SlackLink.objects.select_related("user").filter(slack_user_id=slack_user_id).first()
    return link.user if link is not None else None


def staff_by_email(email: str) -> User | None:
    """The one active staff member with this email address (None when none or several have it:
    an ambiguous address links nobody)."""
    if not email:
        return None
    people = list(get_user_model().objects.filter(is_active=True, is_staff=True, email__iexact=email)[:2])
    return people[0] if len(people) == 1 else None
