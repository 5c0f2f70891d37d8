"""The sessions Countersign sits in, and the lines of their conversations."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from approvals.models.registry import ClientToken


class RealtimeSession(models.Model):
    """One agent session that Countersign sits in: a relayed WebSocket, a sideband on a
    SIP/WebRTC call, or a Responses API run."""

    class Kind(models.TextChoices):
        RELAY = "relay", "Relayed WebSocket"
        SIDEBAND = "sideband", "Sideband (SIP/WebRTC call)"
        RESPONSES = "responses", "Responses API run"
        API = "api", "Approval API"
        GATEWAY = "gateway", "MCP gateway client"

    # The kinds whose decisions Countersign sends to OpenAI (an mcp_approval_response upstream).
    UPSTREAM_KINDS = (Kind.RELAY, Kind.SIDEBAND, Kind.RESPONSES)

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.RELAY)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    client_token = models.ForeignKey(ClientToken, null=True, blank=True, on_delete=models.SET_NULL)
    # Copied from the token when the session opens, so a card keeps its name if the token changes.
    label = models.CharField(max_length=100)
    metadata = models.JSONField(default=dict, blank=True)
    model = models.CharField(max_length=100, blank=True)
    upstream_session_id = models.CharField(max_length=100, blank=True)
    call_id = models.CharField(max_length=100, blank=True)
    # An approval API session: the caller's own id for it, unique per client token.
    external_id = models.CharField(max_length=200, blank=True)
    opened_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_code = models.IntegerField(null=True, blank=True)
    # The staff member who started it (minted a browser call's secret, started a Responses run):
    # they never decide its requests (duties do not mix, services.check_may_decide). NULL when a
    # client token or a phone line started it. The label is copied, like `label`, so the card
    # keeps the name if the account changes.
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    started_by_label = models.CharField(max_length=150, blank=True)
    # A relayed session's lease: the relay process that holds its sockets (host:pid) renews it
    # every third of RELAY_LEASE_SECONDS; when it runs out the process is gone, and the beat
    # sweep closes the session (services.close_lapsed_sessions). NULL: no lease (other kinds).
    lease_holder = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-opened_at"]
        # Starting a session from a login (a browser call's client secret, a Responses run) costs
        # OpenAI money and puts a guest-facing agent to work: it needs this, not only a login.
        permissions = [
            ("start_session", "Can start sessions (browser calls, Responses runs)"),
            # Ending a guest's live session from the dashboard or the case page
            # (services.stop_session): it cuts a guest off, so it is a permission of its own.
            ("stop_session", "Can stop a live session"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["client_token", "external_id"],
                condition=~models.Q(external_id=""),
                name="session_unique_external_id",
            )
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.kind} #{self.pk})"


class ConversationLine(models.Model):
    """A line of the conversation the bridge saw (user or assistant, text or transcript)."""

    class Role(models.TextChoices):
        USER = "user", "Guest"
        ASSISTANT = "assistant", "Assistant"
        SYSTEM = "system", "System"

    session = models.ForeignKey(RealtimeSession, on_delete=models.CASCADE, related_name="lines")
    role = models.CharField(max_length=10, choices=Role.choices)
    text = models.TextField()
    item_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["session", "created_at"])]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:40]}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "role_label": self.get_role_display(),
            "text": self.text,
            "at": self.created_at.isoformat(),
        }
