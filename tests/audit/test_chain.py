from __future__ import annotations

import itertools
import json
import subprocess
import textwrap

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.utils import DatabaseError

from approvals import services
from audit import chain, sealing, writer
from audit.models import AuditChainHead, AuditEvent, Checkpoint
from audit.verify import verify_chain
from tests.audit.tampering import forced
from tests.compliance.conftest import KEY_A, KEY_B, public_base64, public_raw
from tests.plugins.processes import PYTHON
from tests.plugins.stack import django_env

pytestmark = pytest.mark.django_db

on_postgresql = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL only")


def run_verify_audit() -> str:
    from io import StringIO

    out = StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


def a_day_of_work(make_request, alice, effects):
    first, second, third = make_request(), make_request(), make_request()
    services.decide(first, approve=True, by=alice)
    services.mark_decision_sent(first)
    services.record_mcp_call(
        session=first.session,
        item={"id": "mcp_1", "approval_request_id": first.upstream_id, "arguments": first.arguments, "output": "ok"},
    )
    services.decide(second, approve=False, by=alice, reason="No")
    services.close_session(third.session, code=1000, reason="bye")
    return first, second, third


def test_every_event_of_the_services_extends_one_chain(make_request, alice, effects):
    a_day_of_work(make_request, alice, effects)
    rows = list(AuditEvent.objects.order_by("seq"))
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0].prev_hash == chain.GENESIS
    assert all(b.prev_hash == a.row_hash for a, b in itertools.pairwise(rows))
    head = AuditChainHead.objects.get()
    assert (head.seq, head.row_hash) == (rows[-1].seq, rows[-1].row_hash)
    assert {r.kind for r in rows} >= {"session_opened", "requested", "decided", "sent", "mcp_call", "cancelled"}
    assert verify_chain(trusted_keys=None).ok


def test_verify_audit_says_intact_with_the_rows_and_checkpoints(make_request, alice, effects):
    a_day_of_work(make_request, alice, effects)
    sealing.ensure_sealed()
    out = run_verify_audit()
    assert "Intact:" in out and f"{AuditEvent.objects.count()} audit rows, 1 signed checkpoints" in out


def test_sealing_signs_the_head_once(make_request, effects):
    make_request()
    checkpoint = sealing.ensure_sealed()
    assert checkpoint is not None and checkpoint.seq == AuditChainHead.objects.get().seq
    assert sealing.ensure_sealed() is None
    message = chain.checkpoint_message(
        seq=checkpoint.seq, row_sha256=checkpoint.row_hash, sealed_at=chain.format_time(checkpoint.sealed_at)
    )
    assert chain.verify_signature(bytes.fromhex(checkpoint.public_key), bytes.fromhex(checkpoint.signature), message)


def test_the_payload_is_stored_exactly_as_it_was_hashed(db):
    with transaction.atomic():
        event = writer.record(kind="login", actor_label="x", payload={"n": 1e20, "t": (1, 2.5), "s": "é"})
    event.refresh_from_db()
    assert event.payload == {"n": 10**20, "t": [1, 2.5], "s": "é"}
    assert chain.payload_hash(event.payload) == event.payload_hash


_forced = forced


def test_verify_audit_names_a_row_whose_payload_was_altered(make_request, alice, effects):
    first, _, _ = a_day_of_work(make_request, alice, effects)
    decided = AuditEvent.objects.get(request=first, kind="decided")
    _forced(
        "UPDATE approvals_auditevent SET payload = %s WHERE id = %s", ['{"approve": false, "reason": ""}', decided.pk]
    )
    with pytest.raises(CommandError, match=rf"row #{decided.seq} \(id {decided.pk}, decided, .*payload does not match"):
        run_verify_audit()


def test_verify_audit_names_the_row_that_was_deleted(make_request, alice, effects):
    a_day_of_work(make_request, alice, effects)
    victim = AuditEvent.objects.get(seq=4)
    _forced("DELETE FROM approvals_auditevent WHERE id = %s", [victim.pk])
    with pytest.raises(CommandError, match=r"row #4 is missing"):
        run_verify_audit()


