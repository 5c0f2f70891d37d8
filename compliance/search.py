"""The review search: one form that turns query-string parameters into an ApprovalRequest
queryset, shared by the results page, the CSV export, the bundle export and the bench."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import DurationField, Exists, ExpressionWrapper, F, OuterRef, Q, QuerySet
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from approvals.models import ApprovalRequest, RealtimeSession

# Decisions made by a person faster than this are flagged as possible rubber-stamping.
RUBBER_STAMP_SECONDS = 2

SORTS = {
    "-created_at": _("Newest first"),
    "created_at": _("Oldest first"),
    "-decided_at": _("Latest decision"),
    "decision_time": _("Fastest decision"),
    "-decision_time": _("Slowest decision"),
    "tool_name": _("Tool"),
    "server_label": _("Server"),
    "status": _("Decision"),
    "session__label": _("Session"),
}

OUTCOMES = [
    ("", _("any")),
    ("ok", _("ran, returned output")),
    ("error", _("ran, returned an error")),
    ("none", _("nothing recorded")),
]


def decision_time() -> ExpressionWrapper:
    return ExpressionWrapper(F("decided_at") - F("created_at"), output_field=DurationField())


class DisplayNameChoiceField(forms.ModelChoiceField):
    """People by their display name (full name, else username), as everywhere on the screens."""

    def label_from_instance(self, obj: Any) -> str:
        return obj.get_full_name() or obj.get_username()


class SearchForm(forms.Form):
    start = forms.DateTimeField(
        required=False, label=_("From"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    end = forms.DateTimeField(
        required=False, label=_("To"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    session = forms.CharField(required=False, label=_("Session label"), max_length=100)
    meta = forms.CharField(
        required=False, label=_("Session metadata"), max_length=200, help_text=_("key=value, e.g. room=1204")
    )
    server = forms.CharField(required=False, max_length=64, label=_("Server"))
    tool = forms.CharField(required=False, max_length=128, label=_("Tool"))
    decision = forms.ChoiceField(
        required=False,
        label=_("Decision"),
        choices=[("", _("any")), *((v, _(label)) for v, label in ApprovalRequest.Status.choices)],
    )
    decided_by = DisplayNameChoiceField(required=False, queryset=get_user_model().objects.none(), label=_("Decided by"))
    rule = forms.CharField(required=False, max_length=100, label=_("Rule"), help_text=_("The policy rule that applied"))
    outcome = forms.ChoiceField(required=False, choices=OUTCOMES, label=_("Tool call"))
    text = forms.CharField(required=False, max_length=200, label=_("Text in the arguments"))
    fast = forms.BooleanField(
        required=False, label=format_lazy(_("Decided by a person in under {seconds} s"), seconds=RUBBER_STAMP_SECONDS)
    )
    sort = forms.ChoiceField(required=False, choices=list(SORTS.items()), label=_("Sort"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Anyone who ever decided, plus current staff: a person who left still appears.
        user_model = get_user_model()
        # Two cheap queries, not one with `is_staff OR EXISTS(...)`: under an OR, PostgreSQL runs
        # the EXISTS as a hashed subplan over every request on each page view; alone, it probes
        # the decided_by index once per (non-staff) user.
        decided = Exists(ApprovalRequest.objects.filter(decided_by=OuterRef("pk")))
        ids = list(user_model.objects.filter(is_staff=True).values_list("pk", flat=True))
        ids += user_model.objects.filter(is_staff=False).filter(decided).values_list("pk", flat=True)
        self.fields["decided_by"].queryset = user_model.objects.filter(pk__in=ids).order_by(  # type: ignore[attr-defined]
            "username"
        )

    def clean_meta(self) -> tuple[str, str] | None:
        raw = self.cleaned_data["meta"].strip()
        if not raw:
            return None
        key, sep, value = raw.partition("=")
        if not sep or not key.strip().isidentifier():
            raise forms.ValidationError(_("Write key=value, e.g. room=1204."))
        return key.strip(), value.strip()

    def queryset(self) -> QuerySet[ApprovalRequest]:
        """The matching requests, sorted. An invalid form matches nothing rather than everything."""
        qs = ApprovalRequest.objects.select_related("session", "decided_by")
        if not self.is_valid():
            return qs.none()
        d = self.cleaned_data
        if d["start"]:
            qs = qs.filter(created_at__gte=d["start"])
        if d["end"]:
            qs = qs.filter(created_at__lt=d["end"])
        if d["session"]:
            qs = qs.filter(session__label__icontains=d["session"])
        if d["meta"]:
            key, value = d["meta"]
            # The few matching sessions first, then their requests through the session index,
            # rather than walking every request newest-first and joining each one's session.
            if connection.vendor == "postgresql":
                # Containment (@>) is what the GIN index on metadata serves (migration 0003).
                sessions = RealtimeSession.objects.filter(metadata__contains={key: value}).values("pk")
            else:  # SQLite has no JSON containment lookup
                sessions = RealtimeSession.objects.filter(**{f"metadata__{key}": value}).values("pk")
            qs = qs.filter(session_id__in=sessions)
        if d["server"]:
            qs = qs.filter(server_label=d["server"])
        if d["tool"]:
            qs = qs.filter(tool_name=d["tool"])
        if d["decision"]:
            qs = qs.filter(status=d["decision"])
        if d["decided_by"]:
            qs = qs.filter(decided_by=d["decided_by"])
        if d["rule"]:
            qs = qs.filter(rule_label=d["rule"])
        if d["outcome"] == "ok":
            qs = qs.filter(call_recorded_at__isnull=False, call_error__isnull=True)
        elif d["outcome"] == "error":
            qs = qs.filter(call_recorded_at__isnull=False, call_error__isnull=False)
        elif d["outcome"] == "none":
            qs = qs.filter(call_recorded_at__isnull=True)
        if d["text"]:
            qs = qs.filter(arguments__icontains=d["text"])
        sort = d["sort"] or "-created_at"
        if d["fast"] or "decision_time" in sort:
            qs = qs.annotate(decision_time=decision_time())
        if d["fast"]:
            # A Q: the annotation is on `qs` by now, which its declared type cannot say.
            qs = qs.filter(Q(decision_time__lt=timedelta(seconds=RUBBER_STAMP_SECONDS)), decided_by__isnull=False)
        tiebreak = "pk" if sort.lstrip("-") == sort and sort == "created_at" else "-pk"
        return qs.order_by(sort, tiebreak)

    def query(self) -> dict[str, str]:
        """The non-empty parameters, as an export records them and links repeat them."""
        return {k: v for k, v in self.data.items() if k in self.fields and v not in ("", None)}
