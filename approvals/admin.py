"""The policy admin's pages. Secrets are write-only here: a client token's hash never shows, and
an MCP server's authorization and header values are masked in lists and never put back into a
form (a blank field keeps the stored value). Approval records are read-only: their state only
changes through approvals/services.py. Every save or delete of a policy rule publishes a new
policy version through services.publish_policy, in the same transaction (docs/policies.md)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from approvals import policy, services
from approvals.models import (
    ApprovalRequest,
    AuditEvent,
    ClientToken,
    DeadlineAction,
    EscalationStep,
    McpServer,
    McpTool,
    PolicyRule,
    PolicyVersion,
    RealtimeSession,
)

MASK = "••••••••"
# RFC 9110 field-name characters.
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


def mask_headers(headers: dict[str, Any]) -> str:
    return "\n".join(f"{name}: {MASK}" for name in headers)


class McpServerForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    authorization = forms.CharField(
        required=False,
        strip=True,
        # render_value=False: the stored value never travels back to the browser.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Sent as 'Authorization: Bearer …'. Write-only: leave blank to keep the current value.",
    )
    clear_authorization = forms.BooleanField(required=False, label="Remove the authorization")
    headers = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60, "spellcheck": "false"}),
        help_text=f"One 'Name: value' per line. Values are write-only: a line showing {MASK} keeps its "
        "current value; delete a line to remove that header.",
    )

    class Meta:
        model = McpServer
        fields = [
            "label",
            "url",
            "transport",
            "require_approval",
            "description",
            "enabled",
            "authorization",
            "clear_authorization",
            "headers",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The names are shown, the values never: the initial text is masked.
        self.initial["headers"] = mask_headers(self.instance.headers or {})
        self.initial["authorization"] = ""
        if self.instance.pk and self.instance.authorization:
            self.fields[
                "authorization"
            ].help_text = f"Currently set ({MASK}). Type a new value to replace it, or leave blank to keep it."

    def clean_headers(self) -> dict[str, str]:
        old = dict(self.instance.headers or {})
        headers: dict[str, str] = {}
        for number, line in enumerate(self.cleaned_data["headers"].splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, value = line.partition(":")
            name, value = name.strip(), value.strip()
            if not sep or not HEADER_NAME.match(name):
                raise forms.ValidationError(f"Line {number}: write 'Name: value' with a valid header name.")
            if value == MASK:
                if name not in old:
                    raise forms.ValidationError(f"Line {number}: type a value for the new header {name}.")
                value = old[name]
            headers[name] = value
        return headers

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("clear_authorization"):
            cleaned["authorization"] = ""
        elif not cleaned.get("authorization"):
            # Blank means "keep": the field is write-only, so blank is all an edit form shows.
            cleaned["authorization"] = self.instance.authorization
        return cleaned


@admin.register(McpServer)
class McpServerAdmin(admin.ModelAdmin):
    form = McpServerForm
    list_display = [
        "label",
        "url",
        "transport",
        "require_approval",
        "enabled",
        "authorization_set",
        "header_names",
        "probe_ok",
        "probed_at",
    ]
    list_filter = ["enabled", "require_approval"]
    search_fields = ["label", "url", "description"]
    # The tools are a read-only field, not an inline: an inline would add a formset that every
    # save of the server form (and its existing tests) would have to carry.
    readonly_fields = ["probed_at", "probe_ok", "probe_report_text", "tool_list", "compiled_entry"]
    actions = ["test_connection"]

    @admin.display(description="What OpenAI receives")
    def compiled_entry(self, obj: McpServer) -> str:
        if obj.pk is None:
            return "—"
        # masked(): the entry holds the credentials; the page shows where they go, never what they are.
        entry = policy.masked(policy.compile_entry(obj, policy.current(), obj.tools.all()))
        note = "" if obj.enabled else " This server is disabled: sessions do not receive it at all."
        return format_html(
            "<pre>{}</pre><p>The <code>mcp</code> tool entry with the policy rules compiled in, "
            "secrets masked. Tools in <code>require_approval.never</code> run without a round trip (the rules "
            "allow every call of theirs); tools missing from <code>allowed_tools</code> are always denied "
            "(the rules deny every call of theirs); every other tool asks, and the policy decides each call. "
            "Only tools the registry knows from a probe can be named here.{}</p>",
            json.dumps(entry, indent=2, ensure_ascii=False),
            note,
        )

    @admin.display(description="Last probe report")
    def probe_report_text(self, obj: McpServer) -> str:
        # The report holds causes and tool names only (approvals/probe.py), never a credential.
        return format_html("<pre>{}</pre>", obj.probe_report) if obj.probe_report else "—"

    @admin.display(description="Tools (last probe)")
    def tool_list(self, obj: McpServer) -> str:
        tools = list(obj.tools.order_by("name")) if obj.pk else []
        if not tools:
            return "—"
        rows = format_html_join(
            "",
            '<li><a href="{}">{}</a>{}</li>',
            (
                (
                    reverse("admin:approvals_mcptool_change", args=[t.pk]),
                    t.name,
                    " — changed, needs review" if t.needs_review else " — no longer listed" if t.removed_at else "",
                )
                for t in tools
            ),
        )
        return format_html("<ul>{}</ul>", rows)

    @admin.action(description="Test connection (list the tools as OpenAI would)", permissions=["change"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet[McpServer]) -> None:
        for server in queryset:
            result = services.probe_mcp_server(server, by=request.user)  # type: ignore[arg-type]
            level = messages.SUCCESS if result.ok else messages.ERROR
            # One message per line keeps the report readable in the admin's message list.
            for line in result.report().splitlines():
                self.message_user(request, f"{server.label}: {line}", level)
            drifted = server.tools.drifted().count()
            if drifted:
                self.message_user(
                    request, f"{server.label}: {drifted} tool(s) changed since last review.", messages.WARNING
                )

    def save_model(self, request: HttpRequest, obj: McpServer, form: Any, change: bool) -> None:
        # Through the service, so that every registry change is an audit row.
        services.save_mcp_server(obj, by=request.user, created=not change)  # type: ignore[arg-type]

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        # Refused before the confirmation page while rules name the server (services.delete_mcp_server).
        server = self.get_object(request, object_id)
        if server is not None and services.rules_naming(server):
            self.message_user(
                request,
                f"Policy rule(s) {', '.join(services.rules_naming(server))} name {server.label}: "
                "change or delete them before deleting the server.",
                messages.ERROR,
            )
            return HttpResponseRedirect(reverse("admin:approvals_mcpserver_change", args=[server.pk]))
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request: HttpRequest, obj: McpServer) -> None:
        services.delete_mcp_server(obj, by=request.user)  # type: ignore[arg-type]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[McpServer]) -> None:
        for server in queryset:
            try:
                services.delete_mcp_server(server, by=request.user)  # type: ignore[arg-type]
            except ValidationError as exc:
                self.message_user(request, " ".join(exc.messages), messages.ERROR)

    @admin.display(description="Authorization")
    def authorization_set(self, obj: McpServer) -> str:
        return MASK if obj.authorization else "—"

    @admin.display(description="Headers")
    def header_names(self, obj: McpServer) -> str:
        return ", ".join(f"{name}: {MASK}" for name in obj.headers or {}) or "—"


def _pretty(definition: Any) -> str:
    return json.dumps(definition, indent=2, sort_keys=True, ensure_ascii=False) if definition is not None else ""


@admin.register(McpTool)
class McpToolAdmin(admin.ModelAdmin):
    """What each server listed at its last probe. Read-only: probes write it; an admin only
    accepts a changed definition with "mark reviewed"."""

    list_display = ["name", "server", "needs_review", "drifted_at", "last_seen_at", "removed_at", "reviewed_by_label"]
    list_filter = [("drifted_at", admin.EmptyFieldListFilter), "server"]
    search_fields = ["name", "server__label"]
    list_select_related = ["server"]
    fields = [
        "server",
        "name",
        "definition_hash",
        "drifted_at",
        "side_by_side",
        "first_seen_at",
        "last_seen_at",
        "removed_at",
        "reviewed_at",
        "reviewed_by_label",
    ]
    readonly_fields = fields
    actions = ["mark_reviewed"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: McpTool | None = None) -> bool:
        return False

    @admin.display(boolean=True, description="Changed, needs review")
    def needs_review(self, obj: McpTool) -> bool:
        return obj.needs_review

    @admin.display(description="Definition (last reviewed | current)")
    def side_by_side(self, obj: McpTool) -> str:
        if obj.previous_definition is None:
            return format_html("<pre>{}</pre>", _pretty(obj.definition))
        return format_html(
            '<table><tr><th>Before ({})</th><th>Now ({})</th></tr><tr><td style="vertical-align:top"><pre>{}</pre>'
            '</td><td style="vertical-align:top"><pre>{}</pre></td></tr></table>',
            obj.previous_hash[:12],
            obj.definition_hash[:12],
            _pretty(obj.previous_definition),
            _pretty(obj.definition),
        )

    @admin.action(description="Mark the selected changed tools reviewed", permissions=["change"])
    def mark_reviewed(self, request: HttpRequest, queryset: QuerySet[McpTool]) -> None:
        reviewed = sum(services.mark_tool_reviewed(tool, by=request.user) for tool in queryset)  # type: ignore[arg-type]
        self.message_user(request, f"Marked {reviewed} tool(s) reviewed.", messages.SUCCESS)
        skipped = queryset.count() - reviewed
        if skipped:
            self.message_user(request, f"{skipped} tool(s) had no unreviewed change.", messages.WARNING)


@admin.register(ClientToken)
class ClientTokenAdmin(admin.ModelAdmin):
    list_display = ["label", "prefix", "metadata", "created_at", "is_active", "revoked_at", "last_used_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["label", "prefix"]
    fields = ["label", "metadata", "prefix", "created_at", "created_by", "revoked_at", "last_used_at"]
    readonly_fields = ["prefix", "created_at", "created_by", "revoked_at", "last_used_at"]
    actions = ["revoke"]

    @admin.display(boolean=True, description="Active")
    def is_active(self, obj: ClientToken) -> bool:
        return obj.is_active

    def has_add_permission(self, request: HttpRequest) -> bool:
        # The plaintext exists once, when issued; `manage.py create_client_token` prints it.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ClientToken | None = None) -> bool:
        # Sessions and audit rows name the token: revoke it instead of deleting it.
        return False

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ClientToken]) -> None:
        revoked = sum(services.revoke_token(token, by=request.user) for token in queryset)  # type: ignore[arg-type]
        skipped = queryset.count() - revoked
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} token(s) were already revoked.", messages.WARNING)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records of what happened: they change only through approvals/services.py."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AuditEventInline(admin.TabularInline):
    model = AuditEvent
    fk_name = "request"
    fields = ["created_at", "kind", "actor_label", "payload"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdmin):
    list_display = ["pk", "tool_name", "server_label", "session", "status", "created_at", "decided_by_label"]
    list_filter = ["status", "server_label"]
    search_fields = ["tool_name", "upstream_id", "session__label", "decided_by_label", "reason"]
    list_select_related = ["session"]
    date_hierarchy = "created_at"
    inlines = [AuditEventInline]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["pk", "created_at", "kind", "actor_label", "request", "session"]
    list_filter = ["kind"]
    search_fields = ["actor_label", "request__upstream_id", "session__label"]
    list_select_related = ["request", "session"]
    date_hierarchy = "created_at"


@admin.register(RealtimeSession)
class RealtimeSessionAdmin(ReadOnlyAdmin):
    list_display = ["pk", "label", "kind", "status", "model", "opened_at", "closed_at", "close_code"]
    list_filter = ["kind", "status"]
    search_fields = ["label", "upstream_session_id", "call_id"]
    date_hierarchy = "opened_at"


# Policies -----------------------------------------------------------------------------------
# The rows are what admins edit; what routes requests is the latest PolicyVersion, made from the
# rows by services.publish_policy after every save and delete. The forms check a change against
# the whole policy before anything is written, so that a refused change keeps the person's input;
# publish_policy checks again, and a refusal then (a race) rolls the whole save back.


class PolicyRefused(Exception):
    """publish_policy refused the rules as a whole. Raised inside the admin's transaction so that
    the save rolls back, and caught outside it to show the errors."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _rule_summary(row: PolicyRule) -> str:
    """The row in plain words (the rows come with their groups and steps prefetched)."""
    if row.outcome != policy.ASK:
        text = "allow at once" if row.outcome == policy.ALLOW else "deny at once"
        return f"{text}: {row.reason}" if row.reason else text
    return policy.rule_from_row(row).describe()


