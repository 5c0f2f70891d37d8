"""Tampering with the audit trail, one way per test, as an attacker with the database's superuser
would (issue 16): the database refuses it while its triggers stand, and verify_audit names it
once they are dropped. Runs on the database the suite runs on: PostgreSQL in CI; locally run it
both ways (with and without DATABASE_URL=postgres://...)."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from approvals import services
from approvals.models import ApprovalRequest
from audit import chain, purging, sealing, writer
from audit.models import AuditChainHead, AuditEvent, Checkpoint
from audit.verify import Report, verify_chain
from compliance import services as compliance_services
from compliance.models import AuditKind
from tests.audit.tampering import drop_triggers, forced

pytestmark = pytest.mark.django_db


def verified() -> Report:
    return verify_chain(trusted_keys=None)


def problem() -> str:
    report = verified()
    assert not report.ok, "the tampering was not noticed"
    return report.problem


@pytest.fixture
def decided(make_request, alice, effects) -> tuple[ApprovalRequest, ApprovalRequest]:
    """Two requests approved by Alice, the chain sealed."""
    first, second = make_request(), make_request()
    services.decide(first, approve=True, by=alice)
    services.decide(second, approve=True, by=alice)
    sealing.ensure_sealed()
    assert verified().ok, verified().problem
    return first, second


def refused(sql: str, params: list[Any]) -> None:
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


def purge_shaped(event: AuditEvent) -> tuple[str, list[Any]]:
    return "UPDATE approvals_auditevent SET payload = '{}', payload_purged_at = %s WHERE id = %s", [
        timezone.now(),
        event.pk,
    ]


# Forged payload --------------------------------------------------------------------------------


@pytest.mark.parametrize("purge_flag", [False, True], ids=["payload changed", "payload changed, purge flag set"])
def test_a_forged_payload_is_refused_and_then_named(decided, purge_flag):
    row = AuditEvent.objects.get(request=decided[0], kind="decided")
    sql = "UPDATE approvals_auditevent SET payload = %s" + (", payload_purged_at = %s" if purge_flag else "")
    params: list[Any] = ['{"approve": false, "reason": "forged"}'] + ([timezone.now()] if purge_flag else [])
    refused(sql + " WHERE id = %s", [*params, row.pk])
    forced(sql + " WHERE id = %s", [*params, row.pk])
    assert f"row #{row.seq} (id {row.pk}, decided" in problem()
    if purge_flag:
        assert "it is marked purged, but holds a payload that does not match its payload hash" in problem()
    else:
        assert "its payload does not match its payload hash" in problem()


# Purge-shaped UPDATE ---------------------------------------------------------------------------


def test_the_database_refuses_a_purge_shaped_update_outside_the_retention_job(decided):
    row = AuditEvent.objects.get(request=decided[0], kind="requested")
    refused(*purge_shaped(row))
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=row.pk).update(payload={}, payload_purged_at=timezone.now())
    # Even under the purge permit, only the purge's shape passes: not a changed hash or actor.
    for change in ({"payload_hash": "0" * 64}, {"actor_label": "someone"}, {"payload": {"x": 1}}):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            purging._grant(purging.PURGE_SCOPE)
            AuditEvent.objects.filter(pk=row.pk).update(payload_purged_at=timezone.now(), **{"payload": {}, **change})
    row.refresh_from_db()
    assert row.payload_purged_at is None and row.payload["item"]
    assert verified().ok


def test_the_permit_does_not_outlive_the_purge(decided, settings):
    settings.AUDIT_RETENTION_DAYS = 30
    with transaction.atomic():
        compliance_services.purge_expired(now=timezone.now() + timedelta(days=31))
        left = AuditEvent.objects.filter(payload_purged_at__isnull=True).exclude(kind="purged").first()
        if left is None:
            left = AuditEvent.objects.get(kind="purged")
        # Later in the same transaction, the permit is gone again.
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            AuditEvent.objects.filter(pk=left.pk).update(payload={}, payload_purged_at=timezone.now())
    assert verified().ok, verified().problem


def test_a_purge_shaped_update_with_the_trigger_dropped_is_named(decided, rita):
    # Retention off, no purge record, and the case under legal hold: the attacker's UPDATE.
    held = decided[0]
    compliance_services.place_hold(held, by=rita, reason="Guest complaint 4711")
    sealing.ensure_sealed()
    row = AuditEvent.objects.get(request=held, kind="requested")
    forced(*purge_shaped(row))
    assert (
        f"row #{row.seq} (id {row.pk}, requested) has its payload emptied (purged at " in problem()
        and "but no retention purge record covers it" in problem()
    )


def test_a_purge_time_copied_from_a_real_purge_is_named(make_request, alice, rita, effects, settings):
    settings.AUDIT_RETENTION_DAYS = 30
    gone, kept = make_request(), make_request()
    services.decide(gone, approve=True, by=alice)
    services.decide(kept, approve=True, by=alice)
    compliance_services.place_hold(kept, by=rita, reason="Police request")
    compliance_services.purge_expired(now=timezone.now() + timedelta(days=31))
    assert verified().ok, verified().problem
    record = AuditEvent.objects.get(kind="purged")
    row = AuditEvent.objects.get(request=kept, kind="decided")
    forced(
        "UPDATE approvals_auditevent SET payload = '{}', payload_purged_at = %s WHERE id = %s",
        [record.created_at, row.pk],
    )
    assert f"row #{row.seq} (id {row.pk}, decided) has its payload emptied" in problem()


def _purged_by_hand(events: Any, *, days: int, before: Any) -> AuditEvent:
    """A purge that skipped the retention job's checks, with a record of what it did."""
    now = timezone.now()
    with transaction.atomic():
        purged = purging.purge_payloads(events, now=now)
        return writer.record(
            kind=AuditKind.PURGED,
            actor_label="retention",
            payload={
                "before": chain.format_time(before),
                "retention_days": days,
                "requests": 0,
                "audit_rows": len(purged),
                "conversation_lines": 0,
                **purging.covering(purged),
            },
            created_at=now,
        )


