"""The policy engine: which tool call needs whose approval (docs/policies.md).

A policy is an ordered list of rules; the first that matches a call decides what happens to it:
allow or deny at once, or ask: which groups may decide, how many distinct approvers, the
deadline, and what the deadline does (deny, approve, or escalate to the next step). After the
last rule comes the built-in default: ask any staff member, APPROVAL_TIMEOUT_SECONDS, then deny,
so a fresh install works before anyone writes a rule.

This module is pure reading and computing: parsing and checking the policy document (the YAML
of export_policies/import_policies, and the snapshot each PolicyVersion keeps), compiling CEL
conditions, routing a call, compiling the rules into the `mcp` tool entries OpenAI receives,
and the dry run. Every change (new versions, request transitions) is in approvals/services.py.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import cel
import yaml
from django.conf import settings
from django.contrib.auth.models import Group
from django.utils import timezone

from approvals.models import (
    ApprovalRequest,
    DeadlineAction,
    EscalationStep,
    McpServer,
    McpTool,
    PolicyRule,
    PolicyVersion,
)

logger = logging.getLogger(__name__)

DOCUMENT_FORMAT = 1
ALLOW, DENY, ASK = PolicyRule.Outcome.ALLOW.value, PolicyRule.Outcome.DENY.value, PolicyRule.Outcome.ASK.value
MAX_CONDITION_CHARS = 2000
MAX_RULES = 500
MAX_STEPS = 20
MAX_DEADLINE_SECONDS = 7 * 24 * 3600

# What a condition may read (see call_context), and the functions of the CEL engine it may call
# (tests/approvals/test_policy.py checks each of them really runs). Operators (_&&_, @in, …) are
# always allowed.
CEL_VARIABLES = frozenset({"args", "session", "tool", "now", "time"})
CEL_FUNCTIONS = frozenset(
    {
        "size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double", "string",
        "bytes", "timestamp", "duration", "type", "dyn", "getFullYear", "getMonth", "getDate",
        "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getHours", "getMinutes", "getSeconds",
        "getMilliseconds",
    }
)  # fmt: skip
# Macros bind a loop variable: `args.items.exists(i, i.price > 10)` reads `i`.
_MACRO_BINDER = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")
_PARSE_POSITION = re.compile(r"<input>:(\d+):(\d+): (.*)")


class ConditionError(ValueError):
    """A CEL condition that does not compile, or uses a name it cannot read. The message names
    the line and column, and shows the place with a caret."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line, self.column = line, column