def test_a_rewritten_chain_fails_against_its_signed_checkpoint(make_request, alice, effects):
    first, _, _ = a_day_of_work(make_request, alice, effects)
    sealing.ensure_sealed()
    # The forger changes a decision and recomputes every hash after it, head included: only the
    # signed checkpoint, which they cannot re-sign, still knows the truth.
    rows = list(AuditEvent.objects.order_by("seq"))
    prev = chain.GENESIS
    for row in rows:
        payload = (
            {"approve": False, "reason": "forged"}
            if (row.request_id, row.kind) == (first.pk, "decided")
            else row.payload
        )
        p = chain.payload_hash(payload)
        d = row.to_chain_dict()
        c = chain.content_hash(
            seq=row.seq, kind=row.kind, at=d["at"], request=row.request_id, session=row.session_id,
            actor=row.actor_id, actor_label=row.actor_label, payload_sha256=p,
        )  # fmt: skip
        r = chain.row_hash(prev, c)
        _forced_update = (
            "UPDATE approvals_auditevent SET payload = %s, payload_hash = %s, content_hash = %s, prev_hash = %s,"
            " row_hash = %s WHERE id = %s"
        )
        forced(_forced_update, [json.dumps(payload), p, c, prev, r, row.pk])
        prev = r
    AuditChainHead.objects.update(row_hash=prev)
    with pytest.raises(CommandError, match=r"differs from the one sealed by checkpoint"):
        run_verify_audit()


def sealed_on_both_sides_of_a_rotation(make_request, rotate, *, trust_a: bool) -> tuple[Checkpoint, Checkpoint]:
    make_request()
    by_a = sealing.ensure_sealed()
    rotate(trust_a=trust_a)
    make_request()
    by_b = sealing.ensure_sealed()
    assert by_a is not None and by_b is not None
    return by_a, by_b


def test_verify_audit_trusts_checkpoints_of_an_earlier_key_kept_in_the_trusted_list(make_request, effects, rotate):
    by_a, by_b = sealed_on_both_sides_of_a_rotation(make_request, rotate, trust_a=True)
    out = run_verify_audit()
    assert f"{AuditEvent.objects.count()} audit rows, 2 signed checkpoints" in out
    fingerprint_a = chain.key_fingerprint(public_raw(KEY_A))
    fingerprint_b = chain.key_fingerprint(public_raw(KEY_B))
    assert f"{fingerprint_a} (earlier key) signed 1 of them, #{by_a.seq}..#{by_a.seq}" in out
    assert f"{fingerprint_b} (current key) signed 1 of them, #{by_b.seq}..#{by_b.seq}" in out


def test_verify_audit_names_the_checkpoint_and_key_of_an_earlier_key_not_trusted(make_request, effects, rotate):
    by_a, _ = sealed_on_both_sides_of_a_rotation(make_request, rotate, trust_a=False)
    fingerprint_a = chain.key_fingerprint(public_raw(KEY_A))
    with pytest.raises(CommandError) as failure:
        run_verify_audit()
    assert (
        f"checkpoint #{by_a.seq} (sealed {chain.format_time(by_a.sealed_at)}) is signed by a key that is not "
        f"trusted: {fingerprint_a}; add its public key to AUDIT_TRUSTED_PUBLIC_KEYS if it was a legitimate "
        "earlier key"
    ) in str(failure.value)


def test_verify_audit_needs_only_the_public_keys(make_request, effects, rotate, settings):
    # An auditor's copy of the database: no private key, only the published public ones.
    sealed_on_both_sides_of_a_rotation(make_request, rotate, trust_a=True)
    settings.AUDIT_SIGNING_KEY = ""
    settings.AUDIT_TRUSTED_PUBLIC_KEYS = f"{public_raw(KEY_A).hex()}, {public_base64(KEY_B)}"
    assert "2 signed checkpoints" in run_verify_audit()
    settings.AUDIT_TRUSTED_PUBLIC_KEYS = public_base64(KEY_B)
    with pytest.raises(CommandError, match="is signed by a key that is not trusted"):
        run_verify_audit()


_forced_checkpoint = forced


