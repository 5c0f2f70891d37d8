"""Grants: a decision that reaches beyond the one call it answered (issue 14). A person who
approves may let the same tool run again without asking, for the rest of the session or for
the same guest (room) for some minutes, optionally only with some arguments fixed; a person who
approves with changes leaves a one-time grant for the call with exactly the edited arguments.
The policy consults the live grants before asking (services.grants.find_grant); a grant is
revoked by a person, voided when its tool's definition drifts, and every change of one is
audited (services/grants.py is its only writer)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


def canonical_arguments(arguments: Any) -> str:
    """The one text of a call's arguments that two equal calls share: JSON with sorted keys and
    no spaces. `arguments` is the parsed value (a dict) or the string a model sent; a string
    that is not JSON stays as it is."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return arguments
    return json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def arguments_digest(arguments: Any) -> str:
    """SHA-256 of canonical_arguments: what an edited call's grant matches."""
    return hashlib.sha256(canonical_arguments(arguments).encode()).hexdigest()


class GrantQuerySet(models.QuerySet["Grant"]):
    def live(self, now: datetime | None = None) -> GrantQuerySet:
        """Grants that may still approve a call: not revoked, not voided, not expired, not used up."""
        now = now or timezone.now()
        return self.filter(revoked_at__isnull=True, voided_at__isnull=True).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now), Q(uses_left__isnull=True) | Q(uses_left__gt=0)
        )


class Grant(models.Model):
    class Scope(models.TextChoices):
        # Approve with changes: the next call with exactly the edited arguments, once.
        CALL = "call", "The call with the edited arguments"
        SESSION = "session", "This tool for this session"
        GUEST = "guest", "This tool for this guest for some minutes"

    scope = models.CharField(max_length=8, choices=Scope.choices)
    # The decision that made it (its card, history and case name the grant).
    source_request = models.ForeignKey(
        "approvals.ApprovalRequest", on_delete=models.PROTECT, related_name="grants_given"
    )
    # CALL and SESSION: the session it holds in; GUEST: the session it was given in (the
    # guest is named by subject_key/subject_value and may come back in another session).
    session = models.ForeignKey("approvals.RealtimeSession", on_delete=models.PROTECT, related_name="grants")
    subject_key = models.CharField(max_length=64, blank=True, help_text="GUEST: the session metadata key (room).")
    subject_value = models.CharField(max_length=200, blank=True)
    server_label = models.CharField(max_length=64)
    tool_name = models.CharField(max_length=128)
    # The tool's definition hash when granted: a tool that drifted since voids the grant.
    tool_hash = models.CharField(max_length=64, blank=True)
    # CALL: the edited arguments (canonical JSON) and their digest.
    arguments = models.TextField(blank=True)
    arguments_digest = models.CharField(max_length=64, blank=True)
    # SESSION and GUEST: arguments a call must have, {"room": "1204"} ({} = any arguments).
    constraints = models.JSONField(default=dict, blank=True)
    uses_left = models.PositiveIntegerField(null=True, blank=True, help_text="Blank: no limit.")
    used_count = models.PositiveIntegerField(default=0)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_by_label = models.CharField(max_length=150, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by_label = models.CharField(max_length=150, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.CharField(max_length=300, blank=True)

    objects = GrantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["server_label", "tool_name"], name="grant_tool"),
        ]

    def __str__(self) -> str:
        return f"grant #{self.pk}: {self.tool_name} on {self.server_label} ({self.scope})"

    def state(self, now: datetime | None = None) -> str:
        """live, used, expired, revoked or voided."""
        now = now or timezone.now()
        if self.revoked_at is not None:
            return "revoked"
        if self.voided_at is not None:
            return "voided"
        if self.uses_left == 0:
            return "used"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "live"

    def describe(self) -> str:
        """'refund for this session, only with room = 1204' in words, for cards and the audit."""
        if self.scope == self.Scope.CALL:
            return f"{self.tool_name} once, with the edited arguments"
        where = (
            "for this session" if self.scope == self.Scope.SESSION else f"for {self.subject_key} {self.subject_value}"
        )
        text = f"{self.tool_name} {where}"
        if self.expires_at is not None:
            text += f" until {timezone.localtime(self.expires_at):%H:%M}"
        if self.constraints:
            text += ", only with " + ", ".join(f"{k} = {v}" for k, v in sorted(self.constraints.items()))
        return text

    def to_dict(self, *, now: datetime | None = None) -> dict[str, Any]:
        return {
            "id": self.pk,
            "scope": self.scope,
            "scope_label": self.get_scope_display(),
            "state": self.state(now),
            "description": self.describe(),
            "server_label": self.server_label,
            "tool_name": self.tool_name,
            "session_id": self.session_id,
            "subject": {"key": self.subject_key, "value": self.subject_value} if self.subject_key else None,
            "constraints": self.constraints,
            "arguments": self.arguments,
            "used_count": self.used_count,
            "uses_left": self.uses_left,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "created_by_label": self.created_by_label,
            "source_request_id": self.source_request_id,
        }
