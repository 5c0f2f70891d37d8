"""Demo mode set-up for `make run`: staff accounts whose names and passwords are printed.

Passwords are random per checkout and kept in var/demo-accounts.json, so they stay the same
from one `make run` to the next and are never the same on two machines.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from approvals import services
from approvals.models import ClientToken, PolicyVersion

DEMO_ACCOUNTS = [
    # (username, first name, role shown to the user, superuser?, staff group)
    ("frontdesk", "Alice", "front-desk staff", False, "front-desk"),
    ("manager", "Bob", "duty manager", False, "managers"),
    ("admin", "Charlie", "policy admin (superuser, Django admin)", True, ""),
]

# The demo hotel's policy (docs/policies.md), put in only while no policy exists, so that an admin's
# own changes survive the next `make run`. Lights and lookups run without asking; small refunds
# are fine; bigger ones go to the managers; a door goes to the front desk, then to the managers.
DEMO_POLICY = """
rules:
  - {label: lights, server: hotel, tool: set_room_lighting, outcome: allow}
  - {label: room-status, server: hotel, tool: get_room_status, outcome: allow}
  - {label: folios, server: hotel, tool: lookup_folio, outcome: allow}
  - label: small-refunds
    server: hotel
    tool: issue_refund
    when: args.amount <= 20.0
    outcome: allow
    reason: Refunds up to 20 need no sign-off.
  - label: refunds
    server: hotel
    tool: issue_refund
    outcome: ask
    approvers: [managers]
    deadline_seconds: 90
    on_deadline: deny
  - label: doors
    server: hotel
    tool: unlock_door
    outcome: ask
    approvers: [front-desk]
    deadline_seconds: 45
    on_deadline: escalate
    escalations:
      - {approvers: [managers], deadline_seconds: 45, on_deadline: deny}
"""


class Command(BaseCommand):
    help = "Create the demo staff accounts (demo mode only) and print how to log in."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--force", action="store_true", help="run even when OPENAI_API_KEY is set")

    def handle(self, *args: Any, force: bool = False, **options: Any) -> None:
        if not settings.DEMO_MODE and not force:
            raise CommandError("seed_demo only runs in demo mode (no OPENAI_API_KEY); use --force to override")
        path = settings.VAR_DIR / "demo-accounts.json"
        try:
            passwords: dict[str, str] = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            passwords = {}
        User = get_user_model()
        lines = []
        for username, first_name, role, superuser, group in DEMO_ACCOUNTS:
            password = passwords.setdefault(username, secrets.token_urlsafe(9))
            user, _ = User.objects.get_or_create(username=username, defaults={"first_name": first_name})
            user.first_name = first_name
            user.is_staff = True
            user.is_superuser = superuser
            user.set_password(password)
            user.save()
            if group:
                user.groups.add(Group.objects.get_or_create(name=group)[0])
            lines.append(f"    {username:<10} {password:<14} {role}")
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(passwords, indent=2))
        path.chmod(0o600)
        self.stdout.write("  Demo staff accounts (log in at /accounts/login/):")
        self.stdout.write("\n".join(lines))
        self._hotel_and_guests()

    def _hotel_and_guests(self) -> None:
        """Register the demo hotel MCP server, and give each demo guest room a client token
        (plaintext kept in var/demo-guests.json for demo/guests.py; only hashes in the DB)."""
        services.register_mcp_server(
            label="hotel",
            url=f"http://127.0.0.1:{settings.HOTEL_MCP_PORT}/mcp",
            headers={"X-API-Key": settings.HOTEL_MCP_API_KEY},
            require_approval="always",
            description="Hotel operations: rooms, doors, lights, folios (demo)",
        )
        path = settings.VAR_DIR / "demo-guests.json"
        try:
            tokens: dict[str, str] = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            tokens = {}
        from demo.guests import SCENARIOS

        for label in sorted({scenario[0] for scenario in SCENARIOS}):
            token = tokens.get(label)
            if token and ClientToken.objects.for_plaintext(token) is not None:
                continue
            _, tokens[label] = services.issue_token(label=label, metadata={"room": label.split()[-1]})
        path.write_text(json.dumps(tokens, indent=2))
        path.chmod(0o600)
        if not PolicyVersion.objects.exists():
            version = services.import_policies(DEMO_POLICY, by=None, source="demo seed")
            if version is not None:
                self.stdout.write(
                    f"  Demo policy installed (version {version.number}); see /admin/approvals/policyrule/"
                )
