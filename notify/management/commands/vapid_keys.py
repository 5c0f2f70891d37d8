"""Print a new VAPID key pair for Web Push, as lines for the environment (.env):

    python manage.py vapid_keys

Keep the private key secret (VAPID_PRIVATE_KEY, or a file named by VAPID_PRIVATE_KEY_FILE).
Changing the pair later makes every browser subscribe again.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from notify.push import new_key_pair


class Command(BaseCommand):
    help = "Print a new VAPID key pair (VAPID_PUBLIC_KEY, VAPID_PRIVATE_KEY) for Web Push."

    def handle(self, *args: Any, **options: Any) -> None:
        public, private = new_key_pair()
        self.stdout.write(f"VAPID_PUBLIC_KEY={public}")
        self.stdout.write(f"VAPID_PRIVATE_KEY={private}")
