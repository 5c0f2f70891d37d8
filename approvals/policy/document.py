"""The policy document: its rules and steps, and the one validator of it (docs/policies.md).

A policy is an ordered list of rules; the first that matches a call decides what happens to it:
allow or deny at once, or ask: which groups may decide, how many distinct approvers, the
deadline, and what the deadline does (deny, approve, or escalate to the next step).

Two forms of it exist in memory and they convert one into the other: `Rule` objects (what the
engine routes with and what the rows in the database become, approvals/policy/rows.py) and the
document (a dict: the YAML of export_policies/import_policies, and the snapshot each
PolicyVersion keeps). `parse_document` is the only way from the document to rules, and checks
it: the YAML import, the admin's forms (which build the draft document of the whole policy) and
publish_policy all go through it. The entries of the document are validated as pydantic models
(`RuleEntry`, `StepEntry`); `chain_problems` is the escalation-chain rule, phrased here for the
document and by the admin for its form.

Pure: reads the registry (server labels, group names) only when asked to check names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from django.contrib.auth.models import Group
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError

from approvals.models import DeadlineAction, McpServer
from approvals.policy.conditions import ConditionError, compile_condition
from approvals.policy.shapes import (  # noqa: F401  the values a document becomes, importable from here
    ALLOW,
    ASK,
    DEAD_END,
    DEFAULT_GRANT_MAX_MINUTES,
    DEFAULT_GRANT_SCOPES,
    DEFAULT_GRANTS,
    DEFAULT_STEPS,
    DENY,
    DOCUMENT_FORMAT,
    GRANT_SCOPES,
    LABEL,
    MAX_DEADLINE_SECONDS,
    MAX_GRANT_MINUTES,
    MAX_RULES,
    MAX_STEPS,
    NO_REQUIREMENTS,
    REQUIRES_KEYS,
    UNREACHED,
    GrantLimits,
    PolicyError,
    Requires,
    Rule,
    Step,
    chain_problems,
    describe_steps,
    document,
)

STEP_KEYS = frozenset({"approvers", "quorum", "deadline_seconds", "on_deadline", "escalate_when_nobody_online"})
ASK_ONLY_KEYS = STEP_KEYS | {"escalations", "requires", "grants", "grant_max_minutes"}
# What a field must be, said once for every way it can be wrong (a type, a bound, a missing key).
FIELD_HELP = {
    "label": "required; letters, digits, - and _ (at most 100)",
    "outcome": "one of allow, deny, ask",
    "server": "a registered server's label, or '*'",
    "tool": "a tool name or pattern such as refund_* (at most 200 characters)",
    "when": "a CEL expression as text",
    "reason": "text of at most 500 characters",
    "enabled": "true or false",
    "approvers": "a group name, a list of group names, or 'any staff'",
    "quorum": "a whole number from 1 to 20",
    "deadline_seconds": f"a whole number of seconds from 1 to {MAX_DEADLINE_SECONDS}",
    "on_deadline": f"one of {', '.join(DeadlineAction.values)}",
    "escalations": f"a list of at most {MAX_STEPS} steps",
    "escalate_when_nobody_online": "true or false",
    "requires": f"a mapping of {', '.join(REQUIRES_KEYS)} to true or false",
    "grants": f"a list of {', '.join(GRANT_SCOPES)} (empty: an approval covers its one call only)",
    "grant_max_minutes": f"a whole number of minutes from 1 to {MAX_GRANT_MINUTES}",
    "holding_line": "true or false",
}
_OWN = "policy"  # the type of the errors raised below, whose message is already what to show


def _own(message: str, **ctx: Any) -> PydanticCustomError:
    # The message goes in through the context: a condition's text may hold braces.
    return PydanticCustomError(_OWN, "{text}", {"text": message, **ctx})


def _names(info: ValidationInfo, key: str) -> set[str] | None:
    context = info.context or {}
    names: set[str] | None = context.get(key)
    return names


def _approvers(value: Any) -> Any:
    if value in (None, "any staff", "*", []):
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(a, str) and a for a in value):
        return tuple(dict.fromkeys(value))
    raise _own(FIELD_HELP["approvers"])


def _known_groups(value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
    groups = _names(info, "groups")
    missing = [name for name in value if groups is not None and name not in groups]
    if missing:
        raise PydanticCustomError("unknown_groups", "unknown groups", {"names": missing})
    return value


def _deadline_action(value: str) -> str:
    if value not in DeadlineAction.values:
        raise _own(FIELD_HELP["on_deadline"])
    return value


def _server(value: Any) -> Any:
    if value in (None, "*", ""):
        return ""
    return value


def _known_server(value: str, info: ValidationInfo) -> str:
    servers = _names(info, "servers")
    if value and servers is not None and value not in servers:
        raise _own(f"no MCP server is registered as {value!r}")
    return value


def _outcome(value: str) -> str:
    if value not in (ALLOW, DENY, ASK):
        raise _own(FIELD_HELP["outcome"])
    return value


def _condition(value: str) -> str:
    if value.strip():
        try:
            compile_condition(value)
        except ConditionError as exc:
            raise _own(str(exc)) from None
    return value.strip()


def _grant_scopes(value: Any) -> Any:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple) or any(v not in GRANT_SCOPES for v in value):
        raise _own(FIELD_HELP["grants"])
    return tuple(s for s in GRANT_SCOPES if s in value)


def _or_empty(value: Any) -> Any:
    return value or ""


Approvers = Annotated[tuple[str, ...], BeforeValidator(_approvers), AfterValidator(_known_groups)]
Quorum = Annotated[StrictInt, Field(ge=1, le=20)]
Deadline = Annotated[StrictInt, Field(ge=1, le=MAX_DEADLINE_SECONDS)] | None
OnDeadline = Annotated[StrictStr, AfterValidator(_deadline_action)]


class StepEntry(BaseModel):
    """One step under a rule's `escalations` (the first step's keys sit in the rule itself)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    approvers: Approvers = ()
    quorum: Quorum = 1
    deadline_seconds: Deadline = None
    on_deadline: OnDeadline = DeadlineAction.DENY.value
    escalate_when_nobody_online: StrictBool = False

    def to_step(self) -> Step:
        return Step(
            self.approvers, self.quorum, self.deadline_seconds, self.on_deadline, self.escalate_when_nobody_online
        )


