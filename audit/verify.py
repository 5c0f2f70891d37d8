"""Checks of the stored chain: the whole of it (manage.py verify_audit), or the rows of one case."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from audit import chain
from audit.models import CHAIN_FIELDS, AuditChainHead, AuditEvent, Checkpoint, chain_dict


@dataclass
class KeyUse:
    """The checkpoints one key signed: how many, and the first and last sealed row."""

    fingerprint: str
    checkpoints: int = 0
    first_seq: int = 0
    last_seq: int = 0


@dataclass
class Report:
    rows: int = 0
    checkpoints: int = 0
    problem: str = ""
    seq: int | None = None
    event_id: int | None = None
    # Raw public key -> what it signed, for every key whose checkpoints verified.
    keys: dict[bytes, KeyUse] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problem


class ChainProblem(Exception):
    """Raised by a ChainCheck: `message` names what does not match; `seq` and `event_id` the row
    it is about, when there is one."""

    def __init__(self, message: str, *, seq: int | None = None, event_id: int | None = None) -> None:
        super().__init__(message)
        self.message, self.seq, self.event_id = message, seq, event_id


class ChainCheck(Protocol):
    """A check of what the rows mean, beyond their hashes, registered by an app above the audit
    trail (which knows its own kinds and tables). verify_chain() feeds it every row in seq order,
    after the row's own hashes and link verified, then calls end() once the chain, its head and
    its checkpoints verified. Either raises ChainProblem."""

    def see(self, values: dict[str, Any]) -> None: ...

    def end(self) -> None: ...


_checks: list[Callable[[], ChainCheck]] = []


def register_check(factory: Callable[[], ChainCheck]) -> None:
    """Have verify_chain() run a new `factory()` on every walk (call in AppConfig.ready();
    registering the same factory twice is a no-op)."""
    if factory not in _checks:
        _checks.append(factory)


def payload_problem(values: dict[str, Any]) -> str | None:
    """A payload the row still holds must hash to its payload hash, purge flag or not: a purge
    empties it, so a row marked purged that holds anything but {} was forged (chain.check_row
    does not look at the payload of a purged row)."""
    if values["payload_purged_at"] is None or values["payload"] in ({}, None):
        return None
    if chain.payload_hash(values["payload"]) != values["payload_hash"]:
        return "it is marked purged, but holds a payload that does not match its payload hash"
    return "it is marked purged, but still holds its payload"


def _rows() -> Iterator[dict[str, Any]]:
    return AuditEvent.objects.order_by("seq").values(*CHAIN_FIELDS).iterator(chunk_size=5000)


def verify_chain(*, trusted_keys: Collection[bytes] | None) -> Report:
    """Walk every row in order, then the head and the checkpoints. Stops at the first problem
    and names the row or checkpoint. Each checkpoint is checked against the key it names;
    `trusted_keys` (raw public keys): a checkpoint signed by any other key fails. None trusts
    every key (the chain alone is checked then, not who sealed it)."""
    report = Report()
    checkpoints = {c.seq: c for c in Checkpoint.objects.all()}
    report.checkpoints = len(checkpoints)
    prev, expected = chain.GENESIS, 1
    checks = [factory() for factory in _checks]

    def fail(message: str, values: dict[str, Any] | None, seq: int | None) -> Report:
        report.problem, report.seq = message, seq
        report.event_id = values["id"] if values else None
        return report

    for values in _rows():
        seq = values["seq"]
        where = f"row #{seq} (id {values['id']}, {values['kind']}, {chain.format_time(values['created_at'])})"
        if seq != expected:
            return fail(f"row #{expected} is missing: the chain jumps to {where}", values, expected)
        if values["prev_hash"] != prev:
            return fail(f"{where} does not link to row #{seq - 1}", values, seq)
        problem = chain.check_row(chain_dict(values)) or payload_problem(values)
        if problem:
            return fail(f"{where} does not match: {problem}", values, seq)
        checkpoint = checkpoints.get(seq)
        if checkpoint is not None and checkpoint.row_hash != values["row_hash"]:
            return fail(f"{where} differs from the one sealed by checkpoint #{seq}", values, seq)
        try:
            for check in checks:
                check.see(values)
        except ChainProblem as exc:
            return _failed(report, exc)
        prev, expected = values["row_hash"], seq + 1
        report.rows += 1
    last = expected - 1
    head = AuditChainHead.objects.filter(pk=1).first()
    if head is not None and (head.seq, head.row_hash) != (last, prev):
        return fail(f"the chain ends at row #{last}, but its head names row #{head.seq}", None, last + 1)
    for seq, checkpoint in sorted(checkpoints.items()):
        if seq > last:
            return fail(f"checkpoint #{seq} seals row #{seq}, which is missing", None, seq)
        sealed = f"checkpoint #{seq} (sealed {chain.format_time(checkpoint.sealed_at)})"
        try:
            public_key, signature = bytes.fromhex(checkpoint.public_key), bytes.fromhex(checkpoint.signature)
        except ValueError:
            return fail(f"{sealed} holds a public key or signature that is not hex", None, seq)
        fingerprint = chain.key_fingerprint(public_key)
        message = chain.checkpoint_message(
            seq=seq, row_sha256=checkpoint.row_hash, sealed_at=chain.format_time(checkpoint.sealed_at)
        )
        # The signature first: trusting the key would not make a bad signature good.
        if not chain.verify_signature(public_key, signature, message):
            return fail(f"{sealed} has a bad signature (key {fingerprint})", None, seq)
        if trusted_keys is not None and public_key not in trusted_keys:
            return fail(
                f"{sealed} is signed by a key that is not trusted: {fingerprint}; add its public key to "
                "AUDIT_TRUSTED_PUBLIC_KEYS if it was a legitimate earlier key",
                None,
                seq,
            )
        use = report.keys.setdefault(public_key, KeyUse(fingerprint=fingerprint, first_seq=seq))
        use.checkpoints += 1
        use.last_seq = seq
    try:
        for check in checks:
            check.end()
    except ChainProblem as exc:
        return _failed(report, exc)
    return report


def _failed(report: Report, problem: ChainProblem) -> Report:
    report.problem, report.seq, report.event_id = problem.message, problem.seq, problem.event_id
    return report


def verify_published(published: Iterable[dict[str, Any]]) -> str | None:
    """Each checkpoint published outside the database (audit/sealing.py publish()) must still be
    in it, unchanged: else the database lost or rewrote it, and the rows it sealed with it
    (verify_chain checks the stored ones against the rows). The first problem, or None."""
    stored = {c.seq: c.to_dict() for c in Checkpoint.objects.all()}
    for entry in published:
        seq = entry.get("seq")
        sealed = f"published checkpoint #{seq} (sealed {entry.get('sealed_at')})"
        if seq not in stored:
            return f"{sealed} is missing from the database"
        if stored[seq] != entry:
            return f"{sealed} differs from the database's checkpoint #{seq}"
    return None


@dataclass
class RowStatus:
    event: AuditEvent
    problem: str
    sealed: bool

    @property
    def ok(self) -> bool:
        return not self.problem


def verify_rows(events: Iterable[AuditEvent]) -> list[RowStatus]:
    """Each row on its own (hashes, link to the row before it) and whether a checkpoint covers it.
    It does not walk the chain between the row and the checkpoint: verify_audit does."""
    events = list(events)
    before = dict(
        AuditEvent.objects.filter(seq__in=[e.seq - 1 for e in events if e.seq > 1]).values_list("seq", "row_hash")
    )
    latest = Checkpoint.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    statuses = []
    for event in events:
        values = {name: getattr(event, name) for name in CHAIN_FIELDS}
        problem = chain.check_row(chain_dict(values)) or payload_problem(values) or ""
        expected_prev = chain.GENESIS if event.seq == 1 else before.get(event.seq - 1)
        if not problem and expected_prev is None:
            problem = f"row #{event.seq - 1} before it is missing"
        elif not problem and event.prev_hash != expected_prev:
            problem = f"it does not link to row #{event.seq - 1}"
        statuses.append(RowStatus(event=event, problem=problem, sealed=event.seq <= latest))
    return statuses
