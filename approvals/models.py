"""The approval domain's data. Fields, choices, constraints and reads only: every change of an
approval's state goes through approvals/services.py (house rule 1)."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ObjectDoesNotExist
from django.db import models
from django.db.models import Q
from django.utils import timezone

TOKEN_PREFIX = "cst_"
# How many of the latest conversation lines a dashboard card shows.
CARD_CONVERSATION_LINES = 6


def plain_words(name: str) -> str:
    """`refund_minibar-charge` / `refundMinibarCharge` → "Refund minibar charge", for people."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ").replace("-", " ").split()
    text = " ".join(words).lower()
    return text[:1].upper() + text[1:] if text else name


def field_cipher() -> MultiFernet:
    """settings.FIELD_ENCRYPTION_KEYS as one cipher: the first key encrypts, any key decrypts.
    Built on each call (cheap: no key derivation) so that a changed setting takes effect at once."""
    if not settings.FIELD_ENCRYPTION_KEYS:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is required to store or read MCP server credentials")
    return MultiFernet([Fernet(key) for key in settings.FIELD_ENCRYPTION_KEYS])


def encrypt_text(plaintext: str) -> str:
    return field_cipher().encrypt(plaintext.encode()).decode()


def decrypt_text(token: str, *, what: str = "a stored secret") -> str:
    try:
        return field_cipher().decrypt(token.encode()).decode()
    except InvalidToken:
        # Fail loudly: handing the ciphertext on as if it were the credential (what
        # django-fernet-encrypted-fields does) would send garbage upstream and hide a lost key.
        raise ImproperlyConfigured(
            f"cannot decrypt {what}: none of FIELD_ENCRYPTION_KEYS opens it (was a key removed too early?)"
        ) from None


def _open_token(value: str) -> str:
    """A serialized value (dumpdata writes ciphertext) is decrypted; anything else is input as typed."""
    try:
        return field_cipher().decrypt(value.encode()).decode()
    except InvalidToken:
        return value


class EncryptedTextField(models.TextField):
    """Text stored as a Fernet token (docs/registry.md). Empty stays empty, so "is it set?"
    needs no key; anything else is ciphertext in the column and plaintext in Python."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str:
        if not value:
            return ""
        return decrypt_text(value, what=f"{self.model.__name__}.{self.name}")

    def get_prep_value(self, value: Any) -> str:
        value = super().get_prep_value(value)
        return encrypt_text(value) if value else ""

    def to_python(self, value: Any) -> str:
        # loaddata hands over what value_to_string wrote: the token. Typed input stays as typed.
        value = super().to_python(value)
        return _open_token(value) if value else ""

    def value_to_string(self, obj: models.Model) -> str:
        # dumpdata/serializers: the ciphertext, never the plaintext.
        return self.get_prep_value(self.value_from_object(obj))


class EncryptedJSONField(models.TextField):
    """A JSON object (header name → value) stored as one Fernet token of its JSON text: the
    header names are encrypted too, since a name like X-Tenant-ID can itself say too much."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("default", dict)
        super().__init__(*args, **kwargs)

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> dict[str, Any]:
        if not value:
            return {}
        return json.loads(decrypt_text(value, what=f"{self.model.__name__}.{self.name}"))

    def to_python(self, value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        return json.loads(_open_token(value)) if value else {}

    def get_prep_value(self, value: Any) -> str:
        return encrypt_text(json.dumps(value, sort_keys=True)) if value else ""

    def value_to_string(self, obj: models.Model) -> str:
        # dumpdata/serializers: the ciphertext, never the plaintext.
        return self.get_prep_value(self.value_from_object(obj))


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

    def to_tool(self) -> dict[str, Any]:
        """The `mcp` tool entry sent upstream. Contains secrets: never send it to a client."""
        tool: dict[str, Any] = {
            "type": "mcp",
            "server_label": self.label,
            "server_url": self.url,
            "require_approval": self.require_approval,
        }
        if self.description:
            tool["server_description"] = self.description
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

    def present(self) -> McpToolQuerySet:
        return self.filter(removed_at__isnull=True)


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

    def for_plaintext(self, token: str) -> ClientToken | None:
        """The active token matching `token`, or None. Only the hash is ever stored or compared."""
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        return self.active().filter(token_hash=ClientToken.hash(token)).first()


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


class RealtimeSession(models.Model):
    """One agent session that Countersign sits in: a relayed WebSocket, a sideband on a
    SIP/WebRTC call, or a Responses API run."""

    class Kind(models.TextChoices):
        RELAY = "relay", "Relayed WebSocket"
        SIDEBAND = "sideband", "Sideband (SIP/WebRTC call)"
        RESPONSES = "responses", "Responses API run"

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
    opened_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_code = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]

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


