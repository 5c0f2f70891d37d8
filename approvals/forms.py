from __future__ import annotations

from django import forms

from approvals.services import MAX_REASON_LENGTH


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("deny", "Deny")])
    reason = forms.CharField(
        required=False,
        max_length=MAX_REASON_LENGTH,
        error_messages={"max_length": f"Keep the reason under {MAX_REASON_LENGTH} characters."},
    )

    @property
    def approve(self) -> bool:
        return self.cleaned_data["decision"] == "approve"
