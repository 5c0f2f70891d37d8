"""PostgreSQL: the chain's append as one function, so that a writer holds the chain lock for one
statement and its commit, not for four round trips (audit/writer.py, docs/performance.md).

`countersign_audit_append(entries jsonb)` locks the head row, and for each entry (in order)
takes the next seq, hashes the entry's canonical content with that seq (the writer sends the
canonical JSON around the seq's digits: `before` and `after`, so the bytes hashed are exactly
the ones audit/chain.py would hash), chains it to the previous row, inserts it, and finally moves
the head. It returns (id, seq, content_hash, prev_hash, row_hash) per entry; no row at all when
the head row does not exist yet (the writer then creates it, as before, and calls again).
SQLite keeps the writer's Python path (one writer at a time there anyway)."""

from django.db import migrations

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION countersign_audit_append(entries jsonb)
RETURNS TABLE (o_id bigint, o_seq bigint, o_content_hash text, o_prev_hash text, o_row_hash text) AS $$
DECLARE
    head_seq bigint;
    head_hash text;
    entry jsonb;
    content text;
    chained text;
    new_id bigint;
BEGIN
    SELECT h.seq, h.row_hash INTO head_seq, head_hash
        FROM approvals_auditchainhead h WHERE h.id = 1 FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    FOR entry IN SELECT value FROM jsonb_array_elements(entries) LOOP
        head_seq := head_seq + 1;
        content := encode(sha256(convert_to((entry->>'before') || head_seq::text || (entry->>'after'), 'UTF8')), 'hex');
        chained := encode(sha256(decode(head_hash, 'hex') || decode(content, 'hex')), 'hex');
        INSERT INTO approvals_auditevent
            (kind, request_id, session_id, actor_id, actor_label, payload, created_at,
             seq, payload_hash, content_hash, prev_hash, row_hash)
        VALUES
            (entry->>'kind', (entry->>'request_id')::bigint, (entry->>'session_id')::bigint,
             (entry->>'actor_id')::bigint, entry->>'actor_label', entry->'payload',
             (entry->>'created_at')::timestamptz, head_seq, entry->>'payload_hash', content, head_hash, chained)
        RETURNING id INTO new_id;
        o_id := new_id;
        o_seq := head_seq;
        o_content_hash := content;
        o_prev_hash := head_hash;
        o_row_hash := chained;
        RETURN NEXT;
        head_hash := chained;
    END LOOP;
    UPDATE approvals_auditchainhead SET seq = head_seq, row_hash = head_hash WHERE id = 1;
END;
$$ LANGUAGE plpgsql;
"""


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(PG_FUNCTION)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("DROP FUNCTION IF EXISTS countersign_audit_append(jsonb)")


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_everywhere")]

    operations = [migrations.RunPython(install, uninstall)]
