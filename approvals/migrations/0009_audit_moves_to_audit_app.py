"""AuditEvent and AuditChainHead belong to the audit app now (audit 0001). State only: their
tables, rows and trigger stay as they are."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0008_policies"),
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.DeleteModel(name="AuditChainHead"),
                migrations.DeleteModel(name="AuditEvent"),
            ],
        ),
    ]
