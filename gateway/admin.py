"""The gateway's calls in the admin, read-only: what ran through it and what it refused (the audit
chain holds the same; this is the list to search). Tokens are not shown: they are secrets."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from approvals.models import GatewayCall


@admin.register(GatewayCall)
class GatewayCallAdmin(admin.ModelAdmin):
    list_display = ["created_at", "server_label", "tool_name", "outcome", "via", "request", "session", "allowed_by"]
    list_filter = ["outcome", "server_label"]
    search_fields = ["tool_name", "server_label", "via", "reason"]
    readonly_fields = [f.name for f in GatewayCall._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: GatewayCall | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: GatewayCall | None = None) -> bool:
        return False
