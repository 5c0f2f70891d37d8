"""The queries on the hot paths of a decision: counted, so that one more is a decision someone
made and not an accident (this test fails when a count grows: update it with the reason), and, on
PostgreSQL, each served by an index (EXPLAIN with sequential scans switched off still shows a
"Seq Scan" when no index can serve a query)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from approvals import services
from approvals.models import ApprovalRequest

# What each hot path costs today, in statements (savepoints and transaction control included).
BUDGET = {
    # the policy version, the tool's drift, the server, the guest's last line (the request's turn),
    # the live grants that may answer it; the insert and its two audit rows under the chain head
    # (lock, insert, head update) in a savepoint
    "open_request": 11,
    # the decider's groups; the conditional UPDATE; its audit row under the chain head; the row read back
    "decide": 6,
    # the conditional UPDATE and what it set; its audit row under the chain head, in a savepoint
    "mark_decision_sent": 7,
}
# On PostgreSQL an append to the audit chain is one statement (countersign_audit_append, audit
# migration 0003: lock, insert, head update in one), not three: two fewer on each path.
BUDGET_POSTGRESQL = {"open_request": 9, "decide": 4, "mark_decision_sent": 5}
# Tables small enough, and read by primary key or whole, that a sequential scan is the right plan.
SMALL_TABLES = {"approvals_auditchainhead", "django_content_type", "auth_group", "auth_permission"}


def run(action: Callable[[], Any]) -> list[str]:
    with CaptureQueriesContext(connection) as ctx:
        action()
    return [q["sql"] for q in ctx.captured_queries]


def seq_scans(sql: str) -> list[str]:
    """Relations a PostgreSQL plan of `sql` reads by sequential scan although scans are off."""
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if node.get("Node Type") == "Seq Scan" and node.get("Relation Name") not in SMALL_TABLES:
            found.append(str(node.get("Relation Name")))
        for child in node.get("Plans", []):
            walk(child)

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
        (plan,) = cursor.fetchone()
        walk((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
    return found


def explainable(sql: str) -> bool:
    head = sql.lstrip().split(None, 1)[0].upper()
    return head in ("SELECT", "UPDATE", "DELETE")


@pytest.fixture
def hot_paths(make_request, alice, effects) -> dict[str, list[str]]:
    paths: dict[str, list[str]] = {}
    made: list[ApprovalRequest] = []
    paths["open_request"] = run(lambda: made.append(make_request()))
    req = made[0]
    paths["decide"] = run(lambda: services.decide(req, by=alice, approve=True, reason="ok"))
    decided = ApprovalRequest.objects.get(pk=req.pk)
    paths["mark_decision_sent"] = run(lambda: services.mark_decision_sent(decided))
    return paths


def test_the_hot_paths_cost_what_they_did(hot_paths):
    counts = {name: len(queries) for name, queries in hot_paths.items()}
    budget = BUDGET_POSTGRESQL if connection.vendor == "postgresql" else BUDGET
    assert counts == budget, "\n\n".join(f"{name}:\n" + "\n".join(q) for name, q in hot_paths.items())


def test_every_query_of_the_hot_paths_is_served_by_an_index(hot_paths):
    if connection.vendor != "postgresql":
        pytest.skip("the plans are checked on PostgreSQL (CI's database)")
    for name, queries in hot_paths.items():
        for sql in queries:
            if explainable(sql):
                assert not seq_scans(sql), f"{name}: sequential scan in\n{sql}"


def test_the_index_check_sees_a_query_no_index_serves(db):
    if connection.vendor != "postgresql":
        pytest.skip("the plans are checked on PostgreSQL (CI's database)")
    assert seq_scans("SELECT id FROM approvals_approvalrequest WHERE reason = 'x'") == ["approvals_approvalrequest"]
