from __future__ import annotations

import json
from typing import Any

from rest_framework import serializers

from approval_api.models import WebhookEndpoint

MAX_ARGUMENTS_BYTES = 64 * 1024
LABEL = r"^[A-Za-z0-9_.\-]{1,64}$"
TOOL = r"^[A-Za-z0-9_.\-/]{1,128}$"


class SessionIn(serializers.Serializer[Any]):
    id = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        help_text="The caller's own id of the session or conversation.",
    )
    # A field named `label` shadows Field.label for the type checker only (DRF's metaclass takes it).
    label = serializers.CharField(  # type: ignore[assignment]
        max_length=100, required=False, allow_blank=True, help_text="Shown on the card."
    )
    metadata = serializers.DictField(
        child=serializers.CharField(max_length=200),
        required=False,
        help_text='Shown on the card, e.g. {"room": "1204"}.',
    )


class RequesterIn(serializers.Serializer[Any]):
    id = serializers.CharField(max_length=200, required=False, allow_blank=True)
    name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    email = serializers.EmailField(required=False, allow_blank=True)


class RequestIn(serializers.Serializer[Any]):
    server = serializers.RegexField(LABEL, help_text="The MCP server's label (as registered, or the caller's own).")
    tool = serializers.RegexField(TOOL, help_text="The tool's name.")
    arguments = serializers.DictField(help_text="The call's arguments, exactly as they would run.")
    session = SessionIn(required=False)
    requester = RequesterIn(required=False)

    def validate_arguments(self, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, ensure_ascii=False).encode()) > MAX_ARGUMENTS_BYTES:
            raise serializers.ValidationError(f"The arguments are over {MAX_ARGUMENTS_BYTES // 1024} KiB.")
        return value


class SessionOut(serializers.Serializer[Any]):
    id = serializers.CharField(allow_null=True)
    label = serializers.CharField()  # type: ignore[assignment]
    status = serializers.ChoiceField(choices=["open", "closed"])


class RequestOut(serializers.Serializer[Any]):
    """A request as the API shows it (approval_api.requests.to_api)."""

    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["pending", "approved", "denied", "expired", "cancelled"])
    final = serializers.BooleanField(help_text="Whether the answer is given (it never changes after).")
    approved = serializers.BooleanField(allow_null=True, help_text="The answer; null while pending or if cancelled.")
    reason = serializers.CharField(allow_blank=True, help_text="The reason staff (or the policy) gave.")
    server = serializers.CharField()
    tool = serializers.CharField()
    arguments = serializers.JSONField()
    session = SessionOut()
    requester = serializers.DictField()
    rule = serializers.CharField(allow_blank=True, help_text="The policy rule that routed it.")
    created_at = serializers.DateTimeField()
    deadline = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)
    decided_by = serializers.CharField(allow_null=True)


class WebhookIn(serializers.Serializer[Any]):
    url = serializers.URLField(max_length=500)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)

    def validate_url(self, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise serializers.ValidationError("Only http(s) URLs.")
        return value


class WebhookOut(serializers.ModelSerializer[WebhookEndpoint]):
    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "description", "created_at"]


class WebhookCreated(WebhookOut):
    secret = serializers.CharField(help_text="`whsec_...`: verifies the signatures. Shown only this once.")

    class Meta(WebhookOut.Meta):
        fields = [*WebhookOut.Meta.fields, "secret"]


class Error(serializers.Serializer[Any]):
    detail = serializers.CharField()
