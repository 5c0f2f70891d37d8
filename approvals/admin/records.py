"""The records' admin pages: approval requests, sessions, audit rows and grants. Read-only: their
state only changes through approvals/services.py (a grant's Revoke action calls it)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest

from approvals import services
from approvals.models import ApprovalRequest, Grant, RealtimeSession
from audit.models import AuditEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records of what happened: they change only through approvals/services.py."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AuditEventInline(admin.TabularInline):
    model = AuditEvent
    fk_name = "request"
    fields = readonly_fields = ("created_at", "kind", "actor_label", "payload")
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdmin):
    list_display = ["pk", "tool_name", "server_label", "session", "status", "created_at", "decided_by_label"]
    list_filter = ["status", "server_label"]
    search_fields = ["tool_name", "upstream_id", "session__label", "decided_by_label", "reason"]
    list_select_related = ["session"]
    date_hierarchy = "created_at"
    inlines = [AuditEventInline]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["pk", "created_at", "kind", "actor_label", "request", "session"]
    list_filter = ["kind"]
    search_fields = ["actor_label", "request__upstream_id", "session__label"]
    list_select_related = ["request", "session"]
    date_hierarchy = "created_at"


@admin.register(RealtimeSession)
class RealtimeSessionAdmin(ReadOnlyAdmin):
    list_display = ["pk", "label", "kind", "status", "model", "opened_at", "closed_at", "close_code"]
    list_filter = ["kind", "status"]
    search_fields = ["label", "upstream_session_id", "call_id"]
    date_hierarchy = "opened_at"


@admin.register(Grant)
class GrantAdmin(ReadOnlyAdmin):
    """Grants (issue 14): read-only like every record; the one change, revoking, goes through
    services.revoke_grant (audited), as on the dashboard."""

    list_display = ["pk", "scope", "tool_name", "server_label", "session", "subject_value", "state_label"]
    list_display += ["used_count", "created_by_label", "created_at", "expires_at"]
    list_filter = ["scope", "server_label"]
    search_fields = ["tool_name", "session__label", "subject_value", "created_by_label"]
    list_select_related = ["session"]
    date_hierarchy = "created_at"
    actions = ["revoke"]

    @admin.display(description="state")
    def state_label(self, obj: Grant) -> str:
        return obj.state()

    @admin.action(description="Revoke the selected grants")
    def revoke(self, request: HttpRequest, queryset: QuerySet[Grant]) -> None:
        done = refused = 0
        for grant in queryset:
            try:
                done += services.revoke_grant(grant, by=request.user)  # type: ignore[arg-type]
            except PermissionDenied:
                refused += 1
        self.message_user(request, f"Revoked {done} grant(s).")
        if refused:
            self.message_user(request, f"{refused} grant(s) are not yours to revoke.", level=messages.WARNING)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The action needs it; the form stays read-only (every field is read-only below).
        return bool(request.user.is_active and request.user.is_staff)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in Grant._meta.fields]