class PolicyError(ValueError):
    """A policy document that cannot be used; `errors` lists every problem, each with where it is
    (`rules[2] (refund-large).when: …`). Nothing is changed when this is raised."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _caret(source: str, line: int, column: int) -> str:
    lines = source.splitlines() or [""]
    text = lines[min(max(line, 1), len(lines)) - 1]
    return f"\n    {text}\n    {' ' * max(column - 1, 0)}^"


def _position_of(source: str, name: str) -> tuple[int, int]:
    """Line and column (1-based) of the first use of `name` as an identifier."""
    match = re.search(rf"(?<![\w.]){re.escape(name)}\b", source) or re.search(rf"\b{re.escape(name)}\b", source)
    offset = match.start() if match else 0
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return line, column


def compile_condition(source: str) -> cel.Program:
    """Compile a CEL condition and check every name it reads. Raises ConditionError."""
    if len(source) > MAX_CONDITION_CHARS:
        raise ConditionError(f"The condition is longer than {MAX_CONDITION_CHARS} characters.")
    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError) as exc:
        text = str(exc)
        found = _PARSE_POSITION.search(text)
        if found is None:
            raise ConditionError(f"The condition does not compile: {text}") from None
        line, column, detail = int(found.group(1)), int(found.group(2)), found.group(3).strip()
        raise ConditionError(
            f"Line {line}, column {column}: {detail}{_caret(source, line, column)}", line=line, column=column
        ) from None
    bound = set(_MACRO_BINDER.findall(source))
    for name in sorted(set(program.variables()) - CEL_VARIABLES - bound):
        line, column = _position_of(source, name)
        raise ConditionError(
            f"Line {line}, column {column}: unknown name '{name}' (a condition reads args, session, tool, "
            f"now and time){_caret(source, line, column)}",
            line=line,
            column=column,
        )
    for name in sorted(program.functions()):
        if name in CEL_FUNCTIONS or not name[:1].isalpha():
            continue
        line, column = _position_of(source, name)
        raise ConditionError(
            f"Line {line}, column {column}: unknown function '{name}'{_caret(source, line, column)}",
            line=line,
            column=column,
        )
    return program


# The document -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One asking step: who may decide, how many distinct approvers, the deadline (None: the
    default) and what it does when it passes."""

    groups: tuple[str, ...] = ()
    quorum: int = 1
    deadline_seconds: int | None = None
    on_deadline: str = DeadlineAction.DENY.value

    def seconds(self) -> int:
        return self.deadline_seconds or settings.APPROVAL_TIMEOUT_SECONDS

    def to_plan(self) -> dict[str, Any]:
        return {
            "groups": list(self.groups),
            "quorum": self.quorum,
            "deadline_seconds": self.seconds(),
            "on_deadline": self.on_deadline,
        }

    def describe(self) -> str:
        who = " or ".join(self.groups) or "any staff member"
        if self.quorum > 1:
            who = f"{self.quorum} distinct approvers from {who}"
        return f"{who} within {self.seconds()} s"


DEFAULT_STEPS = (Step(),)


def describe_steps(steps: tuple[Step, ...]) -> str:
    """'ask managers within 120 s, then escalate to …, then deny': an ask outcome in words."""
    text = "ask " + ", then escalate to ".join(step.describe() for step in steps)
    return f"{text}, then {steps[-1].on_deadline}"


@dataclass
class Rule:
    label: str
    outcome: str
    server: str = ""
    tool: str = "*"
    when: str = ""
    reason: str = ""
    description: str = ""
    enabled: bool = True
    steps: tuple[Step, ...] = DEFAULT_STEPS
    program: cel.Program | None = field(default=None, repr=False, compare=False)

    def matches_target(self, server_label: str, tool_name: str) -> bool:
        return (not self.server or self.server == server_label) and fnmatch.fnmatchcase(tool_name, self.tool)

    def describe(self) -> str:
        if self.outcome != ASK:
            return "allow at once" if self.outcome == ALLOW else "deny at once"
        return describe_steps(self.steps)

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
            out.update(_step_document(self.steps[0]))
            if len(self.steps) > 1:
                out["escalations"] = [_step_document(step) for step in self.steps[1:]]
        return out


def _step_document(step: Step) -> dict[str, Any]:
    out: dict[str, Any] = {"approvers": list(step.groups) or "any staff", "quorum": step.quorum}
    if step.deadline_seconds is not None:
        out["deadline_seconds"] = step.deadline_seconds
    out["on_deadline"] = step.on_deadline
    return out


RULE_KEYS = {"label", "description", "enabled", "server", "tool", "when", "outcome", "reason"}
STEP_KEYS = {"approvers", "quorum", "deadline_seconds", "on_deadline"}


