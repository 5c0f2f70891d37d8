"""The MCP gateway's records (gateway/ serves the endpoint; approvals/services/gateway.py writes
these): the capability tokens OpenAI gets instead of a server's credentials, and every
`tools/call` that reached the gateway, run or refused."""

from __future__ import annotations

import hashlib
import secrets

from django.db import models
from django.db.models import Q
from django.utils import timezone

from approvals.models.fields import EncryptedTextField
from approvals.models.registry import McpServer
from approvals.models.sessions import RealtimeSession

GATEWAY_TOKEN_PREFIX = "csg_"


class GatewayToken(models.Model):
    """What OpenAI presents to the gateway for one session and one MCP server in gateway mode
    (the tool's `authorization`). Valid while its session is open and before `expires_at`, for
    that server only. The plaintext is kept encrypted so that every `session.update` of the
    session carries the same token; it is looked up by its hash."""

    session = models.ForeignKey(RealtimeSession, on_delete=models.CASCADE, related_name="gateway_tokens")
    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="gateway_tokens")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token = EncryptedTextField(editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()

    class Meta:
        verbose_name = "gateway token"
        constraints = [models.UniqueConstraint(fields=["session", "server"], name="gateway_token_one_per_server")]

    def __str__(self) -> str:
        return f"gateway token of session #{self.session_id} for {self.server_id}"

    @staticmethod
    def hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @staticmethod
    def generate() -> str:
        return GATEWAY_TOKEN_PREFIX + secrets.token_urlsafe(32)


class GatewayCall(models.Model):
    """One `tools/call` the gateway received: what was asked, with which token, the decision it
    was matched to (if any), and what came of it. At most one call consumes an approval: the
    partial unique constraint on (request) where consumed is what makes a replay lose."""

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        RAN = "ran", "Ran"
        FAILED = "failed", "Ran, the server failed"
        REFUSED = "refused", "Refused"

    session = models.ForeignKey(RealtimeSession, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    server = models.ForeignKey(McpServer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    server_label = models.CharField(max_length=64)
    tool_name = models.CharField(max_length=200)
    arguments = models.TextField(blank=True)
    arguments_digest = models.CharField(max_length=64, blank=True)
    # Who called: "session token" (OpenAI for a session) or the client token's label.
    via = models.CharField(max_length=150, blank=True)
    request = models.ForeignKey(
        "approvals.ApprovalRequest", null=True, blank=True, on_delete=models.PROTECT, related_name="gateway_calls"
    )
    consumed = models.BooleanField(default=False, help_text="This call used up its approval.")
    # What allowed it without a request of its own: "rule …", "server never asks".
    allowed_by = models.CharField(max_length=200, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    reason = models.TextField(blank=True)
    output = models.TextField(null=True, blank=True)  # noqa: DJ001 - NULL: nothing ran; "": empty text
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "gateway call"
        constraints = [
            models.UniqueConstraint(fields=["request"], condition=Q(consumed=True), name="gateway_call_consumes_once")
        ]
        indexes = [models.Index(fields=["session", "created_at"])]

    def __str__(self) -> str:
        return f"{self.server_label}/{self.tool_name} ({self.outcome})"
