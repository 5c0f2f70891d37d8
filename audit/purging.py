"""The one way an audit row changes after it is written: the retention purge empties its payload
and sets payload_purged_at, every hash untouched (the chain still verifies, and payload_hash
still says what the payload was).

The database refuses every other UPDATE and every DELETE of audit rows (audit migration 0002:
triggers on PostgreSQL and SQLite). It lets this one through only inside a transaction that
holds the purge permit, which purge_payloads() takes just before its UPDATE and gives back just
after: on PostgreSQL a transaction-local setting (`countersign.retention_purge`), on SQLite a
row of the table `audit_purge_permit`. Ordinary code never takes it by accident.

The caller (compliance's retention job) records what it purged in the same transaction, with
covering() below: verify_audit then names any purged row no such record covers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from django.db import connection
from django.db.models import QuerySet

from audit import chain
from audit.models import AuditEvent

PERMIT_SETTING = "countersign.retention_purge"
PERMIT_TABLE = "audit_purge_permit"
# SQLite's flush (a transactional test's teardown) deletes with DELETE FROM; it holds this scope.
FLUSH_SCOPE = "flush"
PURGE_SCOPE = "purge"
_CHUNK = 500


def _grant(scope: str) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT set_config(%s, 'on', true)", [PERMIT_SETTING])
        elif connection.vendor == "sqlite":
            cursor.execute(f"INSERT INTO {PERMIT_TABLE} (scope) VALUES (%s)", [scope])


def _revoke(scope: str) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT set_config(%s, 'off', true)", [PERMIT_SETTING])
        elif connection.vendor == "sqlite":
            cursor.execute(f"DELETE FROM {PERMIT_TABLE} WHERE scope = %s", [scope])


def purge_payloads(events: QuerySet[AuditEvent], *, now: datetime) -> list[tuple[int, str]]:
    """Empty the payload of every row of `events` not purged yet, marking it purged at `now`.
    Must run inside the caller's transaction (which records what was purged). Returns the
    (seq, payload_hash) of the rows it purged, in seq order."""
    if not connection.in_atomic_block:
        raise RuntimeError("purge_payloads() runs inside the transaction that records the purge")
    locked = events.filter(payload_purged_at__isnull=True).order_by("seq")
    if connection.features.has_select_for_update_of:
        # A concurrent purge waits here, then skips the rows this one purged.
        locked = locked.select_for_update(of=("self",))
    rows = list(locked.values_list("pk", "seq", "payload_hash"))
    if not rows:
        return []
    _grant(PURGE_SCOPE)
    for start in range(0, len(rows), _CHUNK):
        ids = [pk for pk, _, _ in rows[start : start + _CHUNK]]
        AuditEvent.objects.filter(pk__in=ids).update(payload={}, payload_purged_at=now)
    _revoke(PURGE_SCOPE)
    return [(seq, payload_hash) for _, seq, payload_hash in rows]


def covering(purged: list[tuple[int, str]]) -> dict[str, object]:
    """What a purge record keeps of the rows it purged: their seqs as ranges, and a digest of
    each one's seq and payload hash (digest())."""
    return {"rows": ranges(seq for seq, _ in purged), "rows_sha256": digest(purged)}


def digest(purged: Iterable[tuple[int, str]]) -> str:
    return chain.sha256_hex(chain.canonical(sorted([seq, payload_hash] for seq, payload_hash in purged)))


def ranges(seqs: Iterable[int]) -> list[list[int]]:
    """[1, 2, 3, 7, 9, 10] → [[1, 3], [7, 7], [9, 10]] (seqs in ascending order)."""
    out: list[list[int]] = []
    for seq in seqs:
        if out and out[-1][1] == seq - 1:
            out[-1][1] = seq
        else:
            out.append([seq, seq])
    return out


def expand(listed: Iterable[Iterable[int]]) -> Iterator[int]:
    """The seqs of ranges()."""
    for first, last in listed:
        yield from range(first, last + 1)
