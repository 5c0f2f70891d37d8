"""Who wants to be reached how, and what was sent where.

The rows here never decide anything: a decision always goes through approvals.services. They
record a person's channels (NotificationPreference, PushSubscription, SlackLink), where a group
is reached in Slack (SlackChannel), and what was already sent, so that a repeated task sends
nothing twice (EmailSent, SlackMessage).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from approvals.models import ApprovalRequest


class NotificationPreference(models.Model):
    """A person's channels. No row = every channel on (the defaults below)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference"
    )
    push = models.BooleanField("push notifications", default=True)
    email = models.BooleanField("email", default=True)
    # Slack messages go to a group's channel; this decides whether they mention the person.
    slack = models.BooleanField("Slack mentions", default=True)

    class Meta:
        verbose_name = "notification preference"

    def __str__(self) -> str:
        return f"notifications of {self.user}"


class PushSubscription(models.Model):
    """One browser's push subscription (PushSubscription.toJSON() of the Push API)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="push_subscriptions")
    # The push service's URL for this browser: unique, since it names one browser profile.
    endpoint = models.URLField(max_length=1000, unique=True)
    p256dh = models.CharField(max_length=200, help_text="The browser's P-256 public key, base64url.")
    auth = models.CharField(max_length=100, help_text="The authentication secret, base64url.")
    user_agent = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_failure = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"push to {self.user} ({self.user_agent[:40] or 'browser'})"

    def subscription_info(self) -> dict[str, object]:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


class SlackLink(models.Model):
    """A Slack user who acts as this staff member when they press a button in Slack."""

    class How(models.TextChoices):
        EMAIL = "email", "Same email address"
        LINK = "link", "Link confirmed while logged in"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="slack_link")
    slack_user_id = models.CharField(max_length=32, unique=True)
    team_id = models.CharField(max_length=32, blank=True)
    how = models.CharField(max_length=8, choices=How.choices)
    linked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "Slack link"

    def __str__(self) -> str:
        return f"{self.slack_user_id} is {self.user}"


class SlackChannel(models.Model):
    """Where the requests a group may decide are posted. Blank group: requests any staff may decide."""

    group = models.OneToOneField(
        "auth.Group", null=True, blank=True, on_delete=models.CASCADE, related_name="slack_channel"
    )
    channel_id = models.CharField(max_length=32, help_text="The channel's id (C0123ABCD); invite the app to it.")

    class Meta:
        verbose_name = "Slack channel"

    def __str__(self) -> str:
        return f"{self.group or 'any staff'} → {self.channel_id}"

    def clean(self) -> None:
        # A nullable one-to-one lets the database hold several "any staff" rows; one is meant.
        if self.group_id is None and SlackChannel.objects.filter(group=None).exclude(pk=self.pk).exists():
            raise ValidationError("There already is a channel for requests any staff may decide.")


class SlackMessage(models.Model):
    """A request as posted to a channel, so that a decision made anywhere updates it."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=32)
    # Blank while the post is under way (the row is the claim that makes a repeated task a no-op).
    ts = models.CharField(max_length=32, blank=True)
    posted_at = models.DateTimeField(default=timezone.now)
    # What the message shows now ("pending", "approved", ...): an update that would show the same
    # is skipped.
    shown = models.CharField(max_length=40, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["request", "channel"], name="notify_slack_message_once")]

    def __str__(self) -> str:
        return f"request {self.request_id} in {self.channel}"


class EmailSent(models.Model):
    """A reminder email of one step of a request was sent (or is being sent): the marker that
    keeps a redelivered task from emailing twice."""

    class Kind(models.TextChoices):
        HALF_DEADLINE = "half", "Unclaimed at half the deadline"
        ESCALATED = "escalated", "Escalated"

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="+")
    stage = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    sent_at = models.DateTimeField(default=timezone.now)
    recipients = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "email sent"
        verbose_name_plural = "emails sent"
        constraints = [models.UniqueConstraint(fields=["request", "stage", "kind"], name="notify_email_once")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} email for request {self.request_id} (step {self.stage})"
