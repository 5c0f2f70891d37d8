"""The records' admin pages: approval requests, sessions and audit rows. Read-only: their state
only changes through approvals/services.py."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from approvals.models import ApprovalRequest, RealtimeSession
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
