from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput
from django.utils.translation import gettext_lazy as _

from approvals.services import MAX_INTERNAL_NOTE_LENGTH, MAX_REASON_LENGTH, MAX_STOP_REASON_LENGTH

# A browser's PublicKeyCredential as JSON is a few hundred bytes to a few kilobytes.
MAX_ASSERTION_LENGTH = 16_000
# Edited arguments: a tool call's arguments are small JSON objects.
MAX_ARGUMENTS_LENGTH = 20_000


class StopForm(forms.Form):
    """Why a staff member stops a session (approvals/stop_views.py): kept in the audit only."""

    reason = forms.CharField(
        max_length=MAX_STOP_REASON_LENGTH,
        error_messages={
            "required": _("Say why the session is stopped: the audit keeps it."),
            "max_length": _("Keep the reason under %(limit_value)s characters."),
        },
    )


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
    # Beyond yes and no (services/grants.py): approve with changed arguments (JSON), or grant
    # the tool for the session or the guest (minutes), optionally bound to some arguments.
    arguments = forms.CharField(required=False, max_length=MAX_ARGUMENTS_LENGTH)
    scope = forms.ChoiceField(
        required=False, choices=[("call", "This call"), ("session", "This session"), ("guest", "This guest")]
    )
    minutes = forms.IntegerField(required=False, min_value=1)
    constraints = forms.CharField(required=False, max_length=MAX_ARGUMENTS_LENGTH)

    def clean_constraints(self) -> dict[str, Any]:
        text = self.cleaned_data.get("constraints") or ""
        if not text.strip():
            return {}
        try:
            value = json.loads(text)
        except ValueError:
            raise forms.ValidationError(_("The argument constraints are not valid JSON.")) from None
        if not isinstance(value, dict):
            raise forms.ValidationError(_("The argument constraints must be a JSON object."))
        return value

    @property
    def approve(self) -> bool:
        return self.cleaned_data["decision"] == "approve"

    @property
    def guest_note_text(self) -> str:
        return str(self.cleaned_data.get("guest_note") or self.cleaned_data.get("reason") or "")


class ApproveAllForm(forms.Form):
    """Approve all the requests of one turn that the person saw (their ids, comma-separated)."""

    ids = forms.RegexField(regex=r"^\d+(,\d+){0,49}$", error_messages={"invalid": _("Name the requests to approve.")})
    confirmed = forms.BooleanField(
        required=True, error_messages={"required": _("Confirm that you approve all of these requests.")}
    )
    guest_note = forms.CharField(required=False, max_length=MAX_REASON_LENGTH)

    @property
    def request_ids(self) -> list[int]:
        return list(dict.fromkeys(int(pk) for pk in self.cleaned_data["ids"].split(",")))
