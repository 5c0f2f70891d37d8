"""The policy's admin pages: rules (with their escalation steps), the dry run of a draft, and
the published versions. Every save or delete of a rule publishes a new policy version through
services.publish_policy, in the same transaction (docs/policies.md)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from approvals import policy, services
from approvals.admin.policy_forms import (
    GRANT_FIELDS,
    REQUIREMENT_FIELDS,
    DryRunForm,
    EscalationStepInline,
    PolicyRefused,
    PolicyRuleForm,
    _consume_messages,
    _rule_summary,
)
from approvals.admin.records import ReadOnlyAdmin
from approvals.models import PolicyRule, PolicyVersion


class RuleRowForm(forms.ModelForm):
    """A row of the rule list's editable columns (position, enabled)."""


@admin.register(PolicyRule)
class PolicyRuleAdmin(admin.ModelAdmin):
    form = PolicyRuleForm
    inlines = [EscalationStepInline]
    list_display = [
        "position",
        "label",
        "enabled",
        "server",
        "tool_pattern",
        "condition_text",
        "outcome",
        "summary",
    ]
    list_display_links = ["label"]
    list_editable = ["position", "enabled"]
    list_filter = ["enabled", "outcome"]
    search_fields = ["label", "description", "server_label", "tool_pattern", "condition", "reason"]
    ordering = ["position", "pk"]
    formfield_overrides = {models.ManyToManyField: {"widget": forms.CheckboxSelectMultiple}}
    fieldsets = [
        (None, {"fields": ["position", "label", "description", "enabled"]}),
        ("Which calls", {"fields": ["server_label", "tool_pattern", "condition"]}),
        ("What happens", {"fields": ["outcome", "reason"]}),
        (
            "Ask: the first step",
            {
                "fields": ["groups", "quorum", "deadline_seconds", "on_deadline", "escalate_when_nobody_online"],
                "description": "For outcome ask only. To escalate, set the deadline to escalate and add the next "
                "step(s) below.",
            },
        ),
        (
            "Ask: what a decision needs",
            {
                "fields": REQUIREMENT_FIELDS,
                "description": "For outcome ask only; at every step. A person who decides must give these: the "
                "dashboard asks for them and Countersign refuses a decision without them (push and Slack cannot "
                "give them, so such requests are decided on the dashboard).",
            },
        ),
        (
            "Ask: what an approval may grant",
            {
                "fields": GRANT_FIELDS,
                "description": "For outcome ask only. Beyond the one call, a person who approves may let the tool "
                "run again without asking for the rest of the session (session) or for the same guest or room for "
                "at most the minutes below (guest). Approve with changes is always possible.",
            },
        ),
        (
            "Ask: while the guest waits",
            {
                "fields": ["holding_line"],
                "description": "For outcome ask only. In a voice session the assistant tells the guest that staff "
                "is checking and about how long it usually takes; the client token can turn it off as well.",
            },
        ),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PolicyRule]:
        return super().get_queryset(request).prefetch_related("groups", "escalations__groups")

    @admin.display(description="Server", ordering="server_label")
    def server(self, obj: PolicyRule) -> str:
        return obj.server_label or "any"

    @admin.display(description="Condition")
    def condition_text(self, obj: PolicyRule) -> str:
        if not obj.condition:
            return "—"
        text = obj.condition if len(obj.condition) <= 80 else obj.condition[:79] + "…"
        return format_html("<code>{}</code>", text)

    @admin.display(description="In plain words")
    def summary(self, obj: PolicyRule) -> str:
        return _rule_summary(obj)

    # Publishing ---------------------------------------------------------------------------

    def _publish(self, request: HttpRequest, source: str) -> None:
        try:
            version = services.publish_policy(by=request.user, source=source)  # type: ignore[arg-type]
        except policy.PolicyError as exc:
            raise PolicyRefused(exc.errors) from None
        if version is None:
            self.message_user(request, "The policy did not change: no new version.", messages.INFO)
            return
        self.message_user(
            request,
            format_html(
                'Published <a href="{}">policy version {}</a>: {} change(s).',
                reverse("admin:approvals_policyversion_change", args=[version.pk]),
                version.number,
                len(version.changes),
            ),
            messages.SUCCESS,
        )

    def _refused(self, request: HttpRequest, exc: PolicyRefused) -> None:
        _consume_messages(request)
        self.message_user(request, "Nothing was saved: the policy as a whole would not be valid.", messages.ERROR)
        for error in exc.errors:
            self.message_user(request, error, messages.ERROR)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # After the inlines and the groups are in: the version is made from the saved rows.
        super().save_related(request, form, formsets, change)
        if isinstance(form, RuleRowForm):
            return  # a row of the list: the rows one POST saves make one version (changelist_view)
        self._publish(request, f"admin: {'changed' if change else 'added'} rule {form.instance.label}")

    def delete_model(self, request: HttpRequest, obj: PolicyRule) -> None:
        super().delete_model(request, obj)
        self._publish(request, f"admin: deleted rule {obj.label}")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[PolicyRule]) -> None:
        labels = sorted(queryset.values_list("label", flat=True))
        super().delete_queryset(request, queryset)
        self._publish(request, f"admin: deleted rules {', '.join(labels)}")

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        try:
            # The admin runs a POST in a transaction; PolicyRefused leaving it rolls the save back.
            return super().changeform_view(request, object_id, form_url, extra_context)
        except PolicyRefused as exc:
            self._refused(request, exc)
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except PolicyRefused as exc:
            self._refused(request, exc)
            return HttpResponseRedirect(reverse("admin:approvals_policyrule_change", args=[object_id]))

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        extra_context = {**self._changelist_context(request), **(extra_context or {})}
        if request.method != "POST":
            return super().changelist_view(request, extra_context)
        # A POST saves the editable columns of several rows, or runs an action (delete). The rows
        # and the one version they make are one transaction: a refused version undoes all of it.
        try:
            with transaction.atomic():
                before = self._editable_columns()
                response = super().changelist_view(request, extra_context)
                after = self._editable_columns()
                # The rows whose columns this POST changed (those the list saved), in list order.
                batch = [after[pk][0] for pk in before if pk in after and after[pk] != before[pk]]
                if batch:
                    self._publish(request, f"admin: rule list ({', '.join(batch)})")
        except PolicyRefused as exc:
            self._refused(request, exc)
            return HttpResponseRedirect(request.get_full_path())
        return response

    def _editable_columns(self) -> dict[int, tuple[Any, ...]]:
        """Per rule (in list order): its label, then the columns the list edits."""
        rows = PolicyRule.objects.order_by(*self.ordering).values_list("pk", "label", *self.list_editable)
        return {pk: tuple(rest) for pk, *rest in rows}

    def get_changelist_form(self, request: HttpRequest, **kwargs: Any) -> type[forms.ModelForm]:
        return super().get_changelist_form(request, **{"form": RuleRowForm, **kwargs})

    def get_form(
        self, request: HttpRequest, obj: PolicyRule | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        form = super().get_form(request, obj, change, **kwargs)
        # The rule's form checks its escalation chain with the steps of this very page: the
        # inline's formset class for this request and object (None without the inline).
        steps = next(
            (
                formset
                for formset, inline in self.get_formsets_with_inlines(request, *([obj] if obj else []))
                if isinstance(inline, EscalationStepInline)
            ),
            None,
        )
        return type(form.__name__, (form,), {"steps_formset": steps})

    def _changelist_context(self, request: HttpRequest) -> dict[str, Any]:
        rules = [r for r in policy.rules_from_rows() if r.enabled]
        last = rules[-1] if rules else None
        if last is not None and not last.server and last.tool == "*" and not last.when:
            default = f"never reached: rule {last.label} matches every call."
        else:
            default = (
                f"ask any staff member within {settings.APPROVAL_TIMEOUT_SECONDS} s (APPROVAL_TIMEOUT_SECONDS), "
                "then deny."
            )
        latest = PolicyVersion.objects.order_by("-number").first()
        return {
            "policy_default": default,
            "policy_version": latest,
            "dry_run_url": reverse("admin:approvals_policyrule_dry_run") if self.has_change_permission(request) else "",
        }

    # Dry run ------------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        return [
            path("dry-run/", self.admin_site.admin_view(self.dry_run_view), name="approvals_policyrule_dry_run"),
            *super().get_urls(),
        ]

    def dry_run_view(self, request: HttpRequest) -> HttpResponse:
        """Replay a draft of the whole policy (YAML) on the requests of the last N days, and
        apply it (services.import_policies: all or nothing) when it looks right."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        latest = PolicyVersion.objects.order_by("-number").values_list("number", flat=True).first()
        errors: list[str] = []
        report = None
        if request.method == "POST":
            form = DryRunForm(request.POST)
            if form.is_valid():
                draft = form.cleaned_data["draft"]
                if "_apply" in request.POST:
                    response = self._apply_draft(request, form, draft, latest, errors)
                    if response is not None:
                        return response
                else:
                    try:
                        report = policy.dry_run_yaml(draft, days=form.cleaned_data["days"])
                    except policy.PolicyError as exc:
                        errors = exc.errors
        else:
            form = DryRunForm(initial={"draft": policy.dump_yaml(policy.current_document()), "base_version": latest})
        # Unbound (the first visit), the box is ticked: what changes is what needs reading.
        only_changed = form.cleaned_data["only_changed"] if form.is_bound and form.is_valid() else True
        rows = []
        if report is not None:
            rows = report.changed if only_changed else report.rows
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Dry run of a policy draft",
            "form": form,
            "errors": errors,
            "report": report,
            "rows": rows,
            "replayed": len(report.rows) if report is not None else 0,
            "changed_count": len(report.changed) if report is not None else 0,
            "only_changed": only_changed,
            "latest_version": latest,
            "may_apply": self._may_apply(request),
        }
        return TemplateResponse(request, "admin/approvals/policyrule/dry_run.html", context)

    def _may_apply(self, request: HttpRequest) -> bool:
        # Applying replaces every rule: adding, changing and deleting rows.
        return (
            self.has_change_permission(request)
            and self.has_add_permission(request)
            and self.has_delete_permission(request)
        )

    def _apply_draft(
        self, request: HttpRequest, form: DryRunForm, draft: str, latest: int | None, errors: list[str]
    ) -> HttpResponse | None:
        if not self._may_apply(request):
            raise PermissionDenied
        base = form.cleaned_data.get("base_version")
        if base is not None and base != latest:
            # The draft replaces the whole policy: applying it as is would undo the change made
            # since it was loaded. Say so once; the form now carries the new base, so a second
            # click applies it knowingly.
            errors.append(
                f"The policy changed since this draft was loaded (it started from version {base}, the current one "
                f"is version {latest}): applying it replaces that change too. Apply again to do so anyway, or "
                "reload the page to start from the current policy."
            )
            data = request.POST.copy()
            data["base_version"] = str(latest) if latest is not None else ""
            form.data = data
            return None
        try:
            version = services.import_policies(draft, by=request.user, source="admin dry run")  # type: ignore[arg-type]
        except policy.PolicyError as exc:
            errors.extend(exc.errors)
            return None
        if version is None:
            self.message_user(request, "The draft is the current policy: nothing changed.", messages.INFO)
        else:
            self.message_user(
                request,
                format_html(
                    'Applied the draft as <a href="{}">policy version {}</a>: {} change(s).',
                    reverse("admin:approvals_policyversion_change", args=[version.pk]),
                    version.number,
                    len(version.changes),
                ),
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse("admin:approvals_policyrule_changelist"))


@admin.register(PolicyVersion)
class PolicyVersionAdmin(ReadOnlyAdmin):
    """Every published policy: who, when, from where, what changed, and the whole document."""

    list_display = ["number", "created_at", "by", "source", "change_count"]
    search_fields = ["source", "created_by_label"]
    date_hierarchy = "created_at"
    fields = readonly_fields = ("number", "created_at", "by", "source", "changes_text", "document_yaml")

    @admin.display(description="By", ordering="created_by_label")
    def by(self, obj: PolicyVersion) -> str:
        return obj.created_by_label or "—"

    @admin.display(description="Changes")
    def change_count(self, obj: PolicyVersion) -> int:
        return len(obj.changes or [])

    @admin.display(description="What changed")
    def changes_text(self, obj: PolicyVersion) -> str:
        # One change per line; long ones (an added rule is its whole JSON) wrap instead of scrolling.
        text = "\n".join(obj.changes or []) or "(no change: the first version)"
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)

    @admin.display(description="The policy (YAML, as export_policies writes it)")
    def document_yaml(self, obj: PolicyVersion) -> str:
        return format_html('<pre class="policy-code">{}</pre>', policy.dump_yaml(obj.document))
