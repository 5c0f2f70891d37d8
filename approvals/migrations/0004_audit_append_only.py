"""Make the audit chain mandatory, and on PostgreSQL refuse UPDATE and DELETE of audit rows with
a trigger. The one UPDATE let through is the retention purge: it empties the payload and sets
payload_purged_at, and must leave every other column, hashes included, as it was."""

from django.db import migrations, models

FUNCTION = """
CREATE OR REPLACE FUNCTION approvals_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE'
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
CREATE TRIGGER approvals_auditevent_append_only
    BEFORE UPDATE OR DELETE ON approvals_auditevent
    FOR EACH ROW EXECUTE FUNCTION approvals_auditevent_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS approvals_auditevent_append_only ON approvals_auditevent;
DROP FUNCTION IF EXISTS approvals_auditevent_append_only();
"""


def install(apps, schema_editor):
    # PostgreSQL only: SQLite (demo, local tests) keeps the chain and verify_audit, not the trigger.
    if schema_editor.connection.vendor == "postgresql":
        # A plain cursor: schema_editor.execute() would read the '%' of RAISE as placeholders.
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(FUNCTION)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("approvals", "0003_audit_chain_backfill")]

    operations = [
        migrations.AlterField(model_name="auditevent", name="content_hash", field=models.CharField(max_length=64)),
        migrations.AlterField(model_name="auditevent", name="payload_hash", field=models.CharField(max_length=64)),
        migrations.AlterField(model_name="auditevent", name="prev_hash", field=models.CharField(max_length=64)),
        migrations.AlterField(model_name="auditevent", name="row_hash", field=models.CharField(max_length=64)),
        migrations.AlterField(
            model_name="auditevent",
            name="seq",
            field=models.PositiveBigIntegerField(default=None, unique=True),
            preserve_default=False,
        ),
        migrations.RunPython(install, uninstall),
    ]