@pytest.mark.parametrize("tampered", ["signature", "public_key"])
def test_verify_audit_names_a_checkpoint_whose_signature_does_not_match_its_key(
    make_request, effects, rotate, tampered
):
    by_a, by_b = sealed_on_both_sides_of_a_rotation(make_request, rotate, trust_a=True)
    if tampered == "signature":
        value = by_a.signature[:-1] + ("0" if by_a.signature[-1] != "0" else "1")
    else:
        value = by_b.public_key  # a trusted key, but not the one that signed it
    _forced_checkpoint(f"UPDATE compliance_checkpoint SET {tampered} = %s WHERE id = %s", [value, by_a.pk])
    with pytest.raises(CommandError, match=rf"checkpoint #{by_a.seq} \(sealed .*\) has a bad signature \(key SHA256:"):
        run_verify_audit()


def test_verify_audit_names_the_malformed_entry_of_the_trusted_keys(make_request, effects, settings):
    make_request()
    sealing.ensure_sealed()
    settings.AUDIT_TRUSTED_PUBLIC_KEYS = f"{public_base64(KEY_B)} not-a-key"
    with pytest.raises(CommandError, match="AUDIT_TRUSTED_PUBLIC_KEYS: entry 2 is not an Ed25519 public key"):
        run_verify_audit()


def test_the_trigger_refuses_update_and_delete_of_audit_rows(make_request, effects):
    req = make_request()
    event = AuditEvent.objects.filter(request=req).first()
    for sql in (
        "UPDATE approvals_auditevent SET actor_label = 'someone else' WHERE id = %s",
        "UPDATE approvals_auditevent SET payload = '{}', payload_purged_at = CURRENT_TIMESTAMP, row_hash = 'x'"
        " WHERE id = %s",
        "DELETE FROM approvals_auditevent WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as c:
            c.execute(sql, [event.pk])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        Checkpoint.objects.filter(pk=sealing.ensure_sealed().pk).update(seq=99)
    event.refresh_from_db()
    assert event.actor_label == "Room 1204" and event.payload["item"]["id"] == req.upstream_id


WRITER = textwrap.dedent(
    """
    import os, sys, django
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    django.setup()
    from django.contrib.auth import get_user_model
    from approvals import services
    from approvals.models import ApprovalRequest, RealtimeSession
    me = int(sys.argv[1])
    user = get_user_model().objects.get(username="alice")
    session = RealtimeSession.objects.get()
    for i in range(15):
        req, _ = services.open_request(session=session, upstream_id=f"p{me}-{i}", server_label="hotel",
                                       tool_name="t", arguments="{}", raw_item={"i": i})
        # Everybody races for the same shared requests too: exactly one decision each wins.
        for shared in ApprovalRequest.objects.filter(upstream_id__startswith="shared").pending():
            try:
                services.decide(shared, approve=True, by=user)
            except services.TransitionError:
                pass
        services.decide(req, approve=bool(i % 2), by=user)
    """
)


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_concurrent_decisions_in_several_processes_leave_one_chain_that_verifies(session, alice, monkeypatch):
    monkeypatch.setattr("approvals.tasks.expire_request.apply_async", lambda *a, **k: None)
    for n in range(5):
        services.open_request(
            session=session, upstream_id=f"shared{n}", server_label="hotel", tool_name="t", arguments="{}", raw_item={}
        )
    env = django_env(CELERY_BROKER_URL="memory://", AUDIT_SIGNING_KEY="")
    writers = [
        subprocess.Popen([PYTHON, "-c", WRITER, str(me)], env=env, stderr=subprocess.PIPE, text=True) for me in range(4)
    ]
    errors = [w.communicate(timeout=120)[1] for w in writers]
    assert all(w.returncode == 0 for w in writers), errors
    rows = list(AuditEvent.objects.order_by("seq").values_list("seq", "prev_hash", "row_hash"))
    # 1 session + 5 shared requests + 4 writers * 15 * (requested + decided) + 5 shared decisions,
    # plus a "notified" row for each request whose dashboard broadcast went out (how many did
    # depends on each process's channel layer; the chain must hold them all the same).
    # The session; each shared request's requested + policy_routed; each writer's request's
    # requested + policy_routed + decided; one decision per shared request.
    assert AuditEvent.objects.exclude(kind="notified").count() == 1 + 5 * 2 + 4 * 15 * 3 + 5
    assert [seq for seq, _, _ in rows] == list(range(1, len(rows) + 1))
    assert AuditEvent.objects.filter(kind="decided", request__upstream_id__startswith="shared").count() == 5
    assert verify_chain(trusted_keys=None).ok, verify_chain(trusted_keys=None).problem
