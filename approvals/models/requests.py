"""Approval requests: one per `mcp_approval_request` a model made, with its routing, votes,
decision and the call that followed. The one serialiser of a request for staff (to_dict)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext

from approvals.models.cards import related_paths, session_details
from approvals.models.registry import McpServer
from approvals.models.sessions import ConversationLine, RealtimeSession

# How many of the latest conversation lines a dashboard card shows.
CARD_CONVERSATION_LINES = 6
# Members of this group review decisions (compliance/, whose COMPLIANCE_GROUP is this name) and
# never make one, under any rule, the default included, and even when they are superusers:
# duties do not mix. Named here because approvals/ may not import compliance/.
REVIEW_ONLY_GROUP = "compliance"


def plain_words(name: str) -> str:
    """`refund_minibar-charge` / `refundMinibarCharge` → "Refund minibar charge", for people."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ").replace("-", " ").split()
    text = " ".join(words).lower()
    return text[:1].upper() + text[1:] if text else name


def audience_allows(audience: str, *, superuser: bool, groups: frozenset[str]) -> bool:
    """Whether a person with these groups may see and decide a request whose current step has
    this audience ("" = any staff member, else ",group,…,"). The one rule behind
    ApprovalRequest.may_decide, the queue filter (visible_to) and the dashboard consumer."""
    if superuser or not audience:
        return True
    return any(name in groups for name in audience.split(",") if name)


def grant_options(plan: Any) -> dict[str, Any]:
    """What a decision of a request may grant beyond itself, as its rule said when it opened:
    {"scopes": ["session", "guest"], "max_minutes": 60}. A plan from before grants existed (or
    of a request decided at once) allows none."""
    given = plan.get("grants") if isinstance(plan, dict) else None
    if not isinstance(given, dict):
        return {"scopes": [], "max_minutes": 0}
    scopes = [s for s in given.get("scopes") or [] if s in ("session", "guest")]
    return {"scopes": scopes, "max_minutes": int(given.get("max_minutes") or 0)}


