"""Link the audit rows written before the chain existed into it, oldest first, with the same
format as audit.writer.record (audit/chain.py, version 1)."""

import json

from django.db import migrations


def backfill(apps, schema_editor):
    from audit import chain

    AuditEvent = apps.get_model("approvals", "AuditEvent")
    AuditChainHead = apps.get_model("approvals", "AuditChainHead")
    prev, seq = chain.GENESIS, 0
    for event in AuditEvent.objects.order_by("created_at", "pk").iterator(chunk_size=2000):
        seq += 1
        payload = chain.canonical(event.payload or {})
        event.payload = json.loads(payload)
        event.seq = seq
        event.payload_hash = chain.payload_hash(event.payload)
        event.content_hash = chain.content_hash(
            seq=seq,
            kind=event.kind,
            at=chain.format_time(event.created_at),
            request=event.request_id,
            session=event.session_id,
            actor=event.actor_id,
            actor_label=event.actor_label,
            payload_sha256=event.payload_hash,
        )
        event.prev_hash = prev
        event.row_hash = prev = chain.row_hash(prev, event.content_hash)
        event.save(update_fields=["payload", "seq", "payload_hash", "content_hash", "prev_hash", "row_hash"])
    AuditChainHead.objects.update_or_create(pk=1, defaults={"seq": seq, "row_hash": prev})


def unlink(apps, schema_editor):
    AuditEvent = apps.get_model("approvals", "AuditEvent")
    AuditEvent.objects.update(seq=None, payload_hash="", content_hash="", prev_hash="", row_hash="")
    apps.get_model("approvals", "AuditChainHead").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("approvals", "0002_audit_chain")]

    operations = [migrations.RunPython(backfill, unlink)]
