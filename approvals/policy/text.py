"""The policy document as text: YAML in and out, and what changed between two documents in
words (the changes a PolicyVersion records). Pure."""

from __future__ import annotations

import json
from typing import Any

import yaml

from approvals.policy.document import PolicyError


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


# A policy of MAX_RULES rules has a few thousand values. YAML aliases let a small file stand
# for a huge one (nine levels of ten aliases are 10^9 strings once walked: the "billion
# laughs"), and PyYAML's parser recurses once per level of nesting: both are refused here,
# before anything walks the document.
MAX_YAML_VALUES = 100_000
MAX_YAML_DEPTH = 64


def _check_size(doc: Any) -> None:
    """Count the document's values as anything reading it would (an alias counts each time it is
    used), without recursion, and stop at the first limit passed."""
    seen = 0
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_YAML_VALUES:
            raise PolicyError([f"the document has more than {MAX_YAML_VALUES:,} values (aliases count each time used)"])
        if depth > MAX_YAML_DEPTH:
            raise PolicyError([f"the document nests deeper than {MAX_YAML_DEPTH} levels"])
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for kv in value.items() for v in kv)
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def load_yaml(text: str) -> Any:
    """Parse a YAML policy file; a syntax error becomes a PolicyError naming line and column."""
    if len(text) > 2_000_000:
        raise PolicyError(["the file is larger than 2 MB"])
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError([f"not valid YAML: {where}{problem}"]) from None
    except RecursionError:
        raise PolicyError([f"the document nests deeper than {MAX_YAML_DEPTH} levels"]) from None
    _check_size(doc)
    return doc


YAML_HEADER = """\
# Countersign approval policy (docs/policies.md). Rules are tried in order; the first whose
# server, tool and condition (`when`, in CEL) match decides: allow, deny, or ask. A call no
# rule matches asks any staff member and is denied at the deadline (APPROVAL_TIMEOUT_SECONDS).
"""


def dump_yaml(doc: dict[str, Any]) -> str:
    return YAML_HEADER + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)