def _parse_step(data: Any, where: str, errors: list[str], groups: set[str] | None) -> Step:
    if not isinstance(data, Mapping):
        errors.append(f"{where}: expected a mapping with approvers, quorum, deadline_seconds, on_deadline")
        return Step()
    unknown = set(data) - STEP_KEYS
    if unknown:
        errors.append(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    approvers = data.get("approvers", "any staff")
    if approvers in (None, "any staff", "*", []):
        names: tuple[str, ...] = ()
    elif isinstance(approvers, str):
        names = (approvers,)
    elif isinstance(approvers, list) and all(isinstance(a, str) and a for a in approvers):
        names = tuple(dict.fromkeys(approvers))
    else:
        errors.append(f"{where}.approvers: a group name, a list of group names, or 'any staff'")
        names = ()
    if groups is not None:
        for name in names:
            if name not in groups:
                errors.append(f"{where}.approvers: there is no group named {name!r}")
    quorum = data.get("quorum", 1)
    if not isinstance(quorum, int) or isinstance(quorum, bool) or not 1 <= quorum <= 20:
        errors.append(f"{where}.quorum: a whole number from 1 to 20")
        quorum = 1
    deadline = data.get("deadline_seconds")
    if deadline is not None and (
        not isinstance(deadline, int) or isinstance(deadline, bool) or not 1 <= deadline <= MAX_DEADLINE_SECONDS
    ):
        errors.append(f"{where}.deadline_seconds: a whole number of seconds from 1 to {MAX_DEADLINE_SECONDS}")
        deadline = None
    action = data.get("on_deadline", DeadlineAction.DENY.value)
    if action not in DeadlineAction.values:
        errors.append(f"{where}.on_deadline: one of {', '.join(DeadlineAction.values)}")
        action = DeadlineAction.DENY.value
    return Step(groups=names, quorum=quorum, deadline_seconds=deadline, on_deadline=action)


def parse_document(
    data: Any, *, servers: set[str] | None = None, groups: set[str] | None = None, check_names: bool = True
) -> list[Rule]:
    """The rules of a policy document (dict, as YAML loads it), compiled. Raises PolicyError
    listing every problem. With check_names the servers and groups named must exist now."""
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
    for index, raw in enumerate(raw_rules):
        where = f"rules[{index}]"
        if not isinstance(raw, Mapping):
            errors.append(f"{where}: expected a mapping")
            continue
        label = raw.get("label")
        if not isinstance(label, str) or not re.fullmatch(r"[-a-zA-Z0-9_]{1,100}", label):
            errors.append(f"{where}.label: required; letters, digits, - and _ (at most 100)")
            label = f"#{index}"
        else:
            where = f"{where} ({label})"
            if label in seen:
                errors.append(f"{where}.label: used by an earlier rule too")
            seen.add(label)
        unknown = set(raw) - RULE_KEYS - STEP_KEYS - {"escalations"}
        if unknown:
            errors.append(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        outcome = raw.get("outcome")
        if outcome not in (ALLOW, DENY, ASK):
            errors.append(f"{where}.outcome: one of allow, deny, ask")
            outcome = ASK
        server = raw.get("server", "*")
        if server in (None, "*", ""):
            server = ""
        elif not isinstance(server, str):
            errors.append(f"{where}.server: a registered server's label, or '*'")
            server = ""
        elif servers is not None and server not in servers:
            errors.append(f"{where}.server: no MCP server is registered as {server!r}")
        tool = raw.get("tool", "*")
        if not isinstance(tool, str) or not tool or len(tool) > 200:
            errors.append(f"{where}.tool: a tool name or pattern such as refund_* (at most 200 characters)")
            tool = "*"
        when = raw.get("when") or ""
        program = None
        if not isinstance(when, str):
            errors.append(f"{where}.when: a CEL expression as text")
            when = ""
        elif when.strip():
            try:
                program = compile_condition(when)
            except ConditionError as exc:
                errors.append(f"{where}.when: {exc}")
        reason = raw.get("reason") or ""
        if not isinstance(reason, str) or len(reason) > 500:
            errors.append(f"{where}.reason: text of at most 500 characters")
            reason = ""
        description = raw.get("description") or ""
        enabled = raw.get("enabled", True)
        if not isinstance(enabled, bool):
            errors.append(f"{where}.enabled: true or false")
            enabled = True
        steps: tuple[Step, ...] = DEFAULT_STEPS
        if outcome == ASK:
            first = {k: raw[k] for k in STEP_KEYS if k in raw}
            escalations = raw.get("escalations") or []
            if not isinstance(escalations, list) or len(escalations) > MAX_STEPS:
                errors.append(f"{where}.escalations: a list of at most {MAX_STEPS} steps")
                escalations = []
            steps = tuple(
                [_parse_step(first, where, errors, groups)]
                + [_parse_step(s, f"{where}.escalations[{i}]", errors, groups) for i, s in enumerate(escalations)]
            )
            for i, step in enumerate(steps):
                last = i == len(steps) - 1
                step_where = where if i == 0 else f"{where}.escalations[{i - 1}]"
                if step.on_deadline == DeadlineAction.ESCALATE and last:
                    errors.append(f"{step_where}.on_deadline: escalate needs a next step under escalations")
                if step.on_deadline != DeadlineAction.ESCALATE and not last:
                    errors.append(
                        f"{step_where}.on_deadline: the steps after it are never reached (set it to escalate)"
                    )
        elif set(raw) & (STEP_KEYS | {"escalations"}):
            errors.append(f"{where}: approvers, quorum, deadline and escalations apply to outcome ask only")
        rules.append(
            Rule(
                label=label,
                outcome=outcome,
                server=server,
                tool=tool,
                when=when.strip(),
                reason=reason,
                description=str(description),
                enabled=enabled,
                steps=steps,
                program=program,
            )
        )
    if errors:
        raise PolicyError(errors)
    return rules


def document(rules: Iterable[Rule]) -> dict[str, Any]:
    return {"format": DOCUMENT_FORMAT, "rules": [rule.to_document() for rule in rules]}


def step_of(groups: Iterable[Any], quorum: int, deadline_seconds: int | None, on_deadline: str) -> Step:
    """A step from a row's (or a form's) fields; `groups` are Group objects."""
    return Step(
        groups=tuple(sorted(g.name for g in groups)),
        quorum=quorum,
        deadline_seconds=deadline_seconds,
        on_deadline=on_deadline,
    )


def rule_from_row(row: PolicyRule) -> Rule:
    """A rule row (with its groups and escalation steps) as a Rule, not compiled."""
    steps = [step_of(row.groups.all(), row.quorum, row.deadline_seconds, row.on_deadline)]
    steps += [step_of(s.groups.all(), s.quorum, s.deadline_seconds, s.on_deadline) for s in row.escalations.all()]
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
    )


def rules_from_rows() -> list[Rule]:
    """The rules as the admin's rows hold them now (not compiled: see parse_document)."""
    rows = PolicyRule.objects.prefetch_related("groups", "escalations__groups").order_by("position", "pk")
    return [rule_from_row(row) for row in rows]


def write_rows(rules: list[Rule]) -> None:
    """Replace every rule row with `rules` (inside the caller's transaction)."""
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
            )
            esc.groups.set([groups[name] for name in step.groups])


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed between two documents, in words, one line per change."""
    before = {r["label"]: (i, r) for i, r in enumerate(old.get("rules") or [])}
    after = {r["label"]: (i, r) for i, r in enumerate(new.get("rules") or [])}
    changes = []
    for label, (_i, rule) in after.items():
        if label not in before:
            changes.append(f"added rule {label}: {json.dumps(rule, sort_keys=True)}")
    for label in before:
        if label not in after:
            changes.append(f"removed rule {label}")
    order_before = [label for label in before if label in after]
    order_after = [label for label in after if label in before]
    for label, (_i, rule) in after.items():
        if label not in before:
            continue
        old_rule = before[label][1]
        for key in sorted(set(old_rule) | set(rule)):
            if old_rule.get(key) != rule.get(key):
                changes.append(f"rule {label}: {key} {json.dumps(old_rule.get(key))} → {json.dumps(rule.get(key))}")
    if order_before != order_after:
        changes.append("order: " + ", ".join(order_after))
    return changes


def load_yaml(text: str) -> Any:
    """Parse a YAML policy file; a syntax error becomes a PolicyError naming line and column."""
    if len(text) > 2_000_000:
        raise PolicyError(["the file is larger than 2 MB"])
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError([f"not valid YAML: {where}{problem}"]) from None


YAML_HEADER = """\
# Countersign approval policy (docs/policies.md). Rules are tried in order; the first whose
# server, tool and condition (`when`, in CEL) match decides: allow, deny, or ask. A call no
# rule matches asks any staff member and is denied at the deadline (APPROVAL_TIMEOUT_SECONDS).
"""


def dump_yaml(doc: dict[str, Any]) -> str:
    return YAML_HEADER + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)


def current_document() -> dict[str, Any]:
    """The latest version's document (what routes requests now), or an empty policy."""
    doc = PolicyVersion.objects.order_by("-number").values_list("document", flat=True).first()
    return doc if doc is not None else document([])


