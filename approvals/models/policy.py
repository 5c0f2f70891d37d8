"""The policies: the rules as admins edit them (PolicyRule, EscalationStep) and, for every change,
the whole set as it was then (PolicyVersion). Requests are routed by the latest version's
document, never by the rows directly, so "rule X of version N" always names exactly what was
applied (approvals/policy.py, docs/policies.md)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class DeadlineAction(models.TextChoices):
    DENY = "deny", "Deny"
    APPROVE = "approve", "Approve"
    ESCALATE = "escalate", "Escalate to the next step"


class PolicyRule(models.Model):
    class Outcome(models.TextChoices):
        ALLOW = "allow", "Allow at once"
        DENY = "deny", "Deny at once"
        ASK = "ask", "Ask staff"

    position = models.PositiveIntegerField(default=0, help_text="Rules are tried in this order; the first match wins.")
    label = models.SlugField(max_length=100, unique=True, help_text="Names the rule on cards, cases and exports.")
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    server_label = models.CharField(
        "server", max_length=64, blank=True, help_text="The registered server's label; blank matches any server."
    )
    tool_pattern = models.CharField(
        "tool", max_length=200, default="*", help_text="A tool name or a pattern: refund_*, *_booking, * (any)."
    )
    condition = models.TextField(
        blank=True,
        help_text='Optional, in CEL: args.amount > 100.0 && session.room.startsWith("12"). '
        "Variables: args, session, tool, now, time. Blank always matches.",
    )
    outcome = models.CharField(max_length=8, choices=Outcome.choices, default=Outcome.ASK)
    reason = models.CharField(
        max_length=500, blank=True, help_text="Told to the assistant with an allow or deny (and recorded)."
    )
    # Ask: the first step. Escalation steps follow (EscalationStep).
    groups = models.ManyToManyField(
        "auth.Group", blank=True, related_name="+", help_text="Who may decide; none = any staff member."
    )
    quorum = models.PositiveSmallIntegerField(default=1, help_text="Distinct approvers needed (2 = two-person rule).")
    deadline_seconds = models.PositiveIntegerField(null=True, blank=True, help_text="Blank: APPROVAL_TIMEOUT_SECONDS.")
    on_deadline = models.CharField(max_length=10, choices=DeadlineAction.choices, default=DeadlineAction.DENY)
    escalate_when_nobody_online = models.BooleanField(
        default=False,
        help_text="Escalate at once, without waiting out the deadline, when nobody who may decide is online "
        "or reachable (needs the deadline to escalate).",
    )
    # Ask: what a person must give to decide, at every step (services.decide enforces it).
    require_confirm = models.BooleanField(
        "require a confirmation", default=False, help_text="The decider confirms approve or deny a second time."
    )
    require_reason_on_approve = models.BooleanField(
        "require a reason to approve", default=False, help_text="An approval needs a note to the guest."
    )
    require_reason_on_deny = models.BooleanField(
        "require a reason to deny", default=False, help_text="A denial needs a note to the guest."
    )
    holding_line = models.BooleanField(
        default=True,
        help_text="Ask: while a request waits in a voice session, the assistant tells the guest that staff is "
        "checking and about how long it usually takes. The client token must allow it too.",
    )
    require_step_up = models.BooleanField(
        "require a passkey step-up",
        default=False,
        help_text="The decider confirms with their passkey (registered on their profile page).",
    )
    # Ask: what an approval may grant beyond the one call (issue 14, services/grants.py).
    grant_scopes = models.CharField(
        "grants allowed",
        max_length=40,
        blank=True,
        default="session",
        help_text="Comma-separated: session (this tool for the rest of the session), guest (this tool for the "
        "same guest or room for some minutes). Blank: an approval covers its one call only.",
    )
    grant_max_minutes = models.PositiveIntegerField(
        "longest guest grant (minutes)", default=60, help_text="The most minutes a guest grant may last."
    )

    class Meta:
        ordering = ["position", "pk"]
        verbose_name = "policy rule"

    def __str__(self) -> str:
        return self.label


class EscalationStep(models.Model):
    """A step after the rule's first one: reached when the previous step's deadline escalates."""

    rule = models.ForeignKey(PolicyRule, on_delete=models.CASCADE, related_name="escalations")
    position = models.PositiveIntegerField(default=0)
    groups = models.ManyToManyField("auth.Group", blank=True, related_name="+")
    quorum = models.PositiveSmallIntegerField(default=1)
    deadline_seconds = models.PositiveIntegerField(null=True, blank=True)
    on_deadline = models.CharField(max_length=10, choices=DeadlineAction.choices, default=DeadlineAction.DENY)
    escalate_when_nobody_online = models.BooleanField(default=False)

    class Meta:
        ordering = ["rule", "position", "pk"]
        verbose_name = "escalation step"

    def __str__(self) -> str:
        return f"{self.rule.label} step {self.position}"


class PolicyVersion(models.Model):
    """The whole policy set after one change: who, when, what changed, and the document itself
    (the format of export_policies). The latest one is what routes requests."""

    number = models.PositiveIntegerField(unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_label = models.CharField(max_length=150, blank=True)
    source = models.CharField(max_length=200, blank=True, help_text="admin, import of a file, …")
    changes = models.JSONField(default=list, blank=True)
    document = models.JSONField(default=dict)

    class Meta:
        ordering = ["-number"]
        get_latest_by = "number"

    def __str__(self) -> str:
        return f"policy version {self.number}"
