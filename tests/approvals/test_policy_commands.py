"""export_policies and import_policies: the whole policy as YAML, all or nothing, and the dry run."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError

from approvals import policy, services
from approvals.models import AuditKind, PolicyRule, PolicyVersion
from audit.models import AuditEvent

POLICY = """
rules:
  - label: no-doors
    tool: unlock_door
    outcome: deny
    reason: Doors are opened by the front desk in person.
  - label: small-refunds
    server: hotel
    tool: refund_*
    when: args.amount < 50 && session.room.startsWith("12")
    outcome: allow
  - label: refunds
    server: hotel
    tool: refund_*
    outcome: ask
    approvers: [front-desk]
    deadline_seconds: 60
    on_deadline: escalate
    escalations:
      - approvers: managers
        quorum: 2
        deadline_seconds: 120
        on_deadline: deny
"""


@pytest.fixture
def hotel(db):
    for name in ("front-desk", "managers"):
        Group.objects.create(name=name)
    server, _ = services.register_mcp_server(label="hotel", url="https://mcp.hotel.example/mcp")
    return server


@pytest.fixture
def published(hotel):
    return services.import_policies(POLICY, by=None, source="test")


def run(*args: str, stdin: str | None = None, monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def snapshot() -> tuple[list[tuple[str, str]], list[int], int]:
    """What an import may change: the rule rows, the versions and the audit rows."""
    rows = list(PolicyRule.objects.order_by("position").values_list("label", "condition"))
    return rows, list(PolicyVersion.objects.values_list("number", flat=True)), AuditEvent.objects.count()


def test_export_prints_the_latest_version_as_yaml(published):
    out, _ = run("export_policies")

    assert out.startswith("# Countersign approval policy")
    assert policy.load_yaml(out) == published.document


def test_export_with_no_policy_prints_an_empty_one(db):
    out, _ = run("export_policies")

    assert policy.load_yaml(out) == {"format": 1, "rules": []}


def test_export_then_import_is_no_change(published, tmp_path: Path):
    target = tmp_path / "policy.yaml"
    out, _ = run("export_policies", "--output", str(target))
    before = snapshot()

    assert out.strip() == f"Wrote policy version 1 to {target}."
    imported, _ = run("import_policies", str(target))

    assert imported.strip() == "No change"
    assert snapshot() == before


def test_import_publishes_a_version_and_says_what_changed(published, tmp_path: Path):
    source = tmp_path / "policy.yaml"
    source.write_text(POLICY.replace("deadline_seconds: 60", "deadline_seconds: 90"), encoding="utf-8")

    out, _ = run("import_policies", str(source))

    assert out.splitlines() == ["Policy version 2: 1 change", "  rule refunds: deadline_seconds 60 → 90"]
    version = PolicyVersion.objects.get(number=2)
    assert (version.source, version.created_by_label) == (f"import {source}", "command line")
    event = AuditEvent.objects.filter(kind=AuditKind.POLICY_CHANGED).latest("seq")
    assert event.payload["version"] == 2


def test_import_reads_standard_input(hotel, monkeypatch):
    out, _ = run("import_policies", "-", stdin=POLICY, monkeypatch=monkeypatch)

    assert out.splitlines()[0] == "Policy version 1: 3 changes"
    assert PolicyVersion.objects.get().source == "import -"
    assert list(PolicyRule.objects.order_by("position").values_list("label", flat=True)) == [
        "no-doors",
        "small-refunds",
        "refunds",
    ]


def test_malformed_yaml_is_refused_with_its_position_and_changes_nothing(published, tmp_path: Path):
    source = tmp_path / "broken.yaml"
    source.write_text("rules:\n  - label: a\n   outcome: [\n", encoding="utf-8")
    before = snapshot()
    err = io.StringIO()

    with pytest.raises(CommandError, match=r"broken.yaml was not imported \(1 problem\); nothing was changed"):
        call_command("import_policies", str(source), stdout=io.StringIO(), stderr=err)

    assert err.getvalue().splitlines() == [
        "not valid YAML: line 3, column 4: expected <block end>, but found '<block mapping start>'"
    ]
    assert snapshot() == before


def test_an_invalid_condition_is_refused_with_its_position_and_changes_nothing(published, tmp_path: Path):
    source = tmp_path / "policy.yaml"
    source.write_text(
        POLICY.replace("args.amount < 50 &&", "args.amount < &&").replace("approvers: managers", "approvers: nobody"),
        encoding="utf-8",
    )
    before = snapshot()
    err = io.StringIO()

    with pytest.raises(CommandError, match=r"not imported \(2 problems\); nothing was changed"):
        call_command("import_policies", str(source), stdout=io.StringIO(), stderr=err)

    lines = err.getvalue().splitlines()
    assert lines[0].startswith("rules[1] (small-refunds).when: Line 1, column 15: Syntax error")
    assert "rules[2] (refunds).escalations[0].approvers: there is no group named 'nobody'" in lines
    assert snapshot() == before


def test_a_missing_file_is_a_clear_error(db, tmp_path: Path):
    with pytest.raises(CommandError, match=r"cannot read .*missing\.yaml"):
        run("import_policies", str(tmp_path / "missing.yaml"))


def test_dry_run_prints_what_would_change_and_changes_nothing(published, make_request, tmp_path: Path):
    small = make_request(name="refund_minibar_charge", arguments='{"amount": 20}')  # allowed by small-refunds
    make_request(name="book_spa", arguments="{}")
    source = tmp_path / "draft.yaml"
    source.write_text(POLICY.replace("args.amount < 50", "args.amount < 10"), encoding="utf-8")
    before = snapshot()

    out, _ = run("import_policies", str(source), "--dry-run", "7")

    lines = out.splitlines()
    assert lines[0] == (
        f"Dry run of {source} on the requests of the last 7 days: 1 of 2 requests would be decided differently."
    )
    assert "Room 1204  hotel/refund_minibar_charge" in lines[1]
    assert lines[2] == "    then:  allow (rule small-refunds); approved by policy (small-refunds)"
    assert lines[3].startswith("    draft: ask front-desk within 60 s, then escalate to")
    assert lines[-1] == "Nothing was imported (dry run)."
    assert snapshot() == before
    small.refresh_from_db()
    assert small.status == "approved"


def test_dry_run_refuses_a_bad_file_like_an_import(published, tmp_path: Path):
    source = tmp_path / "draft.yaml"
    source.write_text("rules: [", encoding="utf-8")

    with pytest.raises(CommandError, match="not imported"):
        run("import_policies", str(source), "--dry-run", "7")


def test_dry_run_days_must_be_sensible(published, tmp_path: Path):
    source = tmp_path / "draft.yaml"
    source.write_text(POLICY, encoding="utf-8")

    with pytest.raises(CommandError, match="from 1 to 365"):
        run("import_policies", str(source), "--dry-run", "0")
