"""Write the whole approval policy (the latest version) as YAML, the format import_policies reads.

    python manage.py export_policies                      # to standard output
    python manage.py export_policies --output policy.yaml

See docs/policies.md for the format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from approvals import policy
from approvals.models import PolicyVersion


class Command(BaseCommand):
    help = "Print the approval policy (the latest version) as YAML; see docs/policies.md."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of standard output")

    def handle(self, *args: Any, **options: Any) -> None:
        text = policy.dump_yaml(policy.current_document())
        output = options["output"]
        if not output or output == "-":
            self.stdout.write(text, ending="")
            return
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None
        number = PolicyVersion.objects.order_by("-number").values_list("number", flat=True).first()
        which = f"policy version {number}" if number is not None else "the empty policy (no version yet)"
        self.stdout.write(f"Wrote {which} to {output}.")
