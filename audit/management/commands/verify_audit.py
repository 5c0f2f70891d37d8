"""Walk the audit chain and its checkpoints; report the first row or checkpoint that does not match."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from audit import sealing, signing
from audit.verify import verify_chain, verify_published


class Command(BaseCommand):
    help = (
        "Verify the audit hash chain and the signed checkpoints, each against the key that signed it, "
        "which must be the current key or one of AUDIT_TRUSTED_PUBLIC_KEYS."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--published",
            default=settings.AUDIT_CHECKPOINT_PUBLISH_DIR,
            help="checkpoints published outside the database (a checkpoints.jsonl, or its directory) that must "
            "all still be in it; default: AUDIT_CHECKPOINT_PUBLISH_DIR",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            trusted = signing.trusted_public_keys()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if not trusted:
            self.stderr.write(
                "Neither AUDIT_SIGNING_KEY nor AUDIT_TRUSTED_PUBLIC_KEYS is set: checkpoint signatures are "
                "checked against their own key, and any key is accepted"
            )
        report = verify_chain(trusted_keys=trusted or None)
        if not report.ok:
            raise CommandError(f"The audit trail does not verify: {report.problem}")
        published = []
        if options["published"]:
            try:
                published = sealing.read_published(options["published"])
            except (OSError, ValueError) as exc:
                raise CommandError(f"Cannot read the published checkpoints: {exc}") from None
            problem = verify_published(published)
            if problem:
                raise CommandError(f"The audit trail does not verify: {problem}")
        current = signing.public_key_raw() if settings.AUDIT_SIGNING_KEY else None
        self.stdout.write(f"Intact: {report.rows} audit rows, {report.checkpoints} signed checkpoints.")
        if options["published"]:
            self.stdout.write(f"  {len(published)} published checkpoints are all in the database, unchanged.")
        # Oldest key first: after a rotation, the ranges should follow each other, not interleave
        # (beyond the few minutes of a rolling restart).
        for raw, use in report.keys.items():
            role = "current key" if raw == current else "earlier key" if trusted else "key not checked"
            self.stdout.write(
                f"  {use.fingerprint} ({role}) signed {use.checkpoints} of them, #{use.first_seq}..#{use.last_seq}"
            )
