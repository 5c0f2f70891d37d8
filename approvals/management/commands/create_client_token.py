"""Issue a client token (what a room tablet or phone gateway presents to the relay).

    python manage.py create_client_token --label "Room 1204" --meta room=1204 --meta floor=12
    python manage.py create_client_token --label "Room 1204" --reuse "$TOKEN"   # for set-up scripts
    python manage.py create_client_token --label "Envoy gateway" --scope requests:write --scope requests:read

--scope (repeatable; default `realtime`): what the token may do. `realtime` opens sessions through the
relay; `requests:write`, `requests:read` and `webhooks` use the approval API (docs/approval_api.md).

The token is printed once, as the last line (so scripts can take it with `tail -n1`); only
its hash is stored. With --reuse, a token that is still valid is kept (and printed back as the
last line) instead of issuing a new one, so that a set-up script can run again and again.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from approvals import services
from approvals.models import ClientToken, Scope


def parse_pairs(pairs: list[str], what: str) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"{what} must look like NAME=VALUE, not {pair!r}")
        parsed[key.strip()] = value.strip()
    return parsed


class Command(BaseCommand):
    help = "Issue a client token for the relay and print it (once)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--label", required=True, help='who uses it, e.g. "Room 1204"')
        parser.add_argument(
            "--meta", action="append", default=[], metavar="KEY=VALUE", help="metadata shown on cards (repeatable)"
        )
        parser.add_argument("--reuse", metavar="TOKEN", help="keep TOKEN if it is still valid instead of issuing one")
        parser.add_argument(
            "--scope",
            action="append",
            default=[],
            choices=Scope.values,
            help="what the token may do (repeatable; default: realtime)",
        )

    def handle(
        self, *args: Any, label: str, meta: list[str], reuse: str | None = None, scope: list[str], **options: Any
    ) -> None:
        label = label.strip()
        if not label:
            raise CommandError("--label must not be empty")
        metadata = parse_pairs(meta, "--meta")
        scopes = scope or [Scope.REALTIME.value]
        kept = ClientToken.objects.for_plaintext(reuse, scopes[0]) if reuse else None
        if kept is not None:
            self.stdout.write(f"Client token #{kept.pk} for {kept.label!r} is still valid; kept.")
            self.stdout.write(str(reuse))
            return
        token, plaintext = services.issue_token(label=label, metadata=metadata, scopes=scopes)
        self.stdout.write(
            f"Issued client token #{token.pk} for {token.label!r} (prefix {token.prefix}; {', '.join(token.scopes)})."
        )
        self.stdout.write("Store it now: it is shown only this once.")
        self.stdout.write(plaintext)