def test_a_purge_record_that_covers_a_held_case_is_named(decided, rita):
    held = decided[0]
    compliance_services.place_hold(held, by=rita, reason="Litigation")
    first = AuditEvent.objects.filter(request=held).order_by("seq").first()
    assert first is not None
    record = _purged_by_hand(
        AuditEvent.objects.filter(pk=first.pk), days=30, before=timezone.now() - timedelta(days=30)
    )
    assert "was written with" not in problem()
    assert (
        f"row #{first.seq} (id {first.pk}, requested) was purged by retention purge record #{record.seq}" in problem()
    )


def test_a_purge_record_of_young_rows_or_with_retention_off_is_named(decided):
    row = AuditEvent.objects.filter(request=decided[1]).order_by("seq").first()
    assert row is not None
    now = timezone.now()
    with transaction.atomic():
        sid = transaction.savepoint()
        record = _purged_by_hand(AuditEvent.objects.filter(pk=row.pk), days=0, before=now)
        assert f"retention purge record #{record.seq}" in problem() and "with retention off (0 days)" in problem()
        transaction.savepoint_rollback(sid)
    record = _purged_by_hand(AuditEvent.objects.filter(pk=row.pk), days=30, before=now - timedelta(days=30))
    assert f"row #{row.seq} (id {row.pk}, requested) was purged by retention purge record #{record.seq}" in problem()
    assert "but is not older than its cut" in problem()


