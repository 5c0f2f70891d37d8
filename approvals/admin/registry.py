"""The registry's admin pages: MCP servers, their tools, client tokens. Secrets are write-only
here: a client token's hash never shows, and an MCP server's authorization and header values are
masked in lists and never put back into a form (a blank field keeps the stored value). Every
change goes through approvals/services.py, so that it is an audit row."""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from approvals import policy, services
from approvals.models import ClientToken, McpServer, McpTool

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
            "gateway_mode",
            "authorization",
            "clear_authorization",
            "headers",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The names are shown, the values never: the initial text is masked.
        self.initial["headers"] = mask_headers(self.instance.headers or {})
        self.initial["authorization"] = ""
        # OpenAI is given the URL alone (to_tool() sends no transport): docs/registry.md, "What OpenAI is given".
        transport = self.fields["transport"]
        assert isinstance(transport, forms.TypedChoiceField)
        transport.help_text = (
            "How Countersign's gateway reaches the server upstream. OpenAI is given the URL alone, and Test "
            "connection tries it as OpenAI would: Streamable HTTP, else HTTP+SSE."
        )
        transport.choices = [
            (value, "Streamable HTTP, else HTTP+SSE" if value == McpServer.Transport.AUTO else label)
            for value, label in McpServer.Transport.choices
        ]
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
        super().clean()
        cleaned = self.cleaned_data
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
        "gateway_mode",
        "authorization_set",
        "header_names",
        "probe_ok",
        "probed_at",
    ]
    list_filter = ["enabled", "require_approval", "gateway_mode"]
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
    fields = readonly_fields = (
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
    )
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
    list_display = ["label", "prefix", "scopes", "metadata", "created_at", "is_active", "revoked_at", "last_used_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["label", "prefix"]
    fields = [
        "label",
        "metadata",
        "holding_line",
        "prefix",
        "scopes",
        "created_at",
        "created_by",
        "revoked_at",
        "last_used_at",
    ]
    # Scopes are fixed when the token is issued (audited with it): widening one would be a new token.
    readonly_fields = ["prefix", "scopes", "created_at", "created_by", "revoked_at", "last_used_at"]
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
