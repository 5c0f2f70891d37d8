"""An installation at the schema before the audit app existed (AuditEvent and AuditChainHead in
approvals, Checkpoint in compliance) upgrades in place: after `migrate`, every row is still
there, unchanged, the chain and its signed checkpoint verify, and the chain goes on."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.apps.registry import Apps
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from audit import chain, sealing, signing, writer
from audit.models import AuditChainHead, AuditEvent, Checkpoint
from audit.verify import verify_chain

pytestmark = pytest.mark.django_db(transaction=True)

# The last migrations before the audit app (commit 691ee50).
BEFORE_AUDIT_APP = [
    ("approvals", "0008_policies"),
    ("compliance", "0003_search_indexes"),
    ("realtime_bridge", "0002_leases"),
]
TABLES = ["approvals_auditevent", "approvals_auditchainhead", "compliance_checkpoint"]


def migrate_to_before_the_audit_app() -> Apps:
    executor = MigrationExecutor(connection)
    executor.migrate([*BEFORE_AUDIT_APP, ("audit", None)])
    return executor.loader.project_state(BEFORE_AUDIT_APP).apps


def migrate_to_the_latest() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def snapshot() -> dict[str, list[tuple[Any, ...]]]:
    with connection.cursor() as cursor:
        tables = {}
        for table in TABLES:
            cursor.execute(f"SELECT * FROM {table} ORDER BY id")
            tables[table] = cursor.fetchall()
    return tables


class OldChain:
    """Audit rows written through the models of the old schema, exactly as the writer of that
    time linked them (audit/chain.py, format 1)."""

    def __init__(self, apps: Apps) -> None:
        self.event = apps.get_model("approvals", "AuditEvent")
        self.head = apps.get_model("approvals", "AuditChainHead")
        self.seq, self.prev = 0, chain.GENESIS

    def append(
        self, kind: str, *, request: Any = None, session: Any = None, actor: Any = None, at: Any = None, **payload: Any
    ) -> None:
        self.seq += 1
        created_at = at or timezone.now()
        stored = json.loads(chain.canonical(payload))
        p_hash = chain.payload_hash(stored)
        actor_label = actor.username if actor is not None else ""
        c_hash = chain.content_hash(
            seq=self.seq,
            kind=kind,
            at=chain.format_time(created_at),
            request=request.pk if request is not None else None,
            session=session.pk if session is not None else None,
            actor=actor.pk if actor is not None else None,
            actor_label=actor_label,
            payload_sha256=p_hash,
        )
        r_hash = chain.row_hash(self.prev, c_hash)
        self.event.objects.create(
            kind=kind,
            request=request,
            session=session,
            actor=actor,
            actor_label=actor_label,
            payload=stored,
            created_at=created_at,
            seq=self.seq,
            payload_hash=p_hash,
            content_hash=c_hash,
            prev_hash=self.prev,
            row_hash=r_hash,
        )
        self.prev = r_hash
        self.head.objects.update_or_create(pk=1, defaults={"seq": self.seq, "row_hash": r_hash})


def a_decided_request_sealed(apps: Apps) -> None:
    """A session opened, a request made and approved by Alice, the chain sealed: all in the old
    schema's tables, through its models."""
    alice = apps.get_model("auth", "User").objects.create(username="alice", is_staff=True)
    session = apps.get_model("approvals", "RealtimeSession").objects.create(label="Room 1204", metadata={"room": 1})
    now = timezone.now()
    request = apps.get_model("approvals", "ApprovalRequest").objects.create(
        session=session,
        upstream_id="mcpr_1",
        server_label="hotel",
        tool_name="refund_minibar_charge",
        arguments='{"amount": 120}',
        deadline=now + timedelta(minutes=1),
        status="approved",
        decided_at=now,
        decided_by=alice,
        decided_by_label="alice",
    )
    old = OldChain(apps)
    old.append("session_opened", session=session, label="Room 1204")
    old.append(
        "requested", request=request, session=session, at=request.created_at, item={"id": "mcpr_1", "amount": 120.0}
    )
    old.append("decided", request=request, session=session, actor=alice, at=now, approve=True, reason="")
    sealed_at = timezone.now()
    message = chain.checkpoint_message(seq=old.seq, row_sha256=old.prev, sealed_at=chain.format_time(sealed_at))
    apps.get_model("compliance", "Checkpoint").objects.create(
        seq=old.seq,
        row_hash=old.prev,
        sealed_at=sealed_at,
        public_key=signing.public_key_raw().hex(),
        signature=signing.sign(message).hex(),
    )
    # A permission on the old model, which the upgrade must keep pointing at the moved one.
    content_type, _ = apps.get_model("contenttypes", "ContentType").objects.get_or_create(
        app_label="approvals", model="auditevent"
    )
    view, _ = apps.get_model("auth", "Permission").objects.get_or_create(
        codename="view_auditevent", content_type=content_type, defaults={"name": "Can view audit event"}
    )
    apps.get_model("auth", "Group").objects.create(name="auditors").permissions.add(view)


def test_an_installation_from_before_the_audit_app_upgrades_in_place_and_its_chain_verifies():
    old_apps = migrate_to_before_the_audit_app()
    a_decided_request_sealed(old_apps)
    before = snapshot()
    assert [len(before[table]) for table in TABLES] == [3, 1, 1]

    migrate_to_the_latest()

    assert snapshot() == before
    assert list(AuditEvent.objects.values_list("kind", flat=True)) == ["session_opened", "requested", "decided"]
    assert AuditEvent.objects.get(kind="decided").get_kind_display() == "Decided"
    out = StringIO()
    call_command("verify_audit", stdout=out)
    assert "Intact: 3 audit rows, 1 signed checkpoints." in out.getvalue()

    # The chain goes on from the old head, and the next seal covers the new row.
    with transaction.atomic():
        writer.record(kind="session_closed", session_id=AuditEvent.objects.get(seq=1).session_id)
    assert AuditChainHead.objects.get().seq == 4
    assert sealing.ensure_sealed() is not None
    report = verify_chain(trusted_keys=signing.trusted_public_keys())
    assert report.ok, report.problem
    assert (report.rows, report.checkpoints) == (4, 2)

    from django.contrib.auth.models import Group

    assert Group.objects.get(name="auditors").permissions.get().natural_key() == (
        "view_auditevent",
        "audit",
        "auditevent",
    )


def test_the_append_only_triggers_still_guard_the_moved_tables():
    a_decided_request_sealed(migrate_to_before_the_audit_app())
    migrate_to_the_latest()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(seq=2).update(actor_label="someone else")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(seq=2).delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        Checkpoint.objects.update(seq=99)
    assert verify_chain(trusted_keys=None).ok