def test_a_purge_record_whose_list_was_changed_is_named(make_request, alice, effects, settings):
    settings.AUDIT_RETENTION_DAYS = 30
    services.decide(make_request(), approve=True, by=alice)
    compliance_services.purge_expired(now=timezone.now() + timedelta(days=31))
    record = AuditEvent.objects.get(kind="purged")
    listed = list(purging.expand(record.payload["rows"]))
    # The attacker "un-purges" one row's claim by shortening the list: the record no longer
    # hashes (content hash), and a rewritten hash breaks the link to the next row or the head.
    payload = {**record.payload, "rows": purging.ranges(listed[:-1])}
    forced("UPDATE approvals_auditevent SET payload = %s WHERE id = %s", [chain.canonical(payload).decode(), record.pk])
    assert f"row #{record.seq} (id {record.pk}, purged" in problem()


def test_a_genuine_purge_verifies(decided, settings):
    settings.AUDIT_RETENTION_DAYS = 30
    counts = compliance_services.purge_expired(now=timezone.now() + timedelta(days=31))
    assert counts is not None and counts["audit_rows"] >= 4
    record = AuditEvent.objects.get(kind="purged")
    assert record.payload["retention_days"] == 30
    assert len(list(purging.expand(record.payload["rows"]))) == counts["audit_rows"]
    assert verified().ok, verified().problem


# Edited request row ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("status", "is denied, but its decided row #{seq} says approved"),
        ("decided_by", "but its decided row #{seq} says it was decided at"),
        ("decided_at", "but its decided row #{seq} says it was decided at"),
        ("reason", "gives the reason 'forged', but its decided row #{seq} says ''"),
        ("decided_by_label", "names its decider 'Bob', but its decided row #{seq} says 'Alice'"),
    ],
)
def test_an_edited_request_row_is_named(decided, bob, field, expected):
    req = decided[0]
    value = {
        "status": "denied",
        "decided_by": bob,
        "decided_at": timezone.now(),
        "reason": "forged",
        "decided_by_label": "Bob",
    }[field]
    ApprovalRequest.objects.filter(pk=req.pk).update(**{field: value})
    row = AuditEvent.objects.get(request=req, kind="decided")
    assert problem().startswith(f"request {req.pk} ")
    assert expected.format(seq=row.seq) in problem()


def test_a_decision_given_to_a_pending_request_is_named(make_request, alice, effects):
    req = make_request()
    ApprovalRequest.objects.filter(pk=req.pk).update(status="approved", decided_at=timezone.now(), decided_by=alice)
    assert f"request {req.pk} is approved at " in problem() and "but its audit rows say pending" in problem()


# Deleted, reordered, truncated rows ------------------------------------------------------------


def test_a_deleted_row_is_refused_and_then_named(decided):
    row = AuditEvent.objects.get(request=decided[0], kind="decided")
    refused("DELETE FROM approvals_auditevent WHERE id = %s", [row.pk])
    forced("DELETE FROM approvals_auditevent WHERE id = %s", [row.pk])
    assert f"row #{row.seq} is missing" in problem()


def test_reordered_rows_are_named(decided):
    a, b = AuditEvent.objects.filter(request=decided[1]).order_by("seq")[:2]
    drop_triggers()
    with connection.cursor() as cursor:
        for pk, seq in ((a.pk, 10**9), (b.pk, a.seq), (a.pk, b.seq)):
            cursor.execute("UPDATE approvals_auditevent SET seq = %s WHERE id = %s", [seq, pk])
    assert problem().startswith(f"row #{a.seq} (id {b.pk}, ")


def test_checkpoints_refuse_update_and_delete(decided):
    checkpoint = Checkpoint.objects.get()
    refused("UPDATE compliance_checkpoint SET row_hash = %s WHERE id = %s", ["0" * 64, checkpoint.pk])
    refused("DELETE FROM compliance_checkpoint WHERE id = %s", [checkpoint.pk])


def test_a_truncated_tail_after_the_last_checkpoint_is_named_by_the_head(decided, make_request):
    sealed = Checkpoint.objects.get().seq
    make_request()
    forced("DELETE FROM approvals_auditevent WHERE seq > %s", [sealed])
    head = AuditChainHead.objects.get()
    assert f"the chain ends at row #{sealed}, but its head names row #{head.seq}" in problem()


