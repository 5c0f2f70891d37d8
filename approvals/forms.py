from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from approvals.services import MAX_INTERNAL_NOTE_LENGTH, MAX_REASON_LENGTH, MAX_STOP_REASON_LENGTH

# A browser's PublicKeyCredential as JSON is a few hundred bytes to a few kilobytes.
MAX_ASSERTION_LENGTH = 16_000


class StopForm(forms.Form):
    """Why a staff member stops a session (approvals/stop_views.py): kept in the audit only."""

    reason = forms.CharField(
        max_length=MAX_STOP_REASON_LENGTH,
        error_messages={
            "required": _("Say why the session is stopped: the audit keeps it."),
            "max_length": _("Keep the reason under %(limit_value)s characters."),
        },
    )


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