# Routing ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """What a condition can see of one tool call."""

    server_label: str
    tool_name: str
    arguments: str
    session_label: str = ""
    session_kind: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    at: datetime | None = None


def call_context(call: Call) -> dict[str, Any]:
    """The CEL variables: `args` (the parsed arguments; {} when they are not a JSON object),
    `session` (the token's metadata, plus label and kind), `tool` (name, server), `now` (a
    timestamp) and `time` (the hotel's local time: hour, minute, weekday 1=Monday…7=Sunday,
    day name, date)."""
    try:
        args = json.loads(call.arguments) if call.arguments else {}
    except ValueError:
        args = {}
    if not isinstance(args, dict):
        args = {}
    now = call.at or timezone.now()
    local = timezone.localtime(now)
    return {
        "args": args,
        "session": {**dict(call.metadata or {}), "label": call.session_label, "kind": call.session_kind},
        "tool": {"name": call.tool_name, "server": call.server_label},
        "now": now,
        "time": {
            "hour": local.hour,
            "minute": local.minute,
            "weekday": local.isoweekday(),
            "day": local.strftime("%A").lower(),
            "date": local.date().isoformat(),
        },
    }


@dataclass(frozen=True)
class Routing:
    """What the policy says about one call."""

    outcome: str
    rule: str  # "" = the built-in default
    version: int | None
    reason: str = ""
    steps: tuple[Step, ...] = DEFAULT_STEPS
    note: str = ""  # why the rule's own outcome was not used (condition error, drift)

    def plan(self) -> dict[str, Any]:
        return {"stages": [step.to_plan() for step in self.steps]} if self.outcome == ASK else {}

    def summary(self) -> str:
        rule = f"rule {self.rule}" if self.rule else "the default"
        if self.outcome == ASK:
            return f"{describe_steps(self.steps)} ({rule})"
        return f"{self.outcome} at once ({rule})"