def _one_to_one(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name)
    except ObjectDoesNotExist:
        return None


def _call_dict(session: RealtimeSession) -> dict[str, Any] | None:
    """The SIP/WebRTC call of a sideband session, for the card (state, numbers, what staff may do)."""
    call = _one_to_one(session, "call") if session.kind == RealtimeSession.Kind.SIDEBAND else None
    return call.to_dict() if call is not None else None


def _run_dict(session: RealtimeSession) -> dict[str, Any] | None:
    """The Responses API run of a `responses` session, for the card: its state and output."""
    run = _one_to_one(session, "run") if session.kind == RealtimeSession.Kind.RESPONSES else None
    if run is None:
        return None
    return {
        "id": run.pk,
        "state": run.state,
        "state_label": run.get_state_display(),
        "input": run.input[:300],
        "output_text": (run.output_text or "")[:1000],
        "error": run.error,
    }


def audience_allows(audience: str, *, superuser: bool, groups: frozenset[str]) -> bool:
    """Whether a person with these groups may see and decide a request whose current step has
    this audience ("" = any staff member, else ",group,…,"). The one rule behind
    ApprovalRequest.may_decide, the queue filter (visible_to) and the dashboard consumer."""
    if superuser or not audience:
        return True
    return any(name in groups for name in audience.split(",") if name)


class ApprovalRequestQuerySet(models.QuerySet["ApprovalRequest"]):
    def pending(self) -> ApprovalRequestQuerySet:
        return self.filter(status=ApprovalRequest.Status.PENDING)

    def overdue(self, now: Any) -> ApprovalRequestQuerySet:
        return self.filter(deadline__lte=now)

    def decided(self) -> ApprovalRequestQuerySet:
        return self.exclude(status=ApprovalRequest.Status.PENDING)

    def for_display(self) -> ApprovalRequestQuerySet:
        """What `to_dict()` reads besides the conversation, fetched in the same query (the call or
        the run are realtime_bridge's one-to-ones on the session: absent for relayed sessions)."""
        return self.select_related("session", "mcp_server", "session__call__route", "session__run")

    def visible_to(self, user: Any) -> ApprovalRequestQuerySet:
        """The requests `user` may decide (in their current stage): superusers see everything,
        a request open to any staff is everyone's, the rest belong to their groups' members."""
        if user.is_superuser:
            return self
        condition = Q(audience="")
        for name in user.groups.values_list("name", flat=True):
            condition |= Q(audience__contains=f",{name},")
        return self.filter(condition)

    def for_one(self) -> ApprovalRequestQuerySet:
        """What `to_dict()` reads of one request: a sideband call or a Responses run is fetched
        only for the sessions that have one (the six-table join of for_display() costs a few
        milliseconds of planning on PostgreSQL, on the path of every card)."""
        return self.select_related("session", "mcp_server")

    def queue(self) -> ApprovalRequestQuerySet:
        """The dashboard queue: pending, most urgent first."""
        return self.pending().for_display().order_by("deadline", "pk")

    def history(self) -> ApprovalRequestQuerySet:
        """Decided requests, newest decision first."""
        return self.decided().for_display().order_by("-decided_at", "-pk")

    def unsent_decisions(self) -> ApprovalRequestQuerySet:
        """The outbox: decided with an answer for upstream, not yet sent."""
        return self.filter(
            status__in=ApprovalRequest.ANSWERED, decision_sent_at__isnull=True, session__status="open"
        ).order_by("decided_at", "pk")