class ApprovalRequestQuerySet(models.QuerySet["ApprovalRequest"]):
    def pending(self) -> ApprovalRequestQuerySet:
        return self.filter(status=ApprovalRequest.Status.PENDING)

    def overdue(self, now: Any) -> ApprovalRequestQuerySet:
        return self.filter(deadline__lte=now)

    def decided(self) -> ApprovalRequestQuerySet:
        return self.exclude(status=ApprovalRequest.Status.PENDING)

    def for_display(self) -> ApprovalRequestQuerySet:
        """What `to_dict()` reads besides the conversation, fetched in the same query (with what
        the registered session details read, approvals/models/cards.py)."""
        return self.select_related("session", "mcp_server", *related_paths())

    def reached_by(self, user: Any) -> ApprovalRequestQuerySet:
        """The requests any step of which `user`'s groups could decide (the history: an escalated
        request stays in the history of the group it left)."""
        if user.is_superuser:
            return self
        condition = Q(audience="") | Q(reached_audience__contains=",*,")
        for name in user.groups.values_list("name", flat=True):
            condition |= Q(audience__contains=f",{name},") | Q(reached_audience__contains=f",{name},")
        return self.filter(condition)

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

    def owed_upstream(self) -> ApprovalRequestQuerySet:
        """The outbox of the sessions that have an upstream to answer (a Realtime socket, a call's
        sideband, a Responses run): what a stuck relay leaves behind. A request of the approval API
        or of a gateway client has none: its caller reads the answer (or gets a webhook) when it
        likes, so an answer it has not read yet is no backlog."""
        return self.unsent_decisions().filter(session__kind__in=RealtimeSession.UPSTREAM_KINDS)


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
    # Every group any step reached so far, in the form of `audience` (",*," when a step was open
    # to any staff): the history shows a request to the groups it passed through, not only to
    # the one that ended it (an escalated request stays in the front desk's history).
    reached_audience = models.CharField(max_length=1000, blank=True)
    # The claim ("I'm on it"): on the request row rather than a Claim table because there is at
    # most one per request, it is taken and given up by one conditional UPDATE of this row (the
    # same row lock that serialises decisions), and to_dict reads it with no extra query. Who
    # claimed it is kept as a label too, like decided_by_label: a card never joins the user table.
    # The claim is advisory: anyone allowed may still decide. It lapses after CLAIM_SECONDS.
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    claimed_by_label = models.CharField(max_length=150, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Approvals counted so far: [{"user_id", "label", "stage", "at"}], one per person per request.
    votes = models.JSONField(default=list, blank=True)
    # Set by the retention purge (compliance.services.purge): the arguments, raw item and call
    # result above were removed; the audit rows keep their hashes.
    purged_at = models.DateTimeField(null=True, blank=True)
    # Approve with changes (issue 14): the arguments a person approved instead (canonical JSON);
    # the request itself is answered upstream as a denial asking for exactly these.
    edited_arguments = models.TextField(blank=True)
    # The model's turn that asked (session and the user line before it): cards of one turn are
    # shown together and may be approved all at once.
    turn = models.CharField(max_length=100, blank=True)
    # The grant that approved this request without asking (services/grants.py).
    grant = models.ForeignKey(
        "approvals.Grant", null=True, blank=True, on_delete=models.PROTECT, related_name="approved_requests"
    )

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
            # The claim sweep: only the few claimed rows are in it.
            models.Index(fields=["claimed_at"], condition=Q(claimed_at__isnull=False), name="approval_claimed_at"),
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
                **session_details(session),
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
            # Who started the session: they never decide its requests (decision_refusal), and
            # their card says so instead of showing the buttons.
            "started_by": {"id": session.started_by_id, "label": session.started_by_label}
            if session.started_by_id is not None
            else None,
            "reason": self.reason,
            "approve": self.approve,
            "decision_sent_at": self.decision_sent_at.isoformat() if self.decision_sent_at else None,
            "requires": self.requires,
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
            "claim": self.live_claim(now),
            "next_step": self.next_step(),
            "turn": self.turn,
            "changes": self.changes,
            "grant_id": self.grant_id,
            "grants": grant_options(self.plan),
            "call": {
                "recorded": self.call_recorded_at is not None,
                "arguments": self.call_arguments,
                "output": self.call_output,
                "error": self.call_error,
            },
        }

    def live_claim(self, now: datetime) -> dict[str, Any] | None:
        """Who is on it: {user_id, label, at, seconds}, or None when unclaimed, decided, or the claim is
        older than CLAIM_SECONDS (released lazily here; the sweep clears the row later)."""
        if self.status != self.Status.PENDING or self.claimed_by_id is None or self.claimed_at is None:
            return None
        age = (now - self.claimed_at).total_seconds()
        if age >= settings.CLAIM_SECONDS:
            return None
        # `seconds`: how long it has been claimed, so that a card counts on from the server's
        # clock, not the device's (as seconds_left does for the deadline).
        return {
            "user_id": self.claimed_by_id,
            "label": self.claimed_by_label,
            "at": self.claimed_at.isoformat(),
            "seconds": round(max(0.0, age), 1),
        }

    def next_step(self) -> dict[str, Any] | None:
        """Where a pending request goes when its current step's deadline passes, if it escalates:
        {groups, at} (at = the current deadline), else None."""
        stages = (self.plan or {}).get("stages") or []
        if self.status != self.Status.PENDING or self.stage + 1 >= len(stages):
            return None
        if stages[self.stage].get("on_deadline") != "escalate":
            return None
        return {"groups": list(stages[self.stage + 1].get("groups") or []), "at": self.deadline.isoformat()}

    def earlier_audience(self) -> str | None:
        """The audience of the steps before the current one (the `audience` form; "" = any
        staff), or None at the first step: who saw this request before it escalated."""
        if self.stage == 0:
            return None
        stages = (self.plan or {}).get("stages") or []
        groups: list[str] = []
        for step in stages[: self.stage]:
            if not step.get("groups"):
                return ""
            groups += [g for g in step["groups"] if g not in groups]
        return f",{','.join(groups)}," if groups else ""

    @property
    def step_seconds(self) -> int:
        """How long the current step gives (the deadline minus when the step began)."""
        stages = (self.plan or {}).get("stages") or []
        if self.stage < len(stages) and stages[self.stage].get("deadline_seconds"):
            return int(stages[self.stage]["deadline_seconds"])
        return round((self.deadline - self.created_at).total_seconds())

    @property
    def changes(self) -> dict[str, Any] | None:
        """Approved with changes: {"old", "new"} (parsed where they are JSON), else None."""
        if not self.edited_arguments:
            return None
        try:
            new: Any = json.loads(self.edited_arguments)
        except ValueError:
            new = self.edited_arguments
        return {"old": self.parsed_arguments, "new": new}

    @property
    def outcome_label(self) -> str:
        """The status in words, "approved with changes" for an edited approval."""
        return gettext("Approved with changes") if self.edited_arguments else self.get_status_display()

    @property
    def requires(self) -> dict[str, bool]:
        """What a person must give to decide, as its rule said when the request opened (its plan):
        {"confirm", "reason_on_approve", "reason_on_deny", "step_up"}, each a bool."""
        given = (self.plan or {}).get("requires")
        given = given if isinstance(given, dict) else {}
        return {key: given.get(key) is True for key in ("confirm", "reason_on_approve", "reason_on_deny", "step_up")}

    @property
    def audience_groups(self) -> list[str]:
        """The groups that may decide the current stage; [] = any staff member."""
        return [name for name in self.audience.split(",") if name]

    def in_audience_of(self, user: Any) -> bool:
        """Whether this request's current stage is routed to `user` (active staff): what their
        queue shows them. Deciding it also needs decision_refusal to find nothing."""
        if not (user.is_active and user.is_staff):
            return False
        groups = frozenset(user.groups.values_list("name", flat=True))
        return audience_allows(self.audience, superuser=bool(user.is_superuser), groups=groups)

    def may_decide(self, user: Any) -> bool:
        """Whether `user` may decide this request's current stage (decision_refusal says why not)."""
        return self.decision_refusal(user) is None

    def decision_refusal(self, user: Any) -> str | None:
        """Why `user` may not decide this request's current stage, in words for them; None when
        they may. The one rule behind services.check_may_decide: active staff only; never a
        member of REVIEW_ONLY_GROUP (superusers included); never whoever started the session;
        else the current stage's groups (any staff when it names none; superusers always)."""
        if not (user.is_active and user.is_staff):
            return gettext("Only staff can decide approval requests.")
        groups = frozenset(user.groups.values_list("name", flat=True))
        if REVIEW_ONLY_GROUP in groups:
            return gettext("Members of %(group)s review decisions and never make them.") % {"group": REVIEW_ONLY_GROUP}
        if self.session.started_by_id is not None and self.session.started_by_id == user.pk:
            return gettext("You started this session: someone else must decide.")
        if audience_allows(self.audience, superuser=bool(user.is_superuser), groups=groups):
            return None
        return gettext("Only members of %(groups)s may decide this request.") % {
            "groups": " or ".join(self.audience_groups)
        }

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