class Policy:
    """A parsed, compiled policy document; `version` None is the built-in default alone."""

    def __init__(self, rules: list[Rule], version: int | None) -> None:
        self.rules = rules
        self.version = version

    def route(self, call: Call, *, drifted: bool = False) -> Routing:
        context: dict[str, Any] | None = None
        for rule in self.rules:
            if not rule.enabled or not rule.matches_target(call.server_label, call.tool_name):
                continue
            if rule.program is not None:
                context = context or call_context(call)
                try:
                    result = rule.program.execute(context)
                except Exception as exc:  # KeyError for a missing argument, TypeError, …
                    # Fail closed: a condition that cannot be evaluated never lets a call run, nor
                    # skips to a later (maybe more permissive) rule. A person decides.
                    return Routing(
                        ASK,
                        rule.label,
                        self.version,
                        note=f"the condition of rule {rule.label} could not be evaluated ({_short(exc)}): asking",
                    )
                if not isinstance(result, bool):
                    return Routing(
                        ASK,
                        rule.label,
                        self.version,
                        note=f"the condition of rule {rule.label} gave {result!r}, not true or false: asking",
                    )
                if not result:
                    continue
            return self._apply(rule, drifted)
        return Routing(ASK, "", self.version)

    def _apply(self, rule: Rule, drifted: bool) -> Routing:
        if drifted and rule.outcome == ALLOW:
            return Routing(
                ASK,
                rule.label,
                self.version,
                note="the tool's definition changed since it was reviewed: auto-approval suspended, asking",
            )
        steps = rule.steps if rule.outcome == ASK else DEFAULT_STEPS
        note = ""
        if drifted and any(step.on_deadline == DeadlineAction.APPROVE for step in steps):
            steps = tuple(
                Step(s.groups, s.quorum, s.deadline_seconds, DeadlineAction.DENY.value)
                if s.on_deadline == DeadlineAction.APPROVE
                else s
                for s in steps
            )
            note = "the tool's definition changed since it was reviewed: the deadline denies instead of approving"
        return Routing(rule.outcome, rule.label, self.version, reason=rule.reason, steps=steps, note=note)

    def static_outcome(self, server_label: str, tool_name: str, *, drifted: bool = False) -> str:
        """What the rules say about this tool whatever its arguments, session or time: allow or
        deny when every call is decided the same way at once, else ask."""
        possible = set()
        for rule in self.rules:
            if not rule.enabled or not rule.matches_target(server_label, tool_name):
                continue
            outcome = ASK if (drifted and rule.outcome == ALLOW) else rule.outcome
            possible.add(outcome)
            if rule.program is None:
                break
        else:
            possible.add(ASK)
        return possible.pop() if len(possible) == 1 else ASK