class ApprovalRequest(models.Model):
    """One `mcp_approval_request` that the model made in a session."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied"
        EXPIRED = "expired", "Expired"
        CANCELLED = "cancelled", "Cancelled"

    # States whose decision is sent upstream as an mcp_approval_response (cancelled is not:
    # its session is gone).
    ANSWERED = (Status.APPROVED, Status.DENIED, Status.EXPIRED)

    session = models.ForeignKey(RealtimeSession, on_delete=models.PROTECT, related_name="requests")
    upstream_id = models.CharField(max_length=100, help_text="The approval request item id (approval_request_id).")
    mcp_server = models.ForeignKey(McpServer, null=True, blank=True, on_delete=models.SET_NULL)
    server_label = models.CharField(max_length=64)
    tool_name = models.CharField(max_length=128)
    arguments = models.TextField(help_text="The arguments string exactly as the model sent it.")
    raw_item = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    deadline = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Who or what decided, in words: a staff member's name, "deadline", "session ended".
    decided_by_label = models.CharField(max_length=150, blank=True)
    reason = models.TextField(blank=True)
    # Outbox: set when the mcp_approval_response has been handed to the upstream socket.
    decision_sent_at = models.DateTimeField(null=True, blank=True)
    # What actually ran: the mcp_call item that followed the approval.
    mcp_call_item_id = models.CharField(max_length=100, blank=True)
    call_arguments = models.TextField(blank=True)
    # NULL = no output recorded (yet); "" = the tool returned empty text. Both happen.
    call_output = models.TextField(null=True, blank=True)  # noqa: DJ001
    call_error = models.JSONField(null=True, blank=True)
    call_recorded_at = models.DateTimeField(null=True, blank=True)
    # Routing by the policy (approvals/policy.py), frozen when the request opened: the rule and
    # policy version that decided or routed it, what it said (allow/deny/ask), and for "ask" the
    # stages: who may decide, how many distinct approvers, the deadline, what the deadline does.
    # rule_label is blank for the built-in default (no rule matched, or no policy at all).
    rule_label = models.CharField(max_length=100, blank=True)
    policy_version = models.PositiveIntegerField(null=True, blank=True)
    policy_outcome = models.CharField(max_length=8, blank=True)
    plan = models.JSONField(default=dict, blank=True)
    # The current stage of the plan (0 = first; escalation moves it on) and who may decide in it:
    # "" = any staff member, else ",group,group," (the delimiters make a portable substring match
    # for the queue filter), and how many distinct approvers it needs.
    stage = models.PositiveSmallIntegerField(default=0)
    audience = models.CharField(max_length=500, blank=True)
    quorum = models.PositiveSmallIntegerField(default=1)
    # Approvals counted so far: [{"user_id", "label", "stage", "at"}], one per person per request.
    votes = models.JSONField(default=list, blank=True)
    # Set by the retention purge (compliance.services.purge): the arguments, raw item and call
    # result above were removed; the audit rows keep their hashes.
    purged_at = models.DateTimeField(null=True, blank=True)

    objects = ApprovalRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["session", "upstream_id"], name="approval_unique_upstream_id"),
            models.CheckConstraint(
                condition=Q(status="pending") | Q(decided_at__isnull=False), name="approval_decided_has_time"
            ),
        ]
        indexes = [
            models.Index(fields=["deadline"], condition=Q(status="pending"), name="approval_pending_deadline"),
            models.Index(fields=["status", "-decided_at"], name="approval_status_decided"),
            # The review search (compliance/search.py): newest first, within a time range, by tool
            # or server.
            models.Index(fields=["-created_at", "-id"], name="approval_created"),
            models.Index(fields=["tool_name", "-created_at"], name="approval_tool_created"),
            models.Index(fields=["server_label", "-created_at"], name="approval_server_created"),
        ]

    def __str__(self) -> str:
        return f"{self.tool_name} on {self.server_label} ({self.status})"

    @property
    def tool_title(self) -> str:
        return plain_words(self.tool_name)

    @property
    def server_title(self) -> str:
        return plain_words(self.server_label)

    @property
    def parsed_arguments(self) -> Any:
        """The arguments as JSON data for display, or None when the string is not valid JSON
        (the raw string is always kept and shown too)."""
        try:
            return json.loads(self.arguments) if self.arguments else {}
        except ValueError:
            return None

    def conversation(self, limit: int = CARD_CONVERSATION_LINES) -> list[ConversationLine]:
        """The session's last `limit` lines; for a decided request, the ones before the decision
        (what the decider saw), so a case reads the same later."""
        lines = ConversationLine.objects.filter(session_id=self.session_id)
        if self.decided_at is not None:
            lines = lines.filter(created_at__lte=self.decided_at)
        return list(reversed(lines.order_by("-created_at", "-pk")[:limit]))

    def to_dict(self, *, now: datetime | None = None) -> dict[str, Any]:
        """The one serialiser of a request: dashboard snapshots, events and JSON views.
        Never includes the MCP server's authorization or headers (the secrets stay in McpServer)."""
        now = now or timezone.now()
        session = self.session
        server = self.mcp_server
        return {
            "id": self.pk,
            "upstream_id": self.upstream_id,
            "status": self.status,
            "status_label": self.get_status_display(),
            "tool_name": self.tool_name,
            "tool_title": self.tool_title,
            "server_label": self.server_label,
            "server_title": self.server_title,
            "server_description": server.description if server is not None else "",
            "arguments": self.parsed_arguments,
            "arguments_raw": self.arguments,
            "session": {
                "id": session.pk,
                "kind": session.kind,
                "kind_label": session.get_kind_display(),
                "label": session.label,
                "metadata": session.metadata,
                "status": session.status,
                "call": _call_dict(session),
                "run": _run_dict(session),
            },
            "conversation": [line.to_dict() for line in self.conversation()],
            "created_at": self.created_at.isoformat(),
            "deadline": self.deadline.isoformat(),
            "timeout_seconds": self.step_seconds,
            "seconds_left": round(max(0.0, (self.deadline - now).total_seconds()), 1)
            if self.status == self.Status.PENDING
            else 0,
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "decided_by_label": self.decided_by_label,
            "reason": self.reason,
            "approve": self.approve,
            "decision_sent_at": self.decision_sent_at.isoformat() if self.decision_sent_at else None,
            "policy": {
                "rule": self.rule_label,
                "version": self.policy_version,
                "outcome": self.policy_outcome,
                "stage": self.stage,
                "stages": len((self.plan or {}).get("stages") or []),
                "groups": self.audience_groups,
                "quorum": self.quorum,
                "quorum_label": self.quorum_label,
                "votes": [{"user_id": v["user_id"], "label": v["label"]} for v in self.stage_votes()],
            },
            "call": {
                "recorded": self.call_recorded_at is not None,
                "arguments": self.call_arguments,
                "output": self.call_output,
                "error": self.call_error,
            },
        }

    @property
    def step_seconds(self) -> int:
        """How long the current step gives (the deadline minus when the step began)."""
        stages = (self.plan or {}).get("stages") or []
        if self.stage < len(stages) and stages[self.stage].get("deadline_seconds"):
            return int(stages[self.stage]["deadline_seconds"])
        return round((self.deadline - self.created_at).total_seconds())

    @property
    def audience_groups(self) -> list[str]:
        """The groups that may decide the current stage; [] = any staff member."""
        return [name for name in self.audience.split(",") if name]

    def may_decide(self, user: Any) -> bool:
        """Whether `user` (active staff) may decide this request's current stage."""
        if not (user.is_active and user.is_staff):
            return False
        if user.is_superuser or not self.audience:
            return True
        return audience_allows(
            self.audience, superuser=False, groups=frozenset(user.groups.values_list("name", flat=True))
        )

    def stage_votes(self) -> list[dict[str, Any]]:
        return [v for v in self.votes or [] if v.get("stage") == self.stage]

    @property
    def quorum_label(self) -> str:
        """'1 of 2 managers', or '' when one approver is enough."""
        if self.quorum <= 1:
            return ""
        who = " or ".join(self.audience_groups) or "staff"
        return f"{len(self.stage_votes())} of {self.quorum} {who}"

    @property
    def approve(self) -> bool | None:
        """The answer that goes upstream: True, False, or None while pending or if cancelled."""
        if self.status == self.Status.APPROVED:
            return True
        if self.status in (self.Status.DENIED, self.Status.EXPIRED):
            return False
        return None


