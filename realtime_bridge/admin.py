"""Admin for SIP routes (editable: configuration), and read-only views of calls, webhook
deliveries and Responses runs (their state changes only through calls.py and runs.py)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from approvals.forms import BoundedJSONField
from realtime_bridge.models import Call, ResponsesRun, SipRoute, WebhookDelivery


@admin.register(SipRoute)
class SipRouteAdmin(admin.ModelAdmin):
    list_display = ["name", "priority", "to_pattern", "from_pattern", "label", "enabled"]
    list_editable = ["priority", "enabled"]
    list_filter = ["enabled"]
    filter_horizontal = ["mcp_servers"]
    formfield_overrides = {models.JSONField: {"form_class": BoundedJSONField}}
    fieldsets = [
        (None, {"fields": ["name", "priority", "enabled"]}),
        ("Which calls", {"fields": ["to_pattern", "from_pattern"]}),
        ("How the cards name them", {"fields": ["label", "metadata"]}),
        ("Session config to accept with", {"fields": ["model", "instructions", "voice", "mcp_servers"]}),
    ]


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Call)
class CallAdmin(ReadOnlyAdmin):
    list_display = [
        "call_id",
        "kind",
        "status",
        "from_number",
        "to_number",
        "route",
        "created_at",
        "outcome",
        "leased_by",
    ]
    list_filter = ["kind", "status"]
    search_fields = ["call_id", "from_number", "to_number"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["webhook_id", "event_type", "event_id", "received_at"]
    search_fields = ["webhook_id", "event_id"]


@admin.register(ResponsesRun)
class ResponsesRunAdmin(ReadOnlyAdmin):
    list_display = ["pk", "state", "model", "attempts", "created_at", "finished_at"]
    list_filter = ["state"]
