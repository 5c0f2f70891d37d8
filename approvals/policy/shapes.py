"""The policy's rules and steps as values: what the engine routes with, what the rows become, and
the document (a dict) they convert to. Pure. document.py validates a document into these."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from approvals.models import DeadlineAction, PolicyRule

DOCUMENT_FORMAT = 1
ALLOW, DENY, ASK = PolicyRule.Outcome.ALLOW.value, PolicyRule.Outcome.DENY.value, PolicyRule.Outcome.ASK.value
MAX_RULES = 500
MAX_STEPS = 20
MAX_DEADLINE_SECONDS = 7 * 24 * 3600
LABEL = re.compile(r"[-a-zA-Z0-9_]{1,100}")


class PolicyError(ValueError):
    """A policy document that cannot be used; `errors` lists every problem, each with where it is
    (`rules[2] (refund-large).when: …`). Nothing is changed when this is raised."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


# The rules --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One asking step: who may decide, how many distinct approvers, the deadline (None: the
    default) and what it does when it passes."""

    groups: tuple[str, ...] = ()
    quorum: int = 1
    deadline_seconds: int | None = None
    on_deadline: str = DeadlineAction.DENY.value
    # Skip to the next step at once (on routing and on reaching this step) when nobody of this
    # step's groups is online or reachable (approvals.events.is_anyone_online).
    escalate_when_nobody_online: bool = False

    def seconds(self) -> int:
        return self.deadline_seconds or settings.APPROVAL_TIMEOUT_SECONDS

    def to_plan(self) -> dict[str, Any]:
        plan: dict[str, Any] = {
            "groups": list(self.groups),
            "quorum": self.quorum,
            "deadline_seconds": self.seconds(),
            "on_deadline": self.on_deadline,
        }
        if self.escalate_when_nobody_online:
            plan["escalate_when_nobody_online"] = True
        return plan

    def describe(self) -> str:
        who = " or ".join(self.groups) or "any staff member"
        if self.quorum > 1:
            who = f"{self.quorum} distinct approvers from {who}"
        return f"{who} within {self.seconds()} s"

    def to_document(self) -> dict[str, Any]:
        out: dict[str, Any] = {"approvers": list(self.groups) or "any staff", "quorum": self.quorum}
        if self.deadline_seconds is not None:
            out["deadline_seconds"] = self.deadline_seconds
        out["on_deadline"] = self.on_deadline
        if self.escalate_when_nobody_online:
            # Only when set: documents exported before the option read back unchanged.
            out["escalate_when_nobody_online"] = True
        return out


DEFAULT_STEPS = (Step(),)


@dataclass(frozen=True)
class Requires:
    """What a person must give to decide under an ask rule, whatever the step: a confirmation
    (of approve and of deny), a reason (the note to the guest) for an approval and/or a denial,
    and a step-up (a passkey assertion, for approve and deny). Frozen into each request's plan
    when it opens, like its steps (docs/policies.md)."""

    confirm: bool = False
    reason_on_approve: bool = False
    reason_on_deny: bool = False
    step_up: bool = False

    def __bool__(self) -> bool:
        return any(self.to_plan().values())

    def to_plan(self) -> dict[str, bool]:
        return {
            "confirm": self.confirm,
            "reason_on_approve": self.reason_on_approve,
            "reason_on_deny": self.reason_on_deny,
            "step_up": self.step_up,
        }

    def to_document(self) -> dict[str, bool]:
        return {key: value for key, value in self.to_plan().items() if value}

    @classmethod
    def from_plan(cls, plan: Any) -> Requires:
        """From a request's frozen plan (a plan from before requirements existed requires nothing)."""
        given = plan.get("requires") if isinstance(plan, Mapping) else None
        if not isinstance(given, Mapping):
            return cls()
        return cls(**{key: given.get(key) is True for key in REQUIRES_KEYS})

    def describe(self) -> str:
        parts = []
        if self.confirm:
            parts.append("a confirmation")
        reasons = [w for w, on in (("approve", self.reason_on_approve), ("deny", self.reason_on_deny)) if on]
        if reasons:
            parts.append(f"a reason to {' or '.join(reasons)}")
        if self.step_up:
            parts.append("a passkey step-up")
        return ", ".join(parts)


