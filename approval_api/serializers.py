from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from rest_framework import serializers

from approval_api.models import WebhookEndpoint

MAX_ARGUMENTS_BYTES = 64 * 1024
LABEL = r"^[A-Za-z0-9_.\-]{1,64}$"
TOOL = r"^[A-Za-z0-9_.\-/]{1,128}$"
PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
WEBHOOK_URL = r"^https?://[A-Za-z0-9._~\-]+(:" + PORT + r")?([/?#][\x21-\x7e]*)?$"


class StrictText:
    """A text field that takes only JSON strings: DRF's CharField would turn 12 into "12", which
    the schema (type: string) does not allow, so the API refuses it like any other wrong type."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            raise serializers.ValidationError("Must be a string.", code="not_a_string")
        return super().to_internal_value(data)  # type: ignore[misc]


class Text(StrictText, serializers.CharField):
    pass


class Pattern(StrictText, serializers.RegexField):
    pass


class Email(StrictText, serializers.EmailField):
    pass


class Url(StrictText, serializers.URLField):
    pass


class SessionIn(serializers.Serializer[Any]):
    id = Text(
        max_length=200,
        required=False,
        allow_blank=True,
        help_text="The caller's own id of the session or conversation.",
    )
    # A field named `label` shadows Field.label for the type checker only (DRF's metaclass takes it).
    label = Text(  # type: ignore[assignment]
        max_length=100, required=False, allow_blank=True, help_text="Shown on the card."
    )
    metadata = serializers.DictField(
        child=Text(max_length=200, allow_blank=True),
        required=False,
        help_text='Shown on the card, e.g. {"room": "1204"}.',
    )


class RequesterIn(serializers.Serializer[Any]):
    id = Text(max_length=200, required=False, allow_blank=True)
    name = Text(max_length=150, required=False, allow_blank=True)
    email = Email(required=False, allow_blank=True)


class RequestIn(serializers.Serializer[Any]):
    server = Pattern(LABEL, help_text="The MCP server's label (as registered, or the caller's own).")
    tool = Pattern(TOOL, help_text="The tool's name.")
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
    # An absolute http(s) URL with a host, as the schema says (a pattern): single-label hosts of
    # the hotel's own network (http://gateway:8080/hooks) included, which Django's URLValidator
    # would refuse.
    url = Pattern(WEBHOOK_URL, max_length=500, help_text="Where to POST the signed deliveries: http(s) only.")
    description = Text(max_length=200, required=False, allow_blank=True)

    def validate_url(self, value: str) -> str:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError:
            raise serializers.ValidationError("Not a valid URL.") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise serializers.ValidationError("Only http(s) URLs with a host.")
        return value


class WebhookOut(serializers.ModelSerializer[WebhookEndpoint]):
    url = serializers.CharField(help_text="As registered (an http(s) URL).")

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "description", "created_at"]


class WebhookCreated(WebhookOut):
    secret = serializers.CharField(help_text="`whsec_...`: verifies the signatures. Shown only this once.")

    class Meta(WebhookOut.Meta):
        fields = [*WebhookOut.Meta.fields, "secret"]


class Error(serializers.Serializer[Any]):
    detail = serializers.CharField()
    # Named as the API answers it; DRF's metaclass takes it, so Serializer.errors is untouched.
    errors = serializers.JSONField(  # type: ignore[assignment]
        required=False, help_text="On invalid input only: what is wrong, field by field (nested as the input is)."
    )