def _short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError):
        text = f"no {text} in the call"
    return text.splitlines()[0][:200]


_cache_lock = threading.Lock()
_cache: dict[tuple[int, datetime], Policy] = {}


def current() -> Policy:
    """The latest version's policy (compiled once per process and version)."""
    latest = PolicyVersion.objects.order_by("-number").values_list("number", "created_at").first()
    if latest is None:
        return Policy([], None)
    number = latest[0]
    # Keyed by the creation time too: a version number can come back (a test's rolled-back
    # transaction, a restored database) with another document.
    policy = _cache.get(latest)
    if policy is None:
        doc = PolicyVersion.objects.values_list("document", flat=True).get(number=number)
        # Checked when it was saved; the names are not re-checked (a group renamed since keeps
        # routing to its old name, which matches nobody but superusers: see docs/policies.md).
        policy = Policy(parse_document(doc, check_names=False), number)
        with _cache_lock:
            if len(_cache) > 32:
                _cache.clear()
            _cache[latest] = policy
    return policy


def policy_for_version(number: int | None) -> Policy:
    if number is None:
        return Policy([], None)
    doc = PolicyVersion.objects.values_list("document", flat=True).get(number=number)
    return Policy(parse_document(doc, check_names=False), number)


def drifted_tools(server_label: str) -> set[str]:
    return set(McpTool.objects.drifted().filter(server__label=server_label).values_list("name", flat=True))


def is_drifted(server_label: str, tool_name: str) -> bool:
    return McpTool.objects.drifted().filter(server__label=server_label, name=tool_name).exists()


# What OpenAI receives ---------------------------------------------------------------------------


def compile_entry(server: McpServer, policy: Policy, tools: Iterable[McpTool]) -> dict[str, Any]:
    """The server's `mcp` tool entry with the rules compiled in: tools every call of which the
    rules allow go in require_approval.never (no round trip), tools always denied are left out
    of allowed_tools, the rest ask. Only tools the registry knows can be named (McpTool rows,
    which a probe creates); an unknown tool asks, and the policy decides when
    it does. Contains secrets."""
    entry = server.to_tool()
    never, denied, known = [], [], []
    for tool in tools:
        if tool.removed_at is not None:
            continue
        known.append(tool.name)
        outcome = policy.static_outcome(server.label, tool.name, drifted=tool.drifted_at is not None)
        if outcome == ALLOW:
            never.append(tool.name)
        elif outcome == DENY:
            denied.append(tool.name)
    if denied:
        entry["allowed_tools"] = sorted(set(known) - set(denied))
    if server.require_approval == McpServer.RequireApproval.NEVER:
        return entry  # the admin chose to trust the whole server: OpenAI never asks
    # With only `never` given, every other tool needs approval (section 3.1, simulator too).
    entry["require_approval"] = {"never": {"tool_names": sorted(never)}} if never else "always"
    return entry


