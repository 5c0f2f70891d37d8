from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from approval_api.models import WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "client_token", "description", "created_at", "disabled_at"]
    list_filter = [("disabled_at", admin.EmptyFieldListFilter)]
    search_fields = ["url", "description", "client_token__label"]
    # The secret is never shown again (only its holder may verify signatures).
    fields = ["client_token", "url", "description", "created_at", "disabled_at"]
    readonly_fields = ["client_token", "url", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # subscriptions are made over the API, which returns the secret once

    def has_delete_permission(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> bool:
        return False  # its deliveries name it: disable it instead


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["message_id", "event_type", "endpoint", "request", "status", "attempts", "last_status_code"]
    list_filter = ["status", "event_type"]
    search_fields = ["message_id", "endpoint__url"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WebhookDelivery | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: WebhookDelivery | None = None) -> bool:
        return False