class RequiresEntry(BaseModel):
    """A rule's `requires`: {confirm, reason_on_approve, reason_on_deny, step_up}, each true or
    false (absent: false)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    confirm: StrictBool = False
    reason_on_approve: StrictBool = False
    reason_on_deny: StrictBool = False
    step_up: StrictBool = False

    def to_requires(self) -> Requires:
        return Requires(self.confirm, self.reason_on_approve, self.reason_on_deny, self.step_up)


class RuleEntry(BaseModel):
    """One entry of the document's `rules`. Validated with the context {"servers": set | None,
    "groups": set | None}: names not in a given set are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: Annotated[StrictStr, Field(pattern=rf"^{LABEL.pattern}$")]
    outcome: Annotated[StrictStr, AfterValidator(_outcome)]
    server: Annotated[StrictStr, BeforeValidator(_server), AfterValidator(_known_server)] = ""
    tool: Annotated[StrictStr, Field(min_length=1, max_length=200)] = "*"
    when: Annotated[StrictStr, BeforeValidator(_or_empty), AfterValidator(_condition)] = ""
    reason: Annotated[StrictStr, BeforeValidator(_or_empty), Field(max_length=500)] = ""
    description: Annotated[str, BeforeValidator(lambda v: str(v or ""))] = ""
    enabled: StrictBool = True
    approvers: Approvers = ()
    quorum: Quorum = 1
    deadline_seconds: Deadline = None
    on_deadline: OnDeadline = DeadlineAction.DENY.value
    escalate_when_nobody_online: StrictBool = False
    escalations: Annotated[list[StepEntry], BeforeValidator(lambda v: v or []), Field(max_length=MAX_STEPS)] = Field(
        default_factory=list
    )
    requires: Annotated[RequiresEntry, BeforeValidator(lambda v: {} if v is None else v)] = RequiresEntry()
    grants: Annotated[tuple[str, ...], BeforeValidator(_grant_scopes)] = DEFAULT_GRANT_SCOPES
    grant_max_minutes: Annotated[StrictInt, Field(ge=1, le=MAX_GRANT_MINUTES)] = DEFAULT_GRANT_MAX_MINUTES
    holding_line: StrictBool = True

    def to_rule(self) -> Rule:
        first = Step(
            self.approvers, self.quorum, self.deadline_seconds, self.on_deadline, self.escalate_when_nobody_online
        )
        return Rule(
            label=self.label,
            outcome=self.outcome,
            server=self.server,
            tool=self.tool,
            when=self.when,
            reason=self.reason,
            description=self.description,
            enabled=self.enabled,
            steps=(first, *(s.to_step() for s in self.escalations)) if self.outcome == ASK else DEFAULT_STEPS,
            requires=self.requires.to_requires() if self.outcome == ASK else NO_REQUIREMENTS,
            grants=GrantLimits(self.grants, self.grant_max_minutes) if self.outcome == ASK else DEFAULT_GRANTS,
            # Nobody waits under allow or deny: the option means something for ask only.
            holding_line=self.holding_line or self.outcome != ASK,
        )


def _path(where: str, loc: tuple[int | str, ...]) -> str:
    path = where
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in FIELD_HELP or part in RuleEntry.model_fields:
            path += f".{part}"
        else:
            break  # a tag pydantic adds inside a field (a union's member): the field is named
    return path