def upstream_tools(servers: Iterable[McpServer] | None = None) -> list[dict[str, Any]]:
    """The compiled `mcp` entries of these servers (default: every enabled one). Secrets inside."""
    chosen = [s for s in (servers if servers is not None else McpServer.objects.filter(enabled=True)) if s.enabled]
    if not chosen:
        return []
    policy = current()
    by_server: dict[int, list[McpTool]] = {s.pk: [] for s in chosen}
    for tool in McpTool.objects.filter(server__in=[s.pk for s in chosen]).order_by("name"):
        by_server[tool.server_id].append(tool)
    return [compile_entry(server, policy, by_server[server.pk]) for server in chosen]


def masked(entry: dict[str, Any]) -> dict[str, Any]:
    """A compiled entry fit for an admin page: secrets replaced by bullets."""
    out = dict(entry)
    if out.get("authorization"):
        out["authorization"] = "••••••••"
    if out.get("headers"):
        out["headers"] = {name: "••••••••" for name in out["headers"]}
    return out


# Dry run ----------------------------------------------------------------------------------------


@dataclass
class DryRunRow:
    request: ApprovalRequest
    recorded: str
    happened: str
    draft: str
    changed: bool


@dataclass
class DryRunReport:
    days: int
    total: int
    rows: list[DryRunRow]
    truncated: bool

    @property
    def changed(self) -> list[DryRunRow]:
        return [row for row in self.rows if row.changed]


def _routing_key(outcome: str, groups: Iterable[Any], quorum: int) -> tuple[Any, ...]:
    return (outcome,) if outcome != ASK else (ASK, tuple(sorted(groups)), quorum)


def _happened(req: ApprovalRequest) -> str:
    if req.status == ApprovalRequest.Status.PENDING:
        return "still pending"
    by = f" by {req.decided_by_label}" if req.decided_by_label else ""
    return f"{req.get_status_display().lower()}{by}"


def dry_run(policy: Policy, *, days: int, now: datetime | None = None, limit: int = 5000) -> DryRunReport:
    """Replay `policy` on the requests recorded in the last `days` days (at their own time,
    with their own session): per request what was routed then, what happened, what the draft
    would do, and whether that differs (outcome, groups or quorum)."""
    now = now or timezone.now()
    qs = (
        ApprovalRequest.objects.filter(created_at__gte=now - timedelta(days=days))
        .select_related("session")
        .order_by("-created_at", "-pk")
    )
    total = qs.count()
    rows = []
    for req in qs[:limit]:
        session = req.session
        routing = policy.route(
            Call(
                server_label=req.server_label,
                tool_name=req.tool_name,
                arguments=req.arguments,
                session_label=session.label,
                session_kind=session.kind,
                metadata=session.metadata or {},
                at=req.created_at,
            )
        )
        outcome = req.policy_outcome or ASK
        stages = (req.plan or {}).get("stages") or []
        first = stages[0] if stages else {"groups": [], "quorum": 1}
        recorded_key = _routing_key(outcome, first.get("groups") or [], int(first.get("quorum") or 1))
        first_step = routing.steps[0]
        draft_key = _routing_key(routing.outcome, first_step.groups, first_step.quorum)
        recorded = f"{outcome} ({'rule ' + req.rule_label if req.rule_label else 'the default'})"
        if outcome == ASK:
            who = " or ".join(first.get("groups") or []) or "any staff"
            quorum = int(first.get("quorum") or 1)
            recorded = f"ask {who}{f' ({quorum} approvers)' if quorum > 1 else ''} " + recorded[4:]
        rows.append(
            DryRunRow(
                request=req,
                recorded=recorded,
                happened=_happened(req),
                draft=routing.summary() + (f"; {routing.note}" if routing.note else ""),
                changed=recorded_key != draft_key,
            )
        )
    return DryRunReport(days=days, total=total, rows=rows, truncated=total > limit)
