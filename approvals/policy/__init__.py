"""The approval policy (docs/policies.md): which tool call needs whose approval.

- conditions: CEL conditions, compiled and checked.
- shapes: rules and steps as values, and the document they convert to. Pure.
- document: the one validator of a policy document (YAML import, admin forms). Pure.
- engine: routing a call, and compiling the rules into what OpenAI receives. Reads only.
- text: YAML in and out, and a document's changes in words. Pure.
- dryrun: replaying a draft on the recorded requests. Reads only.
- text: the document as YAML, and a diff of two documents in words. Pure.
- rows: the rules <-> the PolicyRule rows; write_rows writes (for services.publish_policy).

The names below are the public ones; importers use `from approvals import policy`.
"""

from approvals.policy.conditions import (
    CEL_FUNCTIONS,
    CEL_VARIABLES,
    MAX_CONDITION_CHARS,
    ConditionError,
    compile_condition,
)
from approvals.policy.document import (
    ALLOW,
    ASK,
    DEAD_END,
    DEFAULT_GRANTS,
    DEFAULT_STEPS,
    DENY,
    DOCUMENT_FORMAT,
    GRANT_SCOPES,
    MAX_DEADLINE_SECONDS,
    MAX_RULES,
    MAX_STEPS,
    NO_REQUIREMENTS,
    REQUIRES_KEYS,
    UNREACHED,
    GrantLimits,
    PolicyError,
    Requires,
    RequiresEntry,
    Rule,
    RuleEntry,
    Step,
    StepEntry,
    chain_problems,
    describe_steps,
    document,
    parse_document,
)
from approvals.policy.dryrun import DryRunReport, DryRunRow, dry_run, dry_run_yaml, report_lines
from approvals.policy.engine import (
    Call,
    Policy,
    Routing,
    call_context,
    compile_entry,
    current,
    current_document,
    is_drifted,
    masked,
    upstream_tools,
)
from approvals.policy.rows import grants_of, requires_of, rule_from_row, rules_from_rows, step_of, write_rows
from approvals.policy.text import diff, dump_yaml, load_yaml

__all__ = [
    "ALLOW",
    "ASK",
    "CEL_FUNCTIONS",
    "CEL_VARIABLES",
    "DEAD_END",
    "DEFAULT_GRANTS",
    "DEFAULT_STEPS",
    "DENY",
    "DOCUMENT_FORMAT",
    "GRANT_SCOPES",
    "MAX_CONDITION_CHARS",
    "MAX_DEADLINE_SECONDS",
    "MAX_RULES",
    "MAX_STEPS",
    "NO_REQUIREMENTS",
    "REQUIRES_KEYS",
    "UNREACHED",
    "Call",
    "ConditionError",
    "DryRunReport",
    "DryRunRow",
    "GrantLimits",
    "Policy",
    "PolicyError",
    "Requires",
    "RequiresEntry",
    "Routing",
    "Rule",
    "RuleEntry",
    "Step",
    "StepEntry",
    "call_context",
    "chain_problems",
    "compile_condition",
    "compile_entry",
    "current",
    "current_document",
    "describe_steps",
    "diff",
    "document",
    "dry_run",
    "dry_run_yaml",
    "dump_yaml",
    "grants_of",
    "is_drifted",
    "load_yaml",
    "masked",
    "parse_document",
    "report_lines",
    "requires_of",
    "rule_from_row",
    "rules_from_rows",
    "step_of",
    "upstream_tools",
    "write_rows",
]
