"""Policy YAML imports, hostile: any text, the valid document mutated, YAML's own weapons
(aliases that multiply, deep nesting, tags, duplicate keys, huge scalars).

Invariant: `import_policies` publishes a version or raises PolicyError listing what is wrong;
nothing else escapes, and a refused import changes nothing (rules, versions, audit rows)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from django.contrib.auth.models import Group
from hypothesis import given
from hypothesis import strategies as st

from approvals import policy, services
from approvals.models import PolicyRule, PolicyVersion
from audit.models import AuditEvent
from tests.approvals.test_policy_services import POLICY
from tests.hostile import strategies, surfaces

pytestmark = pytest.mark.django_db

VALID = yaml.safe_load(POLICY)


def alias_bomb(levels: int, width: int, where: str) -> str:
    """The billion laughs in YAML: each anchor is a list of `width` aliases of the one before."""
    lines = ['a0: &a0 ["lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    top = f"*a{levels - 1}"
    if where == "rules":
        lines.append(f"rules: {top}")
    else:
        lines.append(f"rules:\n  - {{label: bomb, tool: x, outcome: allow, {where}: {top}}}")
    return "\n".join(lines) + "\n"


def _mutated_documents() -> st.SearchStrategy[str]:
    doc = st.just(VALID)
    return st.one_of(
        strategies.wrong_typed(doc).map(lambda text: yaml.safe_dump(json.loads(text))),
        strategies.huge_strings(doc).map(lambda text: yaml.safe_dump(json.loads(text))),
        st.builds(lambda n: "rules:\n" + "  - " * 0 + "[" * n + "]" * n, st.integers(100, 20_000)),
        st.builds(lambda n: "rules:\n  - label: " + "{a: " * n + "1" + "}" * n, st.integers(100, 5_000)),
        st.builds(
            alias_bomb,
            st.integers(2, 9),
            st.integers(2, 10),
            st.sampled_from(["rules", "tool", "when", "approvers", "label"]),
        ),
        st.sampled_from(
            [
                "!!python/object/apply:os.system ['true']",
                "rules: !!binary aGVsbG8=",
                "rules:\n  - label: a\n    label: b\n    tool: x\n    outcome: allow\n",
                "rules: [{label: a, tool: x, outcome: allow, deadline_seconds: 1e400}]",
                "rules: [{label: a, tool: x, outcome: ask, quorum: 99999999999999999999999}]",
                "rules: [{label: ~, tool: ~, outcome: ~}]",
                "format: 2\nrules: []",
                "rules: []",
                "%YAML 1.1\n---\nrules: []\n---\nrules: []",
                "\x00",
                "rules: [{label: a, tool: x, outcome: allow, when: '" + "(" * 500 + "'}]",
                "rules: [{label: a, tool: x, outcome: allow, when: 'args.a" + ".b" * 5000 + " > 1'}]",
            ]
        ),
        st.text(),
    )


@pytest.fixture
def baseline(db: None, alice: Any) -> None:
    for name in ("managers", "general-managers", "front-desk"):
        Group.objects.create(name=name)
    services.register_mcp_server(label="hotel", url="https://mcp.hotel.example/mcp")
    services.import_policies(POLICY, by=None, source="baseline")


def snapshot() -> tuple[list[Any], int, int]:
    return list(PolicyRule.objects.order_by("pk").values()), PolicyVersion.objects.count(), AuditEvent.objects.count()


@given(text=_mutated_documents())
def test_a_policy_import_publishes_or_names_what_is_wrong(baseline: None, text: str) -> None:
    before = snapshot()
    try:
        services.import_policies(text, by=None, source="hostile")
    except policy.PolicyError as exc:
        assert exc.errors and all(isinstance(e, str) for e in exc.errors), exc.errors
        assert snapshot() == before
    else:
        services.import_policies(POLICY, by=None, source="back to baseline")
    surfaces.ran("policy YAML imports")


def test_an_alias_bomb_is_refused_quickly(baseline: None) -> None:
    """Nine levels of ten aliases are 10^9 strings once expanded: refused, not expanded."""
    before = snapshot()
    with pytest.raises(policy.PolicyError):
        services.import_policies(alias_bomb(9, 10, "rules"), by=None, source="bomb")
    assert snapshot() == before