class AuditEvent(models.Model):
    """One event of a request's (or the system's) life, written in the same transaction as the
    change it records, by approvals.audit.record() only. Rows form a hash chain (format in
    compliance/chain.py); on PostgreSQL a trigger refuses UPDATE and DELETE, except the retention
    purge that empties `payload` and keeps every hash."""

    class Kind(models.TextChoices):
        REQUESTED = "requested", "Requested"
        # The policy rule (and version) that decided or routed a request (approvals/policy.py).
        POLICY_ROUTED = "policy_routed", "Routed by policy"
        # One approver's approval counted toward a quorum that is not reached yet.
        VOTED = "voted", "Approval counted toward the quorum"
        # The deadline of an asking stage passed and the request moved to the next group.
        ESCALATED = "escalated", "Escalated to the next group"
        NOTIFIED = "notified", "Shown on the staff dashboards"
        OPENED = "opened", "Opened by a staff member"
        DECIDED = "decided", "Decided"
        EXPIRED = "expired", "Expired"
        CANCELLED = "cancelled", "Cancelled"
        SENT = "sent", "Decision sent upstream"
        MCP_CALL = "mcp_call", "Tool call result"
        SESSION_OPENED = "session_opened", "Session opened"
        SESSION_CLOSED = "session_closed", "Session closed"
        TOKEN_ISSUED = "token_issued", "Client token issued"
        TOKEN_REVOKED = "token_revoked", "Client token revoked"
        SERVER_SAVED = "server_saved", "MCP server registered or changed"
        SERVER_DELETED = "server_deleted", "MCP server deleted"
        SERVER_PROBED = "server_probed", "MCP server probed"
        TOOL_REVIEWED = "tool_reviewed", "Changed MCP tool reviewed"
        TOOL_DRIFTED = "tool_drifted", "MCP tool definition changed"
        POLICY_CHANGED = "policy_changed", "Approval policy changed"
        CALL_ACCEPTED = "call_accepted", "Phone call accepted"
        CALL_REJECTED = "call_rejected", "Phone call rejected"
        CALL_TRANSFERRED = "call_transferred", "Phone call transferred"
        CALL_HUNG_UP = "call_hung_up", "Phone call hung up"
        LOGIN = "login", "Logged in"
        LOGIN_FAILED = "login_failed", "Failed login"
        LEGAL_HOLD_PLACED = "legal_hold_placed", "Legal hold placed"
        LEGAL_HOLD_RELEASED = "legal_hold_released", "Legal hold released"
        EXPORTED = "exported", "Audit exported"
        PURGED = "purged", "Retention purge"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    request = models.ForeignKey(ApprovalRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="audit")
    session = models.ForeignKey(RealtimeSession, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=150, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # The chain (compliance/chain.py): position, and the SHA-256 of the payload, of the row's
    # canonical content, of the previous row, and of this row.
    seq = models.PositiveBigIntegerField(unique=True)
    payload_hash = models.CharField(max_length=64)
    content_hash = models.CharField(max_length=64)
    prev_hash = models.CharField(max_length=64)
    row_hash = models.CharField(max_length=64)
    payload_purged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["seq"]
        indexes = [models.Index(fields=["request", "created_at"]), models.Index(fields=["kind", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} #{self.seq}"

    def to_chain_dict(self) -> dict[str, Any]:
        """The row as the chain hashes it and a bundle exports it (compliance/chain.py)."""
        from compliance import chain

        return {
            "seq": self.seq,
            "id": self.pk,
            "kind": self.kind,
            "at": chain.format_time(self.created_at),
            "request": self.request_id,
            "session": self.session_id,
            "actor": self.actor_id,
            "actor_label": self.actor_label,
            "payload": None if self.payload_purged_at else self.payload,
            "payload_sha256": self.payload_hash,
            "content_sha256": self.content_hash,
            "prev_sha256": self.prev_hash,
            "row_sha256": self.row_hash,
        }


class AuditChainHead(models.Model):
    """The one row (pk=1) naming the chain's last link. Every audit writer locks it for the rest of
    its transaction (approvals.audit.record), so the chain has one tail and never forks."""

    seq = models.PositiveBigIntegerField(default=0)
    row_hash = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"audit chain head #{self.seq}"


# Policies -----------------------------------------------------------------------------------
# The rules as admins edit them (PolicyRule, EscalationStep) and, for every change, the whole set
# as it was then (PolicyVersion). Requests are routed by the latest version's document, never
# by the rows directly, so "rule X of version N" always names exactly what was applied
# (approvals/policy.py, docs/policies.md).


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
