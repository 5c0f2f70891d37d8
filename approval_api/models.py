"""Webhook subscriptions of the approval API and each delivery of each event (visible in the admin)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from approvals.models import ApprovalRequest, ClientToken
from approvals.models.fields import EncryptedTextField


class WebhookEndpoint(models.Model):
    """Where a client token's programs want to hear of its requests' decisions. Signed as
    Standard Webhooks sign (`webhook-id`, `webhook-timestamp`, `webhook-signature`)."""

    client_token = models.ForeignKey(ClientToken, on_delete=models.PROTECT, related_name="webhooks")
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    # `whsec_` + base64 of 24 random bytes; encrypted at rest (FIELD_ENCRYPTION_KEYS).
    secret = EncryptedTextField()
    created_at = models.DateTimeField(default=timezone.now)
    disabled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.url} ({self.client_token.label})"

    @property
    def is_active(self) -> bool:
        return self.disabled_at is None


class WebhookDelivery(models.Model):
    """One event for one endpoint: tried at once, then retried with backoff until it is
    answered with a 2xx or the retries are spent."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed (retries spent)"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT, related_name="deliveries")
    request = models.ForeignKey(ApprovalRequest, null=True, on_delete=models.PROTECT, related_name="+")
    message_id = models.CharField(max_length=40, unique=True)
    event_type = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            # One delivery of one event per endpoint, however often the decision is told.
            models.UniqueConstraint(fields=["endpoint", "request", "event_type"], name="webhook_delivery_once")
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="webhook_delivery_due"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint.url} ({self.status})"