def _server_choices() -> list[tuple[str, str]]:
    return [("", "Any server"), *((label, label) for label in McpServer.objects.values_list("label", flat=True))]


class EscalationStepFormSet(BaseInlineFormSet):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The rule's form checks the chain as a whole (its first step and these) before the admin
        # saves anything, so it needs these steps. The admin builds this formset on the very
        # instance the form edits, before it validates the form: the instance is the link.
        self.instance._escalation_formset = self

    def steps(self) -> list[dict[str, Any]] | None:
        """The steps as they will be saved, in order (position, then creation); None when a step
        itself is invalid (its own errors are shown)."""
        if not self.is_valid():
            return None
        kept = []
        for index, form in enumerate(self.forms):
            data = form.cleaned_data
            if not data or data.get("DELETE"):
                continue  # an untouched blank row, or one marked for deletion
            kept.append((data.get("position") or 0, form.instance.pk or math.inf, index, data))
        return [data for *_key, data in sorted(kept, key=lambda k: k[:3])]


class EscalationStepInline(admin.TabularInline):
    model = EscalationStep
    formset = EscalationStepFormSet
    fields = ["position", "groups", "quorum", "deadline_seconds", "on_deadline"]
    extra = 0
    verbose_name = "escalation step"
    verbose_name_plural = "Escalation steps (reached in order when the step before escalates at its deadline)"
    formfield_overrides = {models.ManyToManyField: {"widget": forms.CheckboxSelectMultiple}}

    # The steps are part of their rule: whoever may add or change the rule may edit its steps,
    # without separate escalation-step permissions.
    def _may_edit(self, request: HttpRequest, obj: Any) -> bool:
        return request.user.has_perm(f"approvals.{'add' if obj is None else 'change'}_policyrule")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_edit(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_edit(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_edit(request, obj)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("approvals.view_policyrule") or self._may_edit(request, obj)


class PolicyRuleForm(forms.ModelForm):
    server_label = forms.ChoiceField(
        label="Server", required=False, choices=_server_choices, help_text="Any server, or one registered server."
    )

    class Meta:
        model = PolicyRule
        fields = [
            "position",
            "label",
            "description",
            "enabled",
            "server_label",
            "tool_pattern",
            "condition",
            "outcome",
            "reason",
            "groups",
            "quorum",
            "deadline_seconds",
            "on_deadline",
        ]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2, "cols": 80}),
            "condition": forms.Textarea(attrs={"rows": 4, "cols": 80, "spellcheck": "false", "class": "policy-code"}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = self.instance.server_label
        field = self.fields["server_label"]
        if current and current not in dict(field.choices):  # type: ignore[attr-defined]
            # A server deleted since: keep showing what the rule names (the policy check refuses
            # it), rather than silently widening the rule to any server.
            field.choices = [*field.choices, (current, f"{current} (not registered)")]  # type: ignore[attr-defined]

    def clean_condition(self) -> str:
        # Browsers send CRLF; the document and the error positions want plain lines.
        return self.cleaned_data["condition"].replace("\r\n", "\n").strip()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("condition"):
            try:
                policy.compile_condition(cleaned["condition"])
            except policy.ConditionError as exc:
                self.add_error("condition", str(exc))
        steps = self._escalation_steps()
        if cleaned.get("outcome") == policy.ASK:
            self._check_chain(cleaned, steps)
        elif cleaned.get("outcome"):
            self._check_no_ask_fields(cleaned, steps)
        if self.errors or steps is None:
            return cleaned  # the whole-policy check would only repeat these errors
        if PolicyRule.objects.filter(label=cleaned.get("label")).exclude(pk=self.instance.pk).exists():
            return cleaned  # validate_unique names it on the label field
        try:
            policy.parse_document(policy.document(self._draft_policy(cleaned, steps)))
        except policy.PolicyError as exc:
            for error in exc.errors:
                self.add_error(None, error)
        return cleaned

    def _escalation_steps(self) -> list[dict[str, Any]] | None:
        formset = getattr(self.instance, "_escalation_formset", None)
        if formset is not None:
            return formset.steps()
        # Outside the admin's change page (no formset): the steps the rule has now.
        existing = self.instance.escalations.all() if self.instance.pk else []
        return [
            {
                "groups": s.groups.all(),
                "quorum": s.quorum,
                "deadline_seconds": s.deadline_seconds,
                "on_deadline": s.on_deadline,
            }
            for s in existing
        ]

    def _check_chain(self, cleaned: dict[str, Any], steps: list[dict[str, Any]] | None) -> None:
        if steps is None or "on_deadline" not in cleaned:
            return
        escalate = DeadlineAction.ESCALATE.value
        if cleaned["on_deadline"] == escalate and not steps:
            self.add_error(
                "on_deadline",
                "Escalate needs a next step: add an escalation step below, or let the deadline deny or approve.",
            )
        elif cleaned["on_deadline"] != escalate and steps:
            self.add_error(
                "on_deadline",
                f"The {len(steps)} escalation step(s) below are never reached: set this to escalate, or delete them.",
            )
        for number, step in enumerate(steps, start=1):
            last = number == len(steps)
            if step.get("on_deadline") == escalate and last:
                self.add_error(
                    None,
                    f"Escalation step {number} escalates, but no step follows it: add one, or let its deadline "
                    "deny or approve.",
                )
            elif step.get("on_deadline") != escalate and not last:
                self.add_error(
                    None,
                    f"Escalation step {number} ends with {step.get('on_deadline')}: the steps after it are never "
                    "reached (set it to escalate, or delete them).",
                )

    def _check_no_ask_fields(self, cleaned: dict[str, Any], steps: list[dict[str, Any]] | None) -> None:
        # An allow or deny never asks: who, how many, the deadline and the steps would be kept in
        # the row yet mean nothing. Refused, so that the page never shows what the policy ignores.
        only = f"applies to outcome ask only (this rule says {cleaned['outcome']}): clear it, or choose ask."
        if cleaned.get("groups"):
            self.add_error("groups", f"Who may decide {only}")
        if cleaned.get("quorum") not in (None, 1):
            self.add_error("quorum", f"The number of approvers {only}")
        if cleaned.get("deadline_seconds") is not None:
            self.add_error("deadline_seconds", f"The deadline {only}")
        if cleaned.get("on_deadline") not in (None, DeadlineAction.DENY.value):
            self.add_error("on_deadline", f"What the deadline does {only}")
        if steps:
            self.add_error(
                None,
                f"Escalation steps apply to outcome ask only (this rule says {cleaned['outcome']}): delete them, "
                "or choose ask.",
            )

    def _draft_policy(self, cleaned: dict[str, Any], steps: list[dict[str, Any]]) -> list[policy.Rule]:
        """Every rule as publish_policy will see them once this form and its steps are saved."""
        first = policy.step_of(
            cleaned["groups"], cleaned["quorum"], cleaned["deadline_seconds"], cleaned["on_deadline"]
        )
        rest = [policy.step_of(s["groups"], s["quorum"], s["deadline_seconds"], s["on_deadline"]) for s in steps]
        draft = policy.Rule(
            label=cleaned["label"],
            outcome=cleaned["outcome"],
            server=cleaned.get("server_label") or "",
            tool=cleaned["tool_pattern"],
            when=cleaned.get("condition") or "",
            reason=cleaned.get("reason") or "",
            description=cleaned.get("description") or "",
            enabled=cleaned.get("enabled", True),
            steps=(first, *rest) if cleaned["outcome"] == policy.ASK else policy.DEFAULT_STEPS,
        )
        # The other rules exactly as publish_policy reads the rows, placed by (position, pk).
        places = {
            label: (position, pk) for label, position, pk in PolicyRule.objects.values_list("label", "position", "pk")
        }
        ordered = [
            (places[rule.label], rule)
            for rule in policy.rules_from_rows()
            if rule.label in places and places[rule.label][1] != self.instance.pk
        ]
        ordered.append(((cleaned["position"], self.instance.pk or math.inf), draft))
        ordered.sort(key=lambda item: item[0])
        return [rule for _place, rule in ordered]


def _consume_messages(request: HttpRequest) -> None:
    """Drop the messages queued by a save that was then rolled back ("… changed successfully").
    Iterating a message storage marks what it holds as read (Django's messages framework)."""
    for _message in messages.get_messages(request):
        pass


_BATCH = "_countersign_policy_batch"


class DryRunForm(forms.Form):
    draft = forms.CharField(
        label="Draft policy (YAML)",
        strip=False,
        widget=forms.Textarea(attrs={"rows": 24, "cols": 100, "spellcheck": "false", "class": "policy-code"}),
        help_text="The whole policy, in the format of export_policies (docs/policies.md).",
    )
    days = forms.IntegerField(
        label="Days to replay",
        min_value=1,
        max_value=365,
        initial=7,
        help_text="Replay the requests recorded in the last 1 to 365 days, each at its own time.",
    )
    only_changed = forms.BooleanField(label="Show only the requests decided differently", required=False, initial=True)
    base_version = forms.IntegerField(required=False, widget=forms.HiddenInput)


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
                "fields": ["groups", "quorum", "deadline_seconds", "on_deadline"],
                "description": "For outcome ask only. To escalate, set the deadline to escalate and add the next "
                "step(s) below.",
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
        batch = getattr(request, _BATCH, None)
        if batch is not None:
            batch.append(form.instance.label)  # the list's editable columns: one version (changelist_view)
            return
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
        batch: list[str] = []
        setattr(request, _BATCH, batch)
        try:
            with transaction.atomic():
                response = super().changelist_view(request, extra_context)
                if batch:
                    self._publish(request, f"admin: rule list ({', '.join(batch)})")
        except PolicyRefused as exc:
            self._refused(request, exc)
            return HttpResponseRedirect(request.get_full_path())
        return response

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
                        rules = policy.parse_document(policy.load_yaml(draft))
                    except policy.PolicyError as exc:
                        errors = exc.errors
                    else:
                        report = policy.dry_run(policy.Policy(rules, None), days=form.cleaned_data["days"])
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
    fields = ["number", "created_at", "by", "source", "changes_text", "document_yaml"]
    readonly_fields = fields

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
