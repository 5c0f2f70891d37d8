"""The policy engine: which tool call needs whose approval (docs/policies.md).

Routing a call through the rules (first match wins, conditions in CEL, failing closed), and
compiling the rules into the `mcp` tool entries OpenAI receives (require_approval, allowed_tools).
After the last rule comes the built-in default: ask any staff member, APPROVAL_TIMEOUT_SECONDS,
then deny, so a fresh install works before anyone writes a rule.

Reads the latest PolicyVersion and the registry; writes nothing (approvals/services.py does).
"""

from __future__ import annotations

import fnmatch
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import cel
from django.utils import timezone

from approvals.models import DeadlineAction, McpServer, McpTool, PolicyVersion
from approvals.policy.conditions import compile_condition
from approvals.policy.document import (
    ALLOW,
    ASK,
    DEFAULT_GRANTS,
    DEFAULT_STEPS,
    DENY,
    NO_REQUIREMENTS,
    GrantLimits,
    Requires,
    Rule,
    Step,
    describe_steps,
    document,
    parse_document,
)


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
    requires: Requires = NO_REQUIREMENTS
    grants: GrantLimits = DEFAULT_GRANTS
    holding_line: bool = True

    def plan(self) -> dict[str, Any]:
        """What the request keeps of its routing (frozen when it opens): the steps, what a
        person must give to decide it (its rule's requirements), what they may grant, and
        `holding_line: false` when its rule keeps the guest's wait silent (realtime_bridge/holding.py)."""
        if self.outcome != ASK:
            return {}
        plan: dict[str, Any] = {
            "stages": [step.to_plan() for step in self.steps],
            "requires": self.requires.to_plan(),
            "grants": self.grants.to_plan(),
        }
        if not self.holding_line:
            plan["holding_line"] = False
        return plan

    def summary(self) -> str:
        rule = f"rule {self.rule}" if self.rule else "the default"
        if self.outcome == ASK:
            return f"{describe_steps(self.steps)} ({rule})"
        return f"{self.outcome} at once ({rule})"


def _targets(rule: Rule, server_label: str, tool_name: str) -> bool:
    return (
        rule.enabled and (not rule.server or rule.server == server_label) and fnmatch.fnmatchcase(tool_name, rule.tool)
    )


class Policy:
    """Rules with their conditions compiled; `version` None is the built-in default alone (or a
    draft). Raises ConditionError for a condition that does not compile (parse_document has
    refused it already for every policy that is saved)."""

    def __init__(self, rules: list[Rule], version: int | None) -> None:
        self.rules = rules
        self.version = version
        self._programs: list[cel.Program | None] = [compile_condition(r.when) if r.when else None for r in rules]

    def route(self, call: Call, *, drifted: bool = False) -> Routing:
        context: dict[str, Any] | None = None
        for rule, program in zip(self.rules, self._programs, strict=True):
            if not _targets(rule, call.server_label, call.tool_name):
                continue
            if program is not None:
                context = context or call_context(call)
                try:
                    result = program.execute(context)
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
                Step(s.groups, s.quorum, s.deadline_seconds, DeadlineAction.DENY.value, s.escalate_when_nobody_online)
                if s.on_deadline == DeadlineAction.APPROVE
                else s
                for s in steps
            )
            note = "the tool's definition changed since it was reviewed: the deadline denies instead of approving"
        return Routing(
            rule.outcome,
            rule.label,
            self.version,
            reason=rule.reason,
            steps=steps,
            note=note,
            requires=rule.requires,
            grants=rule.grants,
            holding_line=rule.holding_line,
        )

    def static_outcome(self, server_label: str, tool_name: str, *, drifted: bool = False) -> str:
        """What the rules say about this tool whatever its arguments, session or time: allow or
        deny when every call is decided the same way at once, else ask."""
        possible = set()
        for rule, program in zip(self.rules, self._programs, strict=True):
            if not _targets(rule, server_label, tool_name):
                continue
            outcome = ASK if (drifted and rule.outcome == ALLOW) else rule.outcome
            possible.add(outcome)
            if program is None:
                break
        else:
            possible.add(ASK)
        return possible.pop() if len(possible) == 1 else ASK


def _short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError):
        text = f"no {text} in the call"
    return text.splitlines()[0][:200]


# The policy in force ----------------------------------------------------------------------------

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


def current_document() -> dict[str, Any]:
    """The latest version's document (what routes requests now), or an empty policy."""
    doc = PolicyVersion.objects.order_by("-number").values_list("document", flat=True).first()
    return doc if doc is not None else document([])


def is_drifted(server_label: str, tool_name: str) -> bool:
    return McpTool.objects.drifted().filter(server__label=server_label, name=tool_name).exists()


# What OpenAI receives ---------------------------------------------------------------------------


def compile_entry(
    server: McpServer, policy: Policy, tools: Iterable[McpTool], *, gateway_token: str = ""
) -> dict[str, Any]:
    """The server's `mcp` tool entry with the rules compiled in: tools every call of which the
    rules allow go in require_approval.never (no round trip), tools always denied are left out
    of allowed_tools, the rest ask. Only tools the registry knows can be named (McpTool rows,
    which a probe creates); an unknown tool asks, and the policy decides when
    it does. Contains secrets. A server in gateway mode names Countersign's gateway instead, with
    `gateway_token` (the session's capability token) as its authorization."""
    entry = server.to_tool(gateway_token=gateway_token)
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


def upstream_tools(
    servers: Iterable[McpServer] | None = None, *, gateway_tokens: Mapping[int, str] | None = None
) -> list[dict[str, Any]]:
    """The compiled `mcp` entries of these servers (default: every enabled one). Secrets inside.
    `gateway_tokens`: server pk → the session's capability token, for servers in gateway mode."""
    chosen = [s for s in (servers if servers is not None else McpServer.objects.filter(enabled=True)) if s.enabled]
    if not chosen:
        return []
    policy = current()
    by_server: dict[int, list[McpTool]] = {s.pk: [] for s in chosen}
    for tool in McpTool.objects.filter(server__in=[s.pk for s in chosen]).order_by("name"):
        by_server[tool.server_id].append(tool)
    tokens = gateway_tokens or {}
    return [
        compile_entry(server, policy, by_server[server.pk], gateway_token=tokens.get(server.pk, ""))
        for server in chosen
    ]


def masked(entry: dict[str, Any]) -> dict[str, Any]:
    """A compiled entry fit for an admin page: secrets replaced by bullets."""
    out = dict(entry)
    if out.get("authorization"):
        out["authorization"] = "••••••••"
    if out.get("headers"):
        out["headers"] = {name: "••••••••" for name in out["headers"]}
    return out
