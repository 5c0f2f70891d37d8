"""The policy as rows in the database (PolicyRule, EscalationStep), and back: the one conversion
each way between the rows the admin edits and the rules of approvals/policy/document.py.

`write_rows` WRITES (it replaces every rule row); it is called by services.publish_policy inside
its transaction, and by nothing else."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import Group

from approvals.models import EscalationStep, PolicyRule
from approvals.policy.document import (
    ASK,
    DEFAULT_GRANTS,
    DEFAULT_STEPS,
    GRANT_SCOPES,
    NO_REQUIREMENTS,
    GrantLimits,
    Requires,
    Rule,
    Step,
)


def step_of(
    groups: Iterable[Any],
    quorum: int,
    deadline_seconds: int | None,
    on_deadline: str,
    *,
    escalate_when_nobody_online: bool = False,
) -> Step:
    """A step from a row's (or a form's) fields; `groups` are Group objects."""
    return Step(
        groups=tuple(sorted(g.name for g in groups)),
        quorum=quorum,
        deadline_seconds=deadline_seconds,
        on_deadline=on_deadline,
        escalate_when_nobody_online=escalate_when_nobody_online,
    )


def requires_of(row: Any) -> Requires:
    """A rule row's (or a form's cleaned data's) requirements."""
    get = row.get if isinstance(row, dict) else (lambda name, default=False: getattr(row, name, default))
    return Requires(
        confirm=bool(get("require_confirm", False)),
        reason_on_approve=bool(get("require_reason_on_approve", False)),
        reason_on_deny=bool(get("require_reason_on_deny", False)),
        step_up=bool(get("require_step_up", False)),
    )


def grants_of(row: Any) -> GrantLimits:
    """A rule row's (or a form's cleaned data's) grant limits: grant_scopes is comma-separated."""
    get = row.get if isinstance(row, dict) else (lambda name, default=None: getattr(row, name, default))
    given = [s.strip() for s in str(get("grant_scopes", "") or "").split(",")]
    minutes = get("grant_max_minutes", None)
    return GrantLimits(
        tuple(s for s in GRANT_SCOPES if s in given), int(minutes) if minutes else DEFAULT_GRANTS.max_minutes
    )


def rule_from_row(row: PolicyRule) -> Rule:
    """A rule row (with its groups and escalation steps) as a Rule."""
    steps = [
        step_of(
            row.groups.all(),
            row.quorum,
            row.deadline_seconds,
            row.on_deadline,
            escalate_when_nobody_online=row.escalate_when_nobody_online,
        )
    ]
    steps += [
        step_of(
            s.groups.all(),
            s.quorum,
            s.deadline_seconds,
            s.on_deadline,
            escalate_when_nobody_online=s.escalate_when_nobody_online,
        )
        for s in row.escalations.all()
    ]
    return Rule(
        label=row.label,
        outcome=row.outcome,
        server=row.server_label,
        tool=row.tool_pattern,
        when=row.condition.strip(),
        reason=row.reason,
        description=row.description,
        enabled=row.enabled,
        steps=tuple(steps) if row.outcome == ASK else DEFAULT_STEPS,
        requires=requires_of(row) if row.outcome == ASK else NO_REQUIREMENTS,
        grants=grants_of(row) if row.outcome == ASK else DEFAULT_GRANTS,
        holding_line=row.holding_line or row.outcome != ASK,
    )


def rules_from_rows() -> list[Rule]:
    """The rules as the admin's rows hold them now, in order (not checked: see parse_document)."""
    rows = PolicyRule.objects.prefetch_related("groups", "escalations__groups").order_by("position", "pk")
    return [rule_from_row(row) for row in rows]


def write_rows(rules: list[Rule]) -> None:
    """Replace every rule row with `rules` (inside the caller's transaction). The groups the
    rules name must exist (parse_document checked them)."""
    PolicyRule.objects.all().delete()
    groups = {g.name: g for g in Group.objects.all()}
    for position, rule in enumerate(rules):
        first = rule.steps[0]
        row = PolicyRule.objects.create(
            position=(position + 1) * 10,
            label=rule.label,
            description=rule.description,
            enabled=rule.enabled,
            server_label=rule.server,
            tool_pattern=rule.tool,
            condition=rule.when,
            outcome=rule.outcome,
            reason=rule.reason,
            quorum=first.quorum,
            deadline_seconds=first.deadline_seconds,
            on_deadline=first.on_deadline,
            escalate_when_nobody_online=first.escalate_when_nobody_online,
            require_confirm=rule.requires.confirm,
            require_reason_on_approve=rule.requires.reason_on_approve,
            require_reason_on_deny=rule.requires.reason_on_deny,
            require_step_up=rule.requires.step_up,
            grant_scopes=",".join(rule.grants.scopes),
            grant_max_minutes=rule.grants.max_minutes,
            holding_line=rule.holding_line,
        )
        row.groups.set([groups[name] for name in first.groups])
        if rule.outcome != ASK:
            continue
        for index, step in enumerate(rule.steps[1:]):
            esc = EscalationStep.objects.create(
                rule=row,
                position=index + 1,
                quorum=step.quorum,
                deadline_seconds=step.deadline_seconds,
                on_deadline=step.on_deadline,
                escalate_when_nobody_online=step.escalate_when_nobody_online,
            )
            esc.groups.set([groups[name] for name in step.groups])
