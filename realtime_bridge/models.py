"""Sessions Countersign reaches without relaying their media: SIP and WebRTC calls (watched
through a sideband socket) and Responses API runs. Fields, choices, constraints and reads only;
changes go through realtime_bridge/calls.py and realtime_bridge/runs.py."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from approvals.models import ApprovalRequest, ClientToken, McpServer, RealtimeSession


def sip_number(uri: str) -> str:
    """`sip:+18005551212@sip.example.com` / `<tel:+1800…>;tag=x` → `+18005551212`."""
    text = uri.strip().strip("<>")
    text = re.sub(r"^(sips?|tel):", "", text)
    return text.split("@", 1)[0].split(";", 1)[0].strip("<> ")


class SipRoute(models.Model):
    """Which calls to take, and how: the dialled number (`To`) and the caller (`From`) pick the
    first enabled route by priority; it names the session and gives the config to accept with."""

    name = models.CharField(max_length=100)
    priority = models.IntegerField(default=100, help_text="Lower numbers are tried first.")
    to_pattern = models.CharField(
        max_length=100, blank=True, help_text="The dialled number, e.g. +18005551212 or +1800*; blank: any."
    )
    from_pattern = models.CharField(max_length=100, blank=True, help_text="The caller's number pattern; blank: any.")
    label = models.CharField(max_length=100, help_text="How the call's cards are named, e.g. 'Front desk line'.")
    metadata = models.JSONField(default=dict, blank=True, help_text='e.g. {"line": "front desk", "property": "Lisbon"}')
    model = models.CharField(max_length=100, blank=True, help_text="Blank: OPENAI_REALTIME_MODEL.")
    instructions = models.TextField(blank=True)
    voice = models.CharField(max_length=40, blank=True)
    mcp_servers = models.ManyToManyField(
        McpServer, blank=True, help_text="The registered servers the call may use; none selected: every enabled one."
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["priority", "pk"]
        verbose_name = "SIP route"

    def __str__(self) -> str:
        return self.name

    def matches(self, *, to_number: str, from_number: str) -> bool:
        return all(
            not pattern or fnmatch.fnmatchcase(number, pattern)
            for pattern, number in ((self.to_pattern, to_number), (self.from_pattern, from_number))
        )


class WebhookDelivery(models.Model):
    """One verified webhook, kept by its `webhook-id`: a replayed or re-delivered one is seen
    here first and does nothing (the djangoproject "already processed?" check)."""

    webhook_id = models.CharField(max_length=200, unique=True)
    event_id = models.CharField(max_length=200, blank=True)
    event_type = models.CharField(max_length=100)
    payload = models.JSONField(default=dict)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event_type} {self.webhook_id}"


class CallQuerySet(models.QuerySet["Call"]):
    def live(self) -> CallQuerySet:
        """Calls a sideband should be attached to."""
        return self.filter(status=Call.Status.ACCEPTED)


class Call(models.Model):
    """A SIP or WebRTC call, attached to by the bridge with `?call_id=`."""

    class Kind(models.TextChoices):
        SIP = "sip", "SIP call"
        WEBRTC = "webrtc", "Browser call (WebRTC)"

    class Status(models.TextChoices):
        INCOMING = "incoming", "Ringing"
        ACCEPTED = "accepted", "In progress"
        REJECTED = "rejected", "Rejected"
        REFERRED = "referred", "Transferred"
        ENDED = "ended", "Ended"

    call_id = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.INCOMING)
    route = models.ForeignKey(SipRoute, null=True, blank=True, on_delete=models.SET_NULL)
    session = models.OneToOneField(
        RealtimeSession, null=True, blank=True, on_delete=models.PROTECT, related_name="call"
    )
    from_number = models.CharField(max_length=100, blank=True)
    to_number = models.CharField(max_length=100, blank=True)
    sip_headers = models.JSONField(default=list, blank=True)
    # What happened to it, in words (rejected with 486, transferred to tel:…, hung up by Alice). A
    # staff action writes it (and refer_target) just before it asks OpenAI, see calls.end_call.
    outcome = models.CharField(max_length=200, blank=True)
    refer_target = models.CharField(max_length=200, blank=True)
    # Who asked for that staff action: the audit row of the hang-up or transfer names them, and
    # whichever of the staff action and the bridge ends the call first writes it (calls.end_call).
    action_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    # The bridge process holding the call's sideband (`host:pid:nonce`) and until when: a
    # bridge renews its leases every few seconds; another takes a call over once its lease has
    # expired (realtime_bridge/sideband.py).
    leased_by = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    objects = CallQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status"], condition=Q(status="accepted"), name="call_live")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.call_id} ({self.status})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.pk,
            "call_id": self.call_id,
            "kind": self.kind,
            "status": self.status,
            "status_label": self.get_status_display(),
            "from": self.from_number,
            "to": self.to_number,
            "route": self.route.name if self.route_id and self.route else None,
            "session_id": self.session_id,
            "outcome": self.outcome,
            "refer_target": self.refer_target,
            "created_at": self.created_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "can_hang_up": self.status == self.Status.ACCEPTED,
            "can_transfer": self.status == self.Status.ACCEPTED and self.kind == self.Kind.SIP,
        }


class ResponsesRunQuerySet(models.QuerySet["ResponsesRun"]):
    def ready_to_resume(self) -> ResponsesRunQuerySet:
        """Waiting runs none of whose approval requests is pending any more."""
        pending = ApprovalRequest.objects.filter(session_id=models.OuterRef("session_id")).pending()
        return self.filter(state=ResponsesRun.State.WAITING).exclude(models.Exists(pending))

    def lease_expired(self, now: Any) -> ResponsesRunQuerySet:
        """Running runs nobody holds any more: their worker died (or lost its database) without
        renewing the lease, or a retry after a transient error is due. (NULL: a run left running
        before leases existed.)"""
        return self.filter(state=ResponsesRun.State.RUNNING).filter(
            Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)
        )


class ResponsesRun(models.Model):
    """A text agent run on the Responses API. It pauses (`waiting`) on approval requests and
    resumes with `previous_response_id` once every one of them is decided."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        WAITING = "waiting", "Waiting for approval"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    session = models.OneToOneField(RealtimeSession, on_delete=models.PROTECT, related_name="run")
    client_token = models.ForeignKey(ClientToken, null=True, blank=True, on_delete=models.SET_NULL)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    model = models.CharField(max_length=100)
    instructions = models.TextField(blank=True)
    input = models.TextField()
    # The last response; the next request continues from it.
    previous_response_id = models.CharField(max_length=200, blank=True)
    output_text = models.TextField(blank=True)
    output = models.JSONField(default=list, blank=True, help_text="The last response's output items.")
    # Why it failed; while it is still running, the last transient error being retried.
    error = models.TextField(blank=True)
    steps = models.PositiveIntegerField(default=0, help_text="Responses API calls made so far.")
    # The step in flight (runs.py): who holds it and until when (a heartbeat renews the lease
    # while the call is out; after a transient error it is the time of the retry), how often it
    # was taken up again, the request's input (the user's text, or the mcp_approval_response
    # items), when that request last left (unless it is known not to have reached OpenAI), and
    # the response, kept as soon as it arrives and until it is recorded.
    lease_token = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    step_input = models.JSONField(null=True, blank=True)
    step_sent_at = models.DateTimeField(null=True, blank=True)
    step_response = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = ResponsesRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["state"], condition=Q(state="waiting"), name="run_waiting"),
            # The sweep looks for running runs whose lease has expired, every second.
            models.Index(fields=["lease_expires_at"], condition=Q(state="running"), name="run_running"),
        ]

    def __str__(self) -> str:
        return f"Run #{self.pk} ({self.state})"

    def to_dict(self) -> dict[str, Any]:
        requests = ApprovalRequest.objects.filter(session_id=self.session_id).order_by("created_at", "pk")
        return {
            "id": self.pk,
            "state": self.state,
            "state_label": self.get_state_display(),
            "session_id": self.session_id,
            "model": self.model,
            "input": self.input,
            "output_text": self.output_text,
            "output": self.output,
            "error": self.error,
            "attempts": self.attempts,
            "previous_response_id": self.previous_response_id,
            "approvals": [
                {"id": r.pk, "upstream_id": r.upstream_id, "tool_name": r.tool_name, "status": r.status}
                for r in requests
            ],
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }
