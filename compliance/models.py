"""What the compliance review keeps beside the audit chain: legal holds and export jobs, and the
kinds of audit events it writes. Changed only through compliance/services.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from approvals.models import ApprovalRequest
from audit import kinds

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser

__all__ = ["COMPLIANCE_GROUP", "AuditKind", "Export", "LegalHold", "ReviewAccess"]

COMPLIANCE_GROUP = "compliance"


class AuditKind(models.TextChoices):
    """The audit events of the review and of signing in (the values are hashed into the chain)."""

    LOGIN = "login", "Logged in"
    LOGIN_FAILED = "login_failed", "Failed login"
    LEGAL_HOLD_PLACED = "legal_hold_placed", "Legal hold placed"
    LEGAL_HOLD_RELEASED = "legal_hold_released", "Legal hold released"
    EXPORTED = "exported", "Audit exported"
    EXPORT_SHARED = "export_shared", "Audit export shared"
    PURGED = "purged", "Retention purge"


kinds.register(AuditKind)


class ReviewAccess(models.Model):
    """No table: only the holder of the review permissions, which the `compliance` group has."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_review", "Can see the compliance review pages"),
            ("manage_legal_hold", "Can place and release legal holds"),
        ]

    def __str__(self) -> str:
        return "review access"


class LegalHoldQuerySet(models.QuerySet["LegalHold"]):
    def active(self) -> LegalHoldQuerySet:
        return self.filter(released_at__isnull=True)


class LegalHold(models.Model):
    """A case the retention purge must not touch until the hold is released."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.PROTECT, related_name="legal_holds")
    reason = models.TextField()
    placed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    placed_at = models.DateTimeField(default=timezone.now)
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    released_at = models.DateTimeField(null=True, blank=True)

    objects = LegalHoldQuerySet.as_manager()

    class Meta:
        ordering = ["-placed_at"]
        constraints = [
            # One active hold per case: placing it twice is a no-op, not a second row.
            models.UniqueConstraint(fields=["request"], condition=Q(released_at__isnull=True), name="one_active_hold")
        ]

    def __str__(self) -> str:
        return f"hold on request {self.request_id}"


class Export(models.Model):
    """An evidence bundle of one search, built by a Celery task (compliance/tasks.py)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for a worker"
        RUNNING = "running", "Running"
        DONE = "done", "Ready"
        FAILED = "failed", "Failed"

    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # The reviewers its creator shared it with (compliance/exports.py share()): they may open it too.
    shared_with = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    query = models.JSONField(default=dict, help_text="The search's parameters.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    file_name = models.CharField(max_length=200, blank=True)
    # SHA-256 of the finished zip, shown on the page: with it, verify_bundle --sha256 also
    # catches a changed byte in the zip's own headers, which carry no evidence.
    sha256 = models.CharField(max_length=64, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"export {self.pk} ({self.status})"

    def visible_to(self, user: AbstractBaseUser | AnonymousUser) -> bool:
        """Its creator, those it is shared with, and superusers may open it."""
        if not user.is_authenticated:
            return False
        if user.is_superuser or self.requested_by_id == user.pk:  # type: ignore[attr-defined]
            return True
        return self.shared_with.filter(pk=user.pk).exists()

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        return int(100 * self.done / self.total) if self.total else 0

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.pk,
            "status": self.status,
            "status_label": self.get_status_display(),
            "done": self.done,
            "total": self.total,
            "percent": self.percent,
            "error": self.error,
            "sha256": self.sha256,
        }
