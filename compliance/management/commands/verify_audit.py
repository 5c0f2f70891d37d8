"""Walk the audit chain and its checkpoints; report the first row that does not match."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from compliance import chain, signing
from compliance.verify import verify_chain


class Command(BaseCommand):
    help = "Verify the audit hash chain and the signed checkpoints."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            trusted = signing.public_key_raw()
        except ImproperlyConfigured:
            trusted = None
            self.stderr.write("AUDIT_SIGNING_KEY is not set: checkpoint signatures are checked against their own key")
        report = verify_chain(trusted_public_key=trusted)
        if not report.ok:
            raise CommandError(f"The audit trail does not verify: {report.problem}")
        keys = ", ".join(sorted(report.keys)) or (chain.key_fingerprint(trusted) if trusted else "none")
        self.stdout.write(f"Intact: {report.rows} audit rows, {report.checkpoints} signed checkpoints (key {keys}).")
