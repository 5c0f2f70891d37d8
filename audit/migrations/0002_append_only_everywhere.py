"""The database refuses every UPDATE and DELETE of audit rows and checkpoints, on PostgreSQL and
SQLite, except the retention purge (audit/purging.py): an UPDATE that empties the payload and
sets payload_purged_at, every other column unchanged, inside a transaction holding the purge
permit. Before, PostgreSQL's trigger (approvals 0004) let any purge-shaped UPDATE through, and
SQLite had none.

- PostgreSQL: the function of approvals 0004 is replaced (its trigger stays) to also require the
  transaction-local setting `countersign.retention_purge = 'on'`; the checkpoint trigger of
  compliance 0002 already refuses everything.
- SQLite: the table audit_purge_permit, and triggers on both tables. A DELETE is let through
  only under the "flush" permit (a test's flush, which on SQLite is DELETE FROM every table).

The head row (approvals_auditchainhead) is updated by every writer: no trigger."""

from django.db import migrations

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION approvals_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND current_setting('countersign.retention_purge', true) = 'on'
       AND OLD.payload_purged_at IS NULL AND NEW.payload_purged_at IS NOT NULL
       AND NEW.payload = '{}'::jsonb
       AND (NEW.id, NEW.seq, NEW.kind, NEW.request_id, NEW.session_id, NEW.actor_id, NEW.actor_label,
            NEW.created_at, NEW.payload_hash, NEW.content_hash, NEW.prev_hash, NEW.row_hash)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.seq, OLD.kind, OLD.request_id, OLD.session_id, OLD.actor_id, OLD.actor_label,
            OLD.created_at, OLD.payload_hash, OLD.content_hash, OLD.prev_hash, OLD.row_hash)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'approvals_auditevent is append-only: % of row % refused', TG_OP, OLD.seq
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""
# approvals 0004's function, for the way back.
PG_FUNCTION_BEFORE = PG_FUNCTION.replace("       AND current_setting('countersign.retention_purge', true) = 'on'\n", "")

UNCHANGED = " AND ".join(
    f"NEW.{column} IS OLD.{column}"
    for column in (
        "id",
        "seq",
        "kind",
        "request_id",
        "session_id",
        "actor_id",
        "actor_label",
        "created_at",
        "payload_hash",
        "content_hash",
        "prev_hash",
        "row_hash",
    )
)
SQLITE = [
    "CREATE TABLE audit_purge_permit (scope varchar(8) NOT NULL PRIMARY KEY)",
    f"""
    CREATE TRIGGER approvals_auditevent_no_update BEFORE UPDATE ON approvals_auditevent
    WHEN NOT (
        EXISTS (SELECT 1 FROM audit_purge_permit WHERE scope = 'purge')
        AND OLD.payload_purged_at IS NULL AND NEW.payload_purged_at IS NOT NULL
        AND NEW.payload = '{{}}' AND {UNCHANGED}
    )
    BEGIN SELECT RAISE(ABORT, 'approvals_auditevent is append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER approvals_auditevent_no_delete BEFORE DELETE ON approvals_auditevent
    WHEN NOT EXISTS (SELECT 1 FROM audit_purge_permit WHERE scope = 'flush')
    BEGIN SELECT RAISE(ABORT, 'approvals_auditevent is append-only: DELETE refused'); END
    """,
    """
    CREATE TRIGGER compliance_checkpoint_no_update BEFORE UPDATE ON compliance_checkpoint
    BEGIN SELECT RAISE(ABORT, 'compliance_checkpoint is append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER compliance_checkpoint_no_delete BEFORE DELETE ON compliance_checkpoint
    WHEN NOT EXISTS (SELECT 1 FROM audit_purge_permit WHERE scope = 'flush')
    BEGIN SELECT RAISE(ABORT, 'compliance_checkpoint is append-only: DELETE refused'); END
    """,
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS approvals_auditevent_no_update",
    "DROP TRIGGER IF EXISTS approvals_auditevent_no_delete",
    "DROP TRIGGER IF EXISTS compliance_checkpoint_no_update",
    "DROP TRIGGER IF EXISTS compliance_checkpoint_no_delete",
    "DROP TABLE IF EXISTS audit_purge_permit",
]


def _run(schema_editor, statements):
    # A plain cursor: schema_editor.execute() would read the '%' of RAISE as placeholders.
    with schema_editor.connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, [PG_FUNCTION])
    elif vendor == "sqlite":
        _run(schema_editor, SQLITE)


def uninstall(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, [PG_FUNCTION_BEFORE])
    elif vendor == "sqlite":
        _run(schema_editor, SQLITE_DROP)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(install, uninstall)]
