"""Re-encrypt every encrypted database field under the newest key of FIELD_ENCRYPTION_KEYS.

    FIELD_ENCRYPTION_KEYS=<new>,<old> python manage.py rotate_field_encryption

Run it after putting a new key first; once it has finished, the old key can be removed from the
setting (docs/registry.md). Safe to run again: values already under the newest key are rewritten
with it. Prints counts only, never a value.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from approvals.models import EncryptedJSONField, EncryptedTextField


class Command(BaseCommand):
    help = "Re-encrypt the stored secrets (MCP server credentials) under the newest FIELD_ENCRYPTION_KEYS key."

    def handle(self, *args: Any, **options: Any) -> None:
        for model in apps.get_models():
            fields = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField | EncryptedJSONField)]
            if not fields:
                continue
            names = [f.attname for f in fields]
            count = 0
            # Reading decrypts with whichever key opens the value; writing encrypts with the first.
            # Plain value updates (not save()) so that auto_now fields and audit rows stay as they are.
            with transaction.atomic():
                for row in model._base_manager.select_for_update().values_list("pk", *names).iterator():
                    pk, values = row[0], row[1:]
                    changed = {name: value for name, value in zip(names, values, strict=True) if value}
                    if changed:
                        model._base_manager.filter(pk=pk).update(**changed)
                        count += 1
            self.stdout.write(f"{model._meta.label}: re-encrypted {count} row(s) under the newest key.")
