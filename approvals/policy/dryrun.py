"""The dry run: replaying a draft policy on the requests of the last N days (docs/policies.md).

Reads the recorded requests and routes each again; writes nothing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from approvals.models import ApprovalRequest
from approvals.policy.document import ASK, parse_document
from approvals.policy.engine import Call, Policy
from approvals.policy.text import load_yaml


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


def _replay(policy: Policy, req: ApprovalRequest) -> DryRunRow:
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
    return DryRunRow(
        request=req,
        recorded=recorded,
        happened=_happened(req),
        draft=routing.summary() + (f"; {routing.note}" if routing.note else ""),
        changed=recorded_key != draft_key,
    )


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
    rows = [_replay(policy, req) for req in qs[:limit]]
    return DryRunReport(days=days, total=total, rows=rows, truncated=total > limit)


def dry_run_yaml(text: str, *, days: int) -> DryRunReport:
    """Check a YAML draft of the whole policy (raises PolicyError) and replay it (dry_run)."""
    return dry_run(Policy(parse_document(load_yaml(text)), None), days=days)


def report_lines(report: DryRunReport, name: str) -> list[str]:
    """The report as text, one line per item: the requests decided differently, with what was
    routed then, what happened, and what the draft would do."""
    replayed = len(report.rows)
    lines = [
        f"Dry run of {name} on the requests of the last {report.days} day{'s' if report.days != 1 else ''}: "
        f"{len(report.changed)} of {replayed} request{'s' if replayed != 1 else ''} would be decided differently."
    ]
    if report.truncated:
        lines.append(f"(Only the latest {replayed} of {report.total} requests were replayed.)")
    for row in report.changed:
        req = row.request
        when = timezone.localtime(req.created_at).strftime("%Y-%m-%d %H:%M:%S")
        arguments = req.arguments if len(req.arguments) <= 200 else req.arguments[:199] + "…"
        lines.append(f"{when}  {req.session.label}  {req.server_label}/{req.tool_name}  {arguments}")
        lines.append(f"    then:  {row.recorded}; {row.happened}")
        lines.append(f"    draft: {row.draft}")
    return lines
