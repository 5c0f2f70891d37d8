"""Tampering as an attacker with the database's superuser would: drop the append-only triggers
(audit migration 0002; rolled back with the test), then change rows below the ORM."""

from __future__ import annotations

from typing import Any

from django.db import connection

TRIGGERS = {
    "postgresql": [
        "DROP TRIGGER IF EXISTS approvals_auditevent_append_only ON approvals_auditevent",
        "DROP TRIGGER IF EXISTS compliance_checkpoint_append_only ON compliance_checkpoint",
    ],
    "sqlite": [
        "DROP TRIGGER IF EXISTS approvals_auditevent_no_update",
        "DROP TRIGGER IF EXISTS approvals_auditevent_no_delete",
        "DROP TRIGGER IF EXISTS compliance_checkpoint_no_update",
        "DROP TRIGGER IF EXISTS compliance_checkpoint_no_delete",
    ],
}


def drop_triggers() -> None:
    with connection.cursor() as cursor:
        for sql in TRIGGERS[connection.vendor]:
            cursor.execute(sql)


def forced(sql: str, params: list[Any] | tuple[Any, ...] = ()) -> None:
    """Run `sql` with the triggers out of the way."""
    drop_triggers()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