REQUIRES_KEYS = ("confirm", "reason_on_approve", "reason_on_deny", "step_up")
NO_REQUIREMENTS = Requires()

# What an approval may grant beyond its one call (issue 14): "session" (the tool for the rest of
# the session) and "guest" (the tool for the same guest or room, for at most max minutes).
# Approve with changes is always possible: it grants exactly one call with the edited arguments.
GRANT_SCOPES = ("session", "guest")
DEFAULT_GRANT_SCOPES: tuple[str, ...] = ("session",)
DEFAULT_GRANT_MAX_MINUTES = 60
MAX_GRANT_MINUTES = 24 * 60


@dataclass(frozen=True)
class GrantLimits:
    """The grants an ask rule lets a decider make, frozen into each request's plan."""

    scopes: tuple[str, ...] = DEFAULT_GRANT_SCOPES
    max_minutes: int = DEFAULT_GRANT_MAX_MINUTES

    def to_plan(self) -> dict[str, Any]:
        return {"scopes": list(self.scopes), "max_minutes": self.max_minutes}

    def is_default(self) -> bool:
        return self == DEFAULT_GRANTS


DEFAULT_GRANTS = GrantLimits()


def describe_steps(steps: tuple[Step, ...]) -> str:
    """'ask managers within 120 s, then escalate to …, then deny': an ask outcome in words."""
    text = "ask " + ", then escalate to ".join(step.describe() for step in steps)
    return f"{text}, then {steps[-1].on_deadline}"


@dataclass(frozen=True)
class Rule:
    """One rule, as the engine routes with it. `server` "" is any server; `steps` matter for
    outcome ask only."""

    label: str
    outcome: str
    server: str = ""
    tool: str = "*"
    when: str = ""
    reason: str = ""
    description: str = ""
    enabled: bool = True
    steps: tuple[Step, ...] = DEFAULT_STEPS
    requires: Requires = NO_REQUIREMENTS
    grants: GrantLimits = DEFAULT_GRANTS
    # Ask: whether the assistant tells a voice guest that staff is checking while the request
    # waits (realtime_bridge/holding.py). Frozen into the request's plan when off.
    holding_line: bool = True

    def describe(self) -> str:
        if self.outcome != ASK:
            return "allow at once" if self.outcome == ALLOW else "deny at once"
        text = describe_steps(self.steps)
        return f"{text}; requires {self.requires.describe()}" if self.requires else text

    def to_document(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label}
        if self.description:
            out["description"] = self.description
        if not self.enabled:
            out["enabled"] = False
        out["server"] = self.server or "*"
        out["tool"] = self.tool
        if self.when:
            out["when"] = self.when
        out["outcome"] = self.outcome
        if self.reason:
            out["reason"] = self.reason
        if self.outcome == ASK:
            out.update(self.steps[0].to_document())
            if len(self.steps) > 1:
                out["escalations"] = [step.to_document() for step in self.steps[1:]]
            if self.requires:
                out["requires"] = self.requires.to_document()
            if not self.grants.is_default():
                # Only when changed: documents exported before grants existed read back unchanged.
                out["grants"] = list(self.grants.scopes)
                out["grant_max_minutes"] = self.grants.max_minutes
            if not self.holding_line:
                # Only when off: documents exported before the option read back unchanged.
                out["holding_line"] = False
        return out


def document(rules: Iterable[Rule]) -> dict[str, Any]:
    """The document of these rules (what parse_document reads back)."""
    return {"format": DOCUMENT_FORMAT, "rules": [rule.to_document() for rule in rules]}


# The escalation chain ---------------------------------------------------------------------------

DEAD_END, UNREACHED = "dead_end", "unreached"


def chain_problems(actions: Sequence[str]) -> list[tuple[int, str]]:
    """What is wrong with a chain of steps given what each deadline does, in order: (index,
    DEAD_END) for a step that escalates with no step after it, (index, UNREACHED) for a step
    that ends the chain while steps follow it."""
    problems = []
    for index, action in enumerate(actions):
        last = index == len(actions) - 1
        if action == DeadlineAction.ESCALATE and last:
            problems.append((index, DEAD_END))
        elif action != DeadlineAction.ESCALATE and not last:
            problems.append((index, UNREACHED))
    return problems


# The entries of the document, as pydantic validates them ----------------------------------------
