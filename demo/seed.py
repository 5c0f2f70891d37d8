"""Demo mode set-up for `make run`: staff accounts whose names and passwords are printed, the demo
hotel's MCP server, a client token for each demo guest room, and the demo policy.

    python -m demo.seed [--force]

Passwords are random per checkout and kept in var/demo-accounts.json, so they stay the same from
one `make run` to the next and are never the same on two machines. The guests' tokens are kept in
var/demo-guests.json for demo/guests.py (only their hashes are in the database). Running it again
changes nothing that is still good: a valid token is kept, the demo policy (demo/policy.yaml) goes
in only while no policy exists, so that an admin's own changes survive the next `make run`.

The demo imports no production app: it works through Django (auth models, settings) and
Countersign's own management commands, as an operator would.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
from io import StringIO
from pathlib import Path
from typing import TextIO

import django
from django.apps import apps
from django.conf import settings
from django.core.management import call_command

DEMO_ACCOUNTS = [
    # (username, first name, role shown to the user, superuser?, staff group)
    ("frontdesk", "Alice", "front-desk staff", False, "front-desk"),
    ("manager", "Bob", "duty manager", False, "managers"),
    ("admin", "Charlie", "policy admin (superuser, Django admin)", True, ""),
]
POLICY_FILE = Path(__file__).resolve().with_name("policy.yaml")


class NotDemoMode(Exception):
    pass


def _read_json(path: Path) -> dict[str, str]:
    try:
        data: dict[str, str] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data


def _write_secret_json(path: Path, data: dict[str, str]) -> None:
    path.write_text(json.dumps(data, indent=2))
    path.chmod(0o600)


def _command(*args: str) -> str:
    """Run a management command quietly; returns what it printed."""
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def seed_staff() -> list[str]:
    """Create or update the demo staff accounts (with their groups); returns one line per account."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    path = settings.VAR_DIR / "demo-accounts.json"
    passwords = _read_json(path)
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
    _write_secret_json(path, passwords)
    return lines


def seed_hotel_and_guests() -> None:
    """Register the demo hotel MCP server, and give each demo guest room a client token
    (plaintext kept in var/demo-guests.json for demo/guests.py; only hashes in the DB)."""
    from demo.guests import ROOMS

    _command(
        "register_mcp_server",
        "--label=hotel",
        f"--url=http://127.0.0.1:{settings.HOTEL_MCP_PORT}/mcp",
        f"--header=X-API-Key={settings.HOTEL_MCP_API_KEY}",
        "--require-approval=always",
        "--description=Hotel operations: rooms, doors, lights, folios (demo)",
    )
    path = settings.VAR_DIR / "demo-guests.json"
    tokens = _read_json(path)
    for label in ROOMS:
        reuse = [f"--reuse={tokens[label]}"] if tokens.get(label) else []
        printed = _command("create_client_token", f"--label={label}", f"--meta=room={label.split()[-1]}", *reuse)
        tokens[label] = printed.strip().splitlines()[-1]  # the command prints the token last
    _write_secret_json(path, tokens)


def seed_policy() -> int | None:
    """Import demo/policy.yaml while no policy version exists; returns the new version's number."""
    # No command says "is there a policy yet?" (export_policies prints an empty policy either way).
    if apps.get_model("approvals", "PolicyVersion").objects.exists():
        return None
    printed = _command("import_policies", os.path.relpath(POLICY_FILE))
    found = re.match(r"Policy version (\d+):", printed)
    return int(found.group(1)) if found else None


def seed(*, force: bool = False) -> list[str]:
    """Everything above, in order; returns what to print. Raises NotDemoMode outside demo mode
    (an OPENAI_API_KEY is set) unless `force`."""
    if not settings.DEMO_MODE and not force:
        raise NotDemoMode("demo.seed only runs in demo mode (no OPENAI_API_KEY); use --force to override")
    lines = ["  Demo staff accounts (log in at /accounts/login/):", *seed_staff()]
    seed_hotel_and_guests()
    version = seed_policy()
    if version is not None:
        lines.append(f"  Demo policy installed (version {version}); see /admin/approvals/policyrule/")
    return lines


def main(argv: list[str] | None = None, stdout: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.seed", description="Set up demo mode for `make run`.")
    parser.add_argument("--force", action="store_true", help="run even when OPENAI_API_KEY is set")
    args = parser.parse_args(argv)
    if not apps.ready:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        django.setup()
    try:
        lines = seed(force=args.force)
    except NotDemoMode as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines), file=stdout or sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
