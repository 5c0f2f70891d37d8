"""The registry: the MCP servers agents may use, the tools they listed, and the client tokens
that open sessions."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from approvals.models.fields import EncryptedJSONField, EncryptedTextField

TOKEN_PREFIX = "cst_"


class Scope(models.TextChoices):
    """What a client token may do. A token for a room tablet needs only `realtime`; a program in
    front of an MCP server that asks Countersign needs `requests:write` and `requests:read`."""

    REALTIME = "realtime", "Open Realtime sessions through the relay"
    REQUESTS_WRITE = "requests:write", "Create approval requests (approval API)"
    REQUESTS_READ = "requests:read", "Read its approval requests and wait for their decisions (approval API)"
    WEBHOOKS = "webhooks", "Subscribe webhooks to its requests' decisions (approval API)"
    MCP_GATEWAY = "mcp:gateway", "Call registered MCP servers through Countersign's MCP gateway"


def default_scopes() -> list[str]:
    return [Scope.REALTIME.value]


class McpServer(models.Model):
    """A remote MCP server the agents may use. Its credentials stay on the server side: the
    relay puts them into the upstream session and never shows them to a client."""

    class Transport(models.TextChoices):
        AUTO = "auto", "Detect from the URL (/sse → SSE)"
        STREAMABLE_HTTP = "streamable_http", "Streamable HTTP"
        SSE = "sse", "HTTP + SSE"

    class RequireApproval(models.TextChoices):
        ALWAYS = "always", "Always ask"
        NEVER = "never", "Never ask"

    label = models.SlugField(
        max_length=64, unique=True, help_text="The server_label the model sees; letters, digits, - and _."
    )
    url = models.URLField(max_length=500)
    transport = models.CharField(max_length=20, choices=Transport.choices, default=Transport.AUTO)
    # Encrypted at rest (FIELD_ENCRYPTION_KEYS); plaintext on the instance, for to_tool().
    authorization = EncryptedTextField(blank=True, help_text="Sent as 'Authorization: Bearer …' by OpenAI.")
    headers = EncryptedJSONField(blank=True, help_text="Extra HTTP headers, name → value.")
    require_approval = models.CharField(max_length=10, choices=RequireApproval.choices, default=RequireApproval.ALWAYS)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    gateway_mode = models.BooleanField(
        default=False,
        help_text="OpenAI gets Countersign's MCP gateway (GATEWAY_PUBLIC_URL) with a per-session token instead of "
        "this server's URL and credentials; the gateway runs only approved calls (docs/gateway.md).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The last probe (approvals/probe.py): when, whether it passed, and its report in plain words.
    probed_at = models.DateTimeField(null=True, blank=True, editable=False)
    probe_ok = models.BooleanField(null=True, editable=False)
    probe_report = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["label"]
        verbose_name = "MCP server"

    def __str__(self) -> str:
        return self.label

    def gateway_url(self) -> str:
        """This server's endpoint on Countersign's MCP gateway (Streamable HTTP)."""
        return f"{settings.GATEWAY_PUBLIC_URL.rstrip('/')}/mcp-gateway/{self.label}/mcp"

    def to_tool(self, *, gateway_token: str = "") -> dict[str, Any]:
        """The `mcp` tool entry sent upstream. Contains secrets: never send it to a client.

        In gateway mode the entry names Countersign's gateway and carries `gateway_token` (a
        session's capability token, services.gateway_token_for) instead of the server's URL,
        credentials and headers: those never leave Countersign."""
        tool: dict[str, Any] = {
            "type": "mcp",
            "server_label": self.label,
            "server_url": self.gateway_url() if self.gateway_mode else self.url,
            "require_approval": self.require_approval,
        }
        if self.description:
            tool["server_description"] = self.description
        if self.gateway_mode:
            if gateway_token:
                tool["authorization"] = gateway_token
            return tool
        if self.authorization:
            tool["authorization"] = self.authorization
        if self.headers:
            tool["headers"] = dict(self.headers)
        return tool


class McpToolQuerySet(models.QuerySet["McpTool"]):
    def drifted(self) -> McpToolQuerySet:
        """Tools whose definition changed since an admin last accepted it. The policy engine
        must not auto-approve these until someone has marked them reviewed."""
        return self.filter(drifted_at__isnull=False)


def tool_definition_hash(definition: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a tool definition (name, description, schema, annotations)."""
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class McpTool(models.Model):
    """A tool an MCP server listed when it was last probed, with a hash of its definition.

    Drift: when a later probe lists the same name with another hash, the old definition is kept in
    `previous_definition` and `drifted_at` is set until an admin marks the tool reviewed
    (services.mark_tool_reviewed). A tool the server stopped listing keeps its row, with `removed_at`."""

    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="tools")
    name = models.CharField(max_length=200)
    definition = models.JSONField(default=dict)
    definition_hash = models.CharField(max_length=64)
    previous_definition = models.JSONField(null=True, blank=True)
    previous_hash = models.CharField(max_length=64, blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    removed_at = models.DateTimeField(null=True, blank=True)
    drifted_at = models.DateTimeField(null=True, blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by_label = models.CharField(max_length=150, blank=True)

    objects = McpToolQuerySet.as_manager()

    class Meta:
        ordering = ["server__label", "name"]
        verbose_name = "MCP tool"
        constraints = [models.UniqueConstraint(fields=["server", "name"], name="mcp_tool_unique_name")]

    def __str__(self) -> str:
        return f"{self.server.label}/{self.name}"

    @property
    def needs_review(self) -> bool:
        return self.drifted_at is not None


class ClientTokenQuerySet(models.QuerySet["ClientToken"]):
    def active(self) -> ClientTokenQuerySet:
        return self.filter(revoked_at__isnull=True)

    def for_plaintext(self, token: str, scope: str | None = Scope.REALTIME) -> ClientToken | None:
        """The active token matching `token` that has `scope` (any scope when None), or None.
        Only the hash is ever stored or compared."""
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        found = self.active().filter(token_hash=ClientToken.hash(token)).first()
        if found is None or (scope is not None and not found.has_scope(scope)):
            return None
        return found


class ClientToken(models.Model):
    """What a client (a room tablet, a phone gateway) presents to the relay as its API key.
    Its label and metadata name every session opened with it."""

    label = models.CharField(max_length=100)
    metadata = models.JSONField(default=dict, blank=True, help_text='e.g. {"room": "1204"}')
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=16, editable=False, help_text="The first characters, to recognise it.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    scopes = models.JSONField(default=default_scopes, blank=True, help_text="What it may do (Scope).")
    holding_line = models.BooleanField(
        default=True,
        help_text="While a request of a voice session waits for staff, the assistant tells the guest that staff "
        "is checking and about how long it usually takes (realtime_bridge/holding.py). Off: silence until the "
        "decision. The request's rule must allow it too.",
    )

    objects = ClientTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.label} ({self.prefix}…)"

    @staticmethod
    def hash(token: str) -> str:
        # Tokens are 256-bit random strings, so a fast hash is enough: there is nothing to
        # brute-force that would be cheaper than guessing the token itself.
        return hashlib.sha256(token.encode()).hexdigest()

    @staticmethod
    def generate() -> str:
        return TOKEN_PREFIX + secrets.token_urlsafe(32)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def has_scope(self, scope: str) -> bool:
        return isinstance(self.scopes, list) and scope in self.scopes
