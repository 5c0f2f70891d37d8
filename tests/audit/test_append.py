"""The chain's append on PostgreSQL: one statement (countersign_audit_append, audit migration
0003) that locks the head, chains and inserts the rows and moves the head, so a writer holds the
chain lock for that statement and its commit. It must write exactly the chain audit/chain.py
describes, under concurrent writers too, and give nothing away on a rollback."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from audit import chain, writer
from audit.models import AuditChainHead, AuditEvent
from audit.verify import verify_chain

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL only (SQLite appends in Python)"),
]

# Labels and payloads that a careless cut of the canonical JSON around the seq would get wrong.
AWKWARD = [
    ('Zoë "seq":1 \\ night', {"note": '"seq":987654321987654321,', "n": 1.0}),
    ("夜勤 — 🛎️", {"list": [1, 2.5, None, True], "nested": {"b": "ü", "a": "\u2028"}}),
    ("", {}),
]


def test_the_rows_written_in_one_statement_hash_as_the_chain_says(db):
    rows = writer.record_many(
        [{"kind": "opened", "actor_label": label, "payload": payload} for label, payload in AWKWARD]
    )
    stored = list(AuditEvent.objects.order_by("seq"))
    assert [r.pk for r in rows] == [s.pk for s in stored]
    for returned, row in zip(rows, stored, strict=True):
        assert returned.seq == row.seq and returned.row_hash == row.row_hash
        assert chain.check_row(row.to_chain_dict()) is None, row.to_chain_dict()
    assert [s.prev_hash for s in stored[1:]] == [s.row_hash for s in stored[:-1]]
    head = AuditChainHead.objects.get()
    assert (head.seq, head.row_hash) == (stored[-1].seq, stored[-1].row_hash)
    assert verify_chain(trusted_keys=None).ok


def test_the_first_append_creates_the_head_then_appends_in_one_statement(db):
    AuditChainHead.objects.all().delete()
    (first,) = writer.record_many([{"kind": "opened"}])
    assert first.seq == 1 and first.prev_hash == chain.GENESIS
    assert AuditChainHead.objects.get().seq == 1


def test_a_rolled_back_append_leaves_the_head_and_the_next_seq_as_they_were(db):
    writer.record(kind="opened")
    with pytest.raises(RuntimeError), transaction.atomic():
        writer.record(kind="opened")
        raise RuntimeError("the change failed after its audit row")
    (after,) = writer.record_many([{"kind": "closed"}])
    assert after.seq == 2
    assert verify_chain(trusted_keys=None).ok


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_each_in_their_own_transaction_leave_one_chain():
    writers, each = 8, 15
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(me: int) -> None:
        try:
            start.wait(30)
            for n in range(each):
                with transaction.atomic():
                    writer.record_many([{"kind": "opened", "payload": {"w": me, "n": n}}] * (1 + n % 2))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(me,)) for me in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    expected = writers * sum(1 + n % 2 for n in range(each))
    assert seqs == list(range(1, expected + 1))
    assert verify_chain(trusted_keys=None).ok, verify_chain(trusted_keys=None).problem
    assert connection.vendor == "postgresql"