def _messages(exc: ValidationError, where: str) -> list[str]:
    """The errors pydantic found in one rule, as the document's messages."""
    out: list[str] = []
    unknown: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        if error["type"] == "extra_forbidden":
            unknown.setdefault(_path(where, loc[:-1]), []).append(str(loc[-1]))
            continue
        path = _path(where, loc)
        if error["type"] == "unknown_groups":
            out += [f"{path}: there is no group named {name!r}" for name in error["ctx"]["names"]]
        elif error["type"] == _OWN:
            out.append(f"{path}: {error['ctx']['text']}")
        elif isinstance(loc[-1], int) and loc[:1] == ("escalations",):
            out.append(
                f"{path}: expected a mapping with approvers, quorum, deadline_seconds, on_deadline"
                ", escalate_when_nobody_online"
            )
        else:
            field = next((p for p in reversed(loc) if isinstance(p, str) and p in FIELD_HELP), "")
            out.append(f"{path}: {FIELD_HELP.get(field, error['msg'])}")
    out[:0] = [f"{path}: unknown key(s) {', '.join(sorted(keys))}" for path, keys in unknown.items()]
    return list(dict.fromkeys(out))


def _chain_messages(raw: Mapping[str, Any], where: str) -> list[str]:
    escalations = raw.get("escalations") or []
    if not isinstance(escalations, list) or len(escalations) > MAX_STEPS:
        escalations = []
    steps = [raw, *(s if isinstance(s, Mapping) else {} for s in escalations)]
    out = []
    for index, step in enumerate(steps):
        # Skipping a step needs a step to skip to: refused rather than silently meaning nothing.
        if step.get("escalate_when_nobody_online") is True and step.get("on_deadline") != DeadlineAction.ESCALATE:
            at = where if index == 0 else f"{where}.escalations[{index - 1}]"
            out.append(f"{at}.escalate_when_nobody_online: needs on_deadline escalate and a next step")
    for index, problem in chain_problems([s.get("on_deadline", DeadlineAction.DENY.value) for s in steps]):
        at = where if index == 0 else f"{where}.escalations[{index - 1}]"
        if problem == DEAD_END:
            out.append(f"{at}.on_deadline: escalate needs a next step under escalations")
        else:
            out.append(f"{at}.on_deadline: the steps after it are never reached (set it to escalate)")
    return out


def _parse_rule(raw: Any, index: int, seen: set[str], context: dict[str, Any]) -> tuple[Rule | None, list[str]]:
    where = f"rules[{index}]"
    if not isinstance(raw, Mapping):
        return None, [f"{where}: expected a mapping"]
    errors: list[str] = []
    label = raw.get("label")
    if isinstance(label, str) and LABEL.fullmatch(label):
        where = f"{where} ({label})"
        if label in seen:
            errors.append(f"{where}.label: used by an earlier rule too")
        seen.add(label)
    rule = None
    try:
        rule = RuleEntry.model_validate(raw, context=context).to_rule()
    except ValidationError as exc:
        errors += _messages(exc, where)
    outcome = raw.get("outcome")
    if outcome in (ALLOW, DENY):
        if set(raw) & ASK_ONLY_KEYS:
            errors.append(f"{where}: approvers, quorum, deadline, escalations and requires apply to outcome ask only")
    else:
        errors += _chain_messages(raw, where)
    return rule, errors


def parse_document(
    data: Any, *, servers: set[str] | None = None, groups: set[str] | None = None, check_names: bool = True
) -> list[Rule]:
    """The rules of a policy document (dict, as YAML loads it), their conditions checked to
    compile. Raises PolicyError listing every problem. With check_names the servers and groups
    named must exist now (read from the database unless given)."""
    if check_names:
        servers = set(McpServer.objects.values_list("label", flat=True)) if servers is None else servers
        groups = set(Group.objects.values_list("name", flat=True)) if groups is None else groups
    errors: list[str] = []
    if not isinstance(data, Mapping):
        raise PolicyError(["the document must be a mapping with 'format' and 'rules'"])
    unknown = set(data) - {"format", "rules"}
    if unknown:
        errors.append(f"unknown top-level key(s) {', '.join(sorted(map(str, unknown)))} (expected format, rules)")
    if data.get("format", DOCUMENT_FORMAT) != DOCUMENT_FORMAT:
        errors.append(f"format: this Countersign reads format {DOCUMENT_FORMAT}, not {data.get('format')!r}")
    raw_rules = data.get("rules") or []
    if not isinstance(raw_rules, list):
        raise PolicyError([*errors, "rules: expected a list of rules"])
    if len(raw_rules) > MAX_RULES:
        raise PolicyError([*errors, f"rules: at most {MAX_RULES} rules"])
    rules: list[Rule] = []
    seen: set[str] = set()
    context = {"servers": servers, "groups": groups}
    for index, raw in enumerate(raw_rules):
        rule, problems = _parse_rule(raw, index, seen, context)
        errors += problems
        if rule is not None:
            rules.append(rule)
    if errors:
        raise PolicyError(errors)
    return rules
