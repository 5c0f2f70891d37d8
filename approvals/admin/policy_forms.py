"""The policy admin's forms: a rule with its escalation steps, and the dry run's draft.

The rows are what admins edit; what routes requests is the latest PolicyVersion, made from the
rows by services.publish_policy after every save and delete. The rule's form checks a change
against the whole policy (approvals/policy/document.py: the same validator as the YAML import)
before anything is written, so that a refused change keeps the person's input; publish_policy
checks again, and a refusal then (a race) rolls the whole save back (PolicyRefused)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest

from approvals import policy
from approvals.models import DeadlineAction, EscalationStep, McpServer, PolicyRule

# The rule's requirements (approvals/policy/document.py, Requires) as the row's fields.
GRANT_FIELDS = ("grant_scopes", "grant_max_minutes")
REQUIREMENT_FIELDS = ("require_confirm", "require_reason_on_approve", "require_reason_on_deny", "require_step_up")


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
    fields = ["position", "groups", "quorum", "deadline_seconds", "on_deadline", "escalate_when_nobody_online"]
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
    # The escalation steps' formset class, given by PolicyRuleAdmin.get_form (the admin's own
    # inline formset for this request): the form checks the chain as a whole, its first step
    # and the steps submitted with it, before the admin saves anything. None: the form is used
    # without the inline (the steps the rule has now are taken).
    steps_formset: ClassVar[type[EscalationStepFormSet] | None] = None

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
            "escalate_when_nobody_online",
            *REQUIREMENT_FIELDS,
            *GRANT_FIELDS,
            "holding_line",
        ]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2, "cols": 80}),
            "condition": forms.Textarea(attrs={"rows": 4, "cols": 80, "spellcheck": "false", "class": "policy-code"}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "grant_max_minutes" in self.fields:
            self.fields["grant_max_minutes"].required = False
        current = self.instance.server_label
        field = self.fields["server_label"]
        if current and current not in dict(field.choices):  # type: ignore[attr-defined]
            # A server deleted since: keep showing what the rule names (the policy check refuses
            # it), rather than silently widening the rule to any server.
            field.choices = [*field.choices, (current, f"{current} (not registered)")]  # type: ignore[attr-defined]

    def clean_grant_scopes(self) -> str:
        given = [s.strip() for s in (self.cleaned_data.get("grant_scopes") or "").split(",") if s.strip()]
        unknown = [s for s in given if s not in policy.GRANT_SCOPES]
        if unknown:
            raise forms.ValidationError(f"Unknown grant {unknown[0]!r}: use {', '.join(policy.GRANT_SCOPES)}.")
        return ",".join(s for s in policy.GRANT_SCOPES if s in given)

    def clean_grant_max_minutes(self) -> int:
        # Not on older forms (and blank means the default): the rule's limit, never "none".
        value = self.cleaned_data.get("grant_max_minutes")
        return int(value) if value else policy.DEFAULT_GRANTS.max_minutes

    def clean_condition(self) -> str:
        # Browsers send CRLF; the document and the error positions want plain lines.
        return self.cleaned_data["condition"].replace("\r\n", "\n").strip()

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
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
        if self.steps_formset is not None and self.is_bound:
            # The same POST the admin's inline reads: the steps as they will be saved.
            return self.steps_formset(self.data, self.files, instance=self.instance).steps()
        # Outside the admin's change page (no formset): the steps the rule has now.
        existing = self.instance.escalations.all() if self.instance.pk else []
        return [
            {
                "groups": s.groups.all(),
                "quorum": s.quorum,
                "deadline_seconds": s.deadline_seconds,
                "on_deadline": s.on_deadline,
                "escalate_when_nobody_online": s.escalate_when_nobody_online,
            }
            for s in existing
        ]

    def _check_chain(self, cleaned: dict[str, Any], steps: list[dict[str, Any]] | None) -> None:
        # The chain's rule is the document's (policy.chain_problems); the words are the form's.
        if steps is None or "on_deadline" not in cleaned:
            return
        actions = [cleaned["on_deadline"], *(step.get("on_deadline") or "" for step in steps)]
        for index, problem in policy.chain_problems(actions):
            if index == 0 and problem == policy.DEAD_END:
                self.add_error(
                    "on_deadline",
                    "Escalate needs a next step: add an escalation step below, or let the deadline deny or approve.",
                )
            elif index == 0:
                self.add_error(
                    "on_deadline",
                    f"The {len(steps)} escalation step(s) below are never reached: set this to escalate, or delete "
                    "them.",
                )
            elif problem == policy.DEAD_END:
                self.add_error(
                    None,
                    f"Escalation step {index} escalates, but no step follows it: add one, or let its deadline "
                    "deny or approve.",
                )
            else:
                self.add_error(
                    None,
                    f"Escalation step {index} ends with {actions[index]}: the steps after it are never "
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
        if cleaned.get("escalate_when_nobody_online"):
            self.add_error("escalate_when_nobody_online", f"Escalating when nobody is online {only}")
        for name in REQUIREMENT_FIELDS:
            if cleaned.get(name):
                self.add_error(name, f"What a decision needs {only}")
        if steps:
            self.add_error(
                None,
                f"Escalation steps apply to outcome ask only (this rule says {cleaned['outcome']}): delete them, "
                "or choose ask.",
            )

    def _draft_policy(self, cleaned: dict[str, Any], steps: list[dict[str, Any]]) -> list[policy.Rule]:
        """Every rule as publish_policy will see them once this form and its steps are saved."""
        first = policy.step_of(
            cleaned["groups"],
            cleaned["quorum"],
            cleaned["deadline_seconds"],
            cleaned["on_deadline"],
            escalate_when_nobody_online=bool(cleaned.get("escalate_when_nobody_online")),
        )
        rest = [
            policy.step_of(
                s["groups"],
                s["quorum"],
                s["deadline_seconds"],
                s["on_deadline"],
                escalate_when_nobody_online=bool(s.get("escalate_when_nobody_online")),
            )
            for s in steps
        ]
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
            requires=policy.requires_of(cleaned) if cleaned["outcome"] == policy.ASK else policy.NO_REQUIREMENTS,
            grants=policy.grants_of(cleaned) if cleaned["outcome"] == policy.ASK else policy.DEFAULT_GRANTS,
            holding_line=bool(cleaned.get("holding_line", True)) or cleaned["outcome"] != policy.ASK,
        )
        # The other rules exactly as publish_policy reads the rows, placed by (position, pk).
        places = {
            label: (position, pk) for label, position, pk in PolicyRule.objects.values_list("label", "position", "pk")
        }
        ordered: list[tuple[tuple[float, float], policy.Rule]] = [
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
