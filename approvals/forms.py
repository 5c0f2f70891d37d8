from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput
from django.utils.translation import gettext_lazy as _

from approvals.services import MAX_INTERNAL_NOTE_LENGTH, MAX_REASON_LENGTH

# A browser's PublicKeyCredential as JSON is a few hundred bytes to a few kilobytes.
MAX_ASSERTION_LENGTH = 16_000


class BoundedJSONField(forms.JSONField):
    """Django's JSON form field, but JSON nested deeper than Python's parser can go (a few
    thousand `[`) is invalid input like any other, not a RecursionError and a 500 (both when
    it is checked and when the form is shown again with it)."""

    def to_python(self, value: Any) -> Any:
        try:
            return super().to_python(value)
        except RecursionError:
            raise ValidationError(self.error_messages["invalid"], code="invalid", params={"value": value}) from None

    def bound_data(self, data: Any, initial: Any) -> Any:
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return InvalidJSONInput(data)


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("deny", "Deny")])
    # The note to the guest (the reason the assistant may read out). `reason` is its older
    # name, still accepted: guest_note wins when both are sent.
    guest_note = forms.CharField(
        required=False,
        max_length=MAX_REASON_LENGTH,
        error_messages={"max_length": _("Keep the note to the guest under %(limit_value)s characters.")},
    )
    reason = forms.CharField(
        required=False,
        max_length=MAX_REASON_LENGTH,
        error_messages={"max_length": f"Keep the reason under {MAX_REASON_LENGTH} characters."},
    )
    internal_note = forms.CharField(
        required=False,
        max_length=MAX_INTERNAL_NOTE_LENGTH,
        error_messages={"max_length": _("Keep the internal note under %(limit_value)s characters.")},
    )
    confirmed = forms.BooleanField(required=False)
    step_up = forms.CharField(required=False, max_length=MAX_ASSERTION_LENGTH, strip=False)

    @property
    def approve(self) -> bool:
        return self.cleaned_data["decision"] == "approve"

    @property
    def guest_note_text(self) -> str:
        return str(self.cleaned_data.get("guest_note") or self.cleaned_data.get("reason") or "")
