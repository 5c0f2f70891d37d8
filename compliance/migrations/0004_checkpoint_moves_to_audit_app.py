"""Checkpoint belongs to the audit app now (audit 0001). State only: its table, rows and trigger
stay as they are."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0003_search_indexes"),
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[migrations.DeleteModel(name="Checkpoint")],
        ),
    ]
