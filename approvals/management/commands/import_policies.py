"""Replace the whole approval policy with a YAML file (the format of export_policies), or replay
it on the recorded requests first.

    python manage.py import_policies policy.yaml
    python manage.py import_policies policy.yaml --dry-run 7     # changes nothing
    cat policy.yaml | python manage.py import_policies -

All or nothing: a file with any problem (YAML syntax, an unknown key, a condition that does not
compile, an unknown group or server, a broken escalation chain) is refused with every problem on
its own line, and nothing changes. See docs/policies.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from approvals import policy, services


class Command(BaseCommand):
    help = "Replace the approval policy with a YAML file (all or nothing), or dry-run it; see docs/policies.md."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", metavar="FILE", help="the YAML policy file, or - for standard input")
        parser.add_argument(
            "--dry-run",
            type=int,
            metavar="DAYS",
            help="replay the file on the requests of the last DAYS days and print what it would decide "
            "differently, instead of importing it",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["file"]
        text = self._read(name)
        days = options["dry_run"]
        if days is not None and not 1 <= days <= 365:
            raise CommandError("--dry-run DAYS: a number of days from 1 to 365")
        try:
            if days is not None:
                for line in policy.report_lines(policy.dry_run_yaml(text, days=days), name):
                    self.stdout.write(line)
                self.stdout.write("Nothing was imported (dry run).")
                return
            version = services.import_policies(text, by=None, source=f"import {name}")
        except policy.PolicyError as exc:
            for error in exc.errors:
                self.stderr.write(error)
            problems = f"{len(exc.errors)} problem{'s' if len(exc.errors) != 1 else ''}"
            raise CommandError(f"{name} was not imported ({problems}); nothing was changed.") from None
        if version is None:
            self.stdout.write("No change")
            return
        count = len(version.changes)
        self.stdout.write(f"Policy version {version.number}: {count} change{'s' if count != 1 else ''}")
        for change in version.changes:
            self.stdout.write(f"  {change}")

    def _read(self, name: str) -> str:
        if name == "-":
            return sys.stdin.read()
        try:
            return Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {name}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise CommandError(f"cannot read {name}: not UTF-8 text") from None