def test_a_truncated_tail_of_sealed_rows_is_named_by_the_checkpoint(decided, make_request):
    sealed = Checkpoint.objects.get()
    forced("DELETE FROM approvals_auditevent WHERE seq > %s", [sealed.seq - 2])
    row = AuditEvent.objects.order_by("-seq").first()
    assert row is not None
    AuditChainHead.objects.update(seq=row.seq, row_hash=row.row_hash)
    assert f"checkpoint #{sealed.seq} seals row #{sealed.seq}, which is missing" in problem()


def test_the_window_a_truncated_unsealed_tail_with_a_rewritten_head(decided, make_request):
    # docs/compliance.md ("What the chain cannot see"): rows written after the last seal and
    # removed, head rewritten, before the next seal, leave no trace in the database. Publishing
    # each checkpoint outside it (AUDIT_CHECKPOINT_PUBLISH_DIR) bounds the loss to that window.
    sealed = Checkpoint.objects.get()
    make_request()
    forced("DELETE FROM approvals_auditevent WHERE seq > %s", [sealed.seq])
    AuditChainHead.objects.update(seq=sealed.seq, row_hash=sealed.row_hash)
    ApprovalRequest.objects.filter(audit__isnull=True).delete()
    assert verified().ok


# Checkpoints published outside the database ----------------------------------------------------


def run_verify_audit(*args: str) -> str:
    out = StringIO()
    call_command("verify_audit", *args, stdout=out)
    return out.getvalue()


def test_each_checkpoint_is_published_once(decided, make_request, settings, tmp_path):
    settings.AUDIT_CHECKPOINT_PUBLISH_DIR = str(tmp_path / "published")
    make_request()
    second = sealing.ensure_sealed()
    assert second is not None
    published = sealing.read_published(tmp_path / "published")
    # The checkpoint sealed before publishing was on is published too, in order.
    assert published == [c.to_dict() for c in Checkpoint.objects.order_by("seq")]
    assert sealing.publish(tmp_path / "published") == 0 and sealing.ensure_sealed() is None
    assert len(sealing.read_published(tmp_path / "published")) == 2
    assert "2 published checkpoints are all in the database, unchanged." in run_verify_audit()


def test_seal_audit_publishes_to_a_directory(decided, tmp_path):
    out = StringIO()
    call_command("seal_audit", "--publish", str(tmp_path), stdout=out)
    assert "Published 1 checkpoints" in out.getvalue()
    assert sealing.read_published(tmp_path / "checkpoints.jsonl") == [Checkpoint.objects.get().to_dict()]


def test_a_truncated_tail_with_its_checkpoint_deleted_is_named_by_the_published_one(
    decided, make_request, settings, tmp_path
):
    settings.AUDIT_CHECKPOINT_PUBLISH_DIR = str(tmp_path)
    first = Checkpoint.objects.get()
    sealing.publish(tmp_path)
    make_request()
    lost = sealing.ensure_sealed()
    assert lost is not None
    # The attacker removes the sealed tail, its checkpoint and the new request, and rewinds the
    # head: the database alone cannot tell.
    forced("DELETE FROM approvals_auditevent WHERE seq > %s", [first.seq])
    forced("DELETE FROM compliance_checkpoint WHERE seq > %s", [first.seq])
    AuditChainHead.objects.update(seq=first.seq, row_hash=first.row_hash)
    ApprovalRequest.objects.filter(audit__isnull=True).delete()
    assert verified().ok
    with pytest.raises(
        CommandError, match=rf"published checkpoint #{lost.seq} \(sealed .*\) is missing from the database"
    ):
        run_verify_audit()
    with pytest.raises(CommandError, match=rf"published checkpoint #{lost.seq} .* is missing"):
        run_verify_audit("--published", str(tmp_path / "checkpoints.jsonl"))
