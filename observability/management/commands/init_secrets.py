"""python manage.py init_secrets [--path FILE] [--force]: write production keys to a 0600 env file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from observability import secrets


class Command(BaseCommand):
    help = (
        "Write a fresh SECRET_KEY, FIELD_ENCRYPTION_KEYS and AUDIT_SIGNING_KEY to an env file (mode 0600), "
        "for systemd's EnvironmentFile= or Docker's env_file:. Refuses to overwrite one without --force."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--path", type=Path, help="the file to write (default: SECRETS_FILE, var/secrets.env)")
        parser.add_argument(
            "--force", action="store_true", help="replace an existing file (its keys are lost: back it up first)"
        )

    def handle(self, *args: Any, path: Path | None, force: bool, **options: Any) -> None:
        target = path or settings.SECRETS_FILE
        try:
            names = secrets.write(target, force=force)
        except secrets.SecretsFileExists as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Wrote {', '.join(names)} to {target} (mode 0600).")
        if target != settings.SECRETS_FILE:
            self.stdout.write(
                f"Point SECRETS_FILE at it, or load it as an environment file (systemd EnvironmentFile={target})."
            )
