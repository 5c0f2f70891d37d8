from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from notify.models import EmailSent, NotificationPreference, PushSubscription, SlackChannel, SlackLink, SlackMessage


@admin.register(SlackChannel)
class SlackChannelAdmin(admin.ModelAdmin):
    list_display = ("group", "channel_id")


@admin.register(SlackLink)
class SlackLinkAdmin(admin.ModelAdmin):
    list_display = ("user", "slack_user_id", "how", "linked_at")
    search_fields = ("user__username", "user__email", "slack_user_id")


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    list_display = ("user", "push", "email", "slack")


@admin.register(PushSubscription)
class PushSubscriptionAdmin(admin.ModelAdmin):
    # Browsers subscribe themselves; the admin only sees and removes them.
    list_display = ("user", "user_agent", "created_at", "last_success_at", "last_failure_at")
    readonly_fields = ("user", "endpoint", "p256dh", "auth", "user_agent", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(SlackMessage)
class SlackMessageAdmin(admin.ModelAdmin):
    list_display = ("request", "channel", "ts", "shown", "posted_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(EmailSent)
class EmailSentAdmin(admin.ModelAdmin):
    list_display = ("request", "stage", "kind", "recipients", "sent_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
