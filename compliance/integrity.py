"""What verify_audit checks beyond the hashes (audit/verify.py runs these checks, registered in
compliance/apps.py): the chain must cover what a reviewer relies on.

- PurgeCoverage: a row's payload is emptied only by the retention job, which writes a PURGED row
  naming every row it emptied (audit/purging.py). Walking the chain, every row marked purged
  must be listed by a later PURGED row of the same instant, with the digest of their payload
  hashes; that purge must have run with retention on, cut at least its retention before its own
  time, and the row's case must have been older than that cut and not under a legal hold (per
  the chain's own legal_hold_placed / legal_hold_released rows) at that moment.
- RequestStates: each request's status, decided_at, decided_by, decider's label and reason must
  be what the last of its decided / expired / cancelled rows says (or, with none, pending; or
  the "ran without asking" shape of record_unasked_call).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from approvals.models import ApprovalRequest
from approvals.models import AuditKind as ApprovalsKind
from audit import chain, purging
from audit.verify import ChainProblem
from compliance.models import AuditKind

# Plain strings: compared on every row of the chain (a Choices member is slower to compare).
PLACED, RELEASED, PURGED = (
    str(k.value) for k in (AuditKind.LEGAL_HOLD_PLACED, AuditKind.LEGAL_HOLD_RELEASED, AuditKind.PURGED)
)
REQUESTED, DECIDED = str(ApprovalsKind.REQUESTED.value), str(ApprovalsKind.DECIDED.value)


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass(slots=True)
class _Purged:
    seq: int
    event_id: int
    kind: str
    purged_at: datetime
    payload_hash: str
    request_id: int | None
    session_id: int | None
    created_at: datetime


class PurgeCoverage:
    def __init__(self) -> None:
        self.pending: dict[int, _Purged] = {}
        # Active legal holds as the chain tells them: request id -> its session id.
        self.held: dict[int, int | None] = {}
        # Each request's first row (its `requested` row): when the case was opened.
        self.opened: dict[int, datetime] = {}

    def see(self, values: dict[str, Any]) -> None:
        request_id, kind = values["request_id"], values["kind"]
        if request_id is not None:
            self.opened.setdefault(request_id, values["created_at"])
            if kind == PLACED:
                self.held[request_id] = values["session_id"]
            elif kind == RELEASED:
                self.held.pop(request_id, None)
        if values["payload_purged_at"] is not None:
            self.pending[values["seq"]] = _Purged(
                seq=values["seq"],
                event_id=values["id"],
                kind=kind,
                purged_at=values["payload_purged_at"],
                payload_hash=values["payload_hash"],
                request_id=request_id,
                session_id=values["session_id"],
                created_at=values["created_at"],
            )
        elif kind == PURGED:
            self._cover(values)

    def _cover(self, values: dict[str, Any]) -> None:
        payload, at, seq = values["payload"], values["created_at"], values["seq"]
        record = f"retention purge record #{seq} ({chain.format_time(at)})"

        def problem(message: str, row: _Purged | None = None) -> ChainProblem:
            if row is None:
                return ChainProblem(f"{record} {message}", seq=seq, event_id=values["id"])
            where = f"row #{row.seq} (id {row.event_id}, {row.kind})"
            return ChainProblem(f"{where} {message}", seq=row.seq, event_id=row.event_id)

        before = _parse_time(payload.get("before"))
        if before is None:
            raise problem("does not say before when it purged")
        days = payload.get("retention_days")
        if days is not None and (not isinstance(days, int) or days <= 0):
            raise problem(f"was written with retention off ({days!r} days)")
        if days is not None and before > at - timedelta(days=days):
            raise problem(f"purged up to {payload['before']}, later than its retention of {days} days allows")
        if "rows" in payload:
            covered = list(purging.expand(payload["rows"]))
            for listed in covered:
                row = self.pending.get(listed)
                if row is None or row.purged_at != at:
                    raise problem(f"lists row #{listed}, which it did not purge")
            if purging.digest((s, self.pending[s].payload_hash) for s in covered) != payload.get("rows_sha256"):
                raise problem("does not match the payload hashes of the rows it lists")
        else:
            # Written before purge records listed their rows: the rows of its instant, as many as it says.
            covered = [s for s, row in self.pending.items() if row.purged_at == at]
            if len(covered) != payload.get("audit_rows"):
                raise problem(
                    f"says it purged {payload.get('audit_rows')} audit rows, but {len(covered)} carry its time"
                )
        held_sessions = set(self.held.values())
        for listed in covered:
            row = self.pending.pop(listed)
            if row.request_id in self.held:
                raise problem(f"was purged by {record} while request {row.request_id} was under legal hold", row)
            if row.request_id is None and row.session_id is not None and row.session_id in held_sessions:
                raise problem(f"was purged by {record} while a case of session {row.session_id} was held", row)
            opened = self.opened.get(row.request_id, row.created_at) if row.request_id else row.created_at
            if opened >= before:
                raise problem(f"was purged by {record}, but is not older than its cut ({payload['before']})", row)

    def end(self) -> None:
        if self.pending:
            row = self.pending[min(self.pending)]
            raise ChainProblem(
                f"row #{row.seq} (id {row.event_id}, {row.kind}) has its payload emptied (purged at "
                f"{chain.format_time(row.purged_at)}), but no retention purge record covers it",
                seq=row.seq,
                event_id=row.event_id,
            )


DECISIONS: dict[str, str | None] = {
    DECIDED: None,  # approved or denied, by its payload's "approve"
    str(ApprovalsKind.EXPIRED.value): str(ApprovalRequest.Status.EXPIRED.value),
    str(ApprovalsKind.CANCELLED.value): str(ApprovalRequest.Status.CANCELLED.value),
}


@dataclass(slots=True)
class _Decision:
    seq: int
    kind: str
    at: datetime
    actor_id: int | None
    actor_label: str
    payload: dict[str, Any] | None  # None when purged


class RequestStates:
    def __init__(self) -> None:
        self.last: dict[int, _Decision] = {}
        self.requested: dict[int, _Decision] = {}

    def see(self, values: dict[str, Any]) -> None:
        request_id, kind = values["request_id"], values["kind"]
        if request_id is None or (kind not in DECISIONS and kind != REQUESTED):
            return
        decision = _Decision(
            seq=values["seq"],
            kind=kind,
            at=values["created_at"],
            actor_id=values["actor_id"],
            actor_label=values["actor_label"],
            payload=None if values["payload_purged_at"] else values["payload"],
        )
        if kind == REQUESTED:
            self.requested.setdefault(request_id, decision)
        else:
            self.last[request_id] = decision

    def end(self) -> None:
        fields = ("pk", "status", "decided_at", "decided_by_id", "decided_by_label", "reason")
        for req in ApprovalRequest.objects.order_by("pk").values(*fields).iterator(chunk_size=5000):
            mismatch = self._mismatch(req)
            if mismatch:
                raise ChainProblem(f"request {req['pk']} {mismatch}")

    def _mismatch(self, req: dict[str, Any]) -> str | None:
        pk = req["pk"]
        decision, requested = self.last.get(pk), self.requested.get(pk)
        if requested is None:
            return "has no `requested` row in the audit trail"
        if decision is None:
            unasked = requested.payload is None or requested.payload.get("asked") is False
            expected: tuple[Any, ...] = ("pending", None, None)
            if unasked and req["status"] != "pending":
                expected = ("approved", requested.at, None)
            found = (req["status"], req["decided_at"], req["decided_by_id"])
            if found != expected:
                return f"is {self._state(found)}, but its audit rows say {self._state(expected)} (row #{requested.seq})"
            return None
        status = DECISIONS[decision.kind]
        approve = decision.payload.get("approve") if decision.payload is not None else None
        if status is None and approve is not None:
            status = ApprovalRequest.Status.APPROVED if approve else ApprovalRequest.Status.DENIED
        row = f"its {decision.kind} row #{decision.seq}"
        allowed = [status] if status else [ApprovalRequest.Status.APPROVED, ApprovalRequest.Status.DENIED]
        if req["status"] not in allowed:
            return f"is {req['status']}, but {row} says {' or '.join(allowed)}"
        if (req["decided_at"], req["decided_by_id"]) != (decision.at, decision.actor_id):
            state = self._state((req["status"], req["decided_at"], req["decided_by_id"]))
            said = f"decided at {chain.format_time(decision.at)} by user {decision.actor_id}"
            return f"is {state}, but {row} says it was {said}"
        if decision.payload is not None:
            approvers = decision.payload.get("approvers")
            label = " and ".join(approvers)[:150] if isinstance(approvers, list) else decision.actor_label
            if req["decided_by_label"] != label:
                return f"names its decider {req['decided_by_label']!r}, but {row} says {label!r}"
            if "reason" in decision.payload and req["reason"] != decision.payload["reason"]:
                return f"gives the reason {req['reason']!r}, but {row} says {decision.payload['reason']!r}"
        return None

    @staticmethod
    def _state(state: tuple[Any, ...]) -> str:
        status, at, by = state
        if at is None:
            return str(status)
        return f"{status} at {chain.format_time(at)} by user {by}"
