"""Indexes for the review search on PostgreSQL (SQLite has neither GIN nor trigrams, and the
search falls back to plain scans there, which is fine at SQLite's scale).

- Trigram GIN indexes on UPPER(arguments) and UPPER(label): Django's `icontains` is
  `UPPER(col) LIKE UPPER('%text%')`, which these serve, instead of reading every row.
- jsonb_path_ops GIN on session metadata: the search asks `metadata @> {"room": "1204"}`.

pg_trgm must be created by a role allowed to; if ours is not, the trigram indexes are
skipped with a warning rather than failing the deploy (the search still works, slower).
"""

import logging

from django.db import migrations, transaction

log = logging.getLogger(__name__)

TRGM = [
    "CREATE INDEX IF NOT EXISTS approval_args_trgm ON approvals_approvalrequest USING gin (UPPER(arguments) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS session_label_trgm ON approvals_realtimesession USING gin (UPPER(label) gin_trgm_ops)",
]
META = "CREATE INDEX IF NOT EXISTS session_metadata_gin ON approvals_realtimesession USING gin (metadata jsonb_path_ops)"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(META)
    try:
        # A savepoint: a refused CREATE EXTENSION must not abort the migration's transaction.
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception as exc:  # insufficient privilege, or contrib not installed
        log.warning("pg_trgm is not available (%s): text search will not use trigram indexes", exc)
        return
    for sql in TRGM:
        schema_editor.execute(sql)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in ("approval_args_trgm", "session_label_trgm", "session_metadata_gin"):
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("compliance", "0002_compliance_group"), ("approvals", "0004_audit_append_only")]
    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
