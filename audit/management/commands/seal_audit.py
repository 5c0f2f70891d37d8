"""Sign the audit chain's head now (the beat task does it every minute)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from audit import chain, sealing


class Command(BaseCommand):
    help = "Seal the audit chain: sign its current head and store the checkpoint."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--publish",
            metavar="DIR",
            help="also append every checkpoint not yet published there to DIR/checkpoints.jsonl "
            "(as AUDIT_CHECKPOINT_PUBLISH_DIR does at each seal)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        checkpoint = sealing.ensure_sealed()
        if options["publish"]:
            written = sealing.publish(options["publish"])
            self.stdout.write(f"Published {written} checkpoints to {options['publish']}.")
        if checkpoint is None:
            self.stdout.write("Nothing to seal: the head is already sealed (or the chain is empty).")
        else:
            key = chain.key_fingerprint(bytes.fromhex(checkpoint.public_key))
            self.stdout.write(f"Sealed row #{checkpoint.seq} with key {key}.")
