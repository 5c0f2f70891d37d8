"""Print the audit key's public half and fingerprint, the earlier keys still trusted, and which keys
signed the stored checkpoints: what a key rotation needs (docs/compliance.md)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count, Max, Min

from audit import chain, signing
from audit.models import Checkpoint


class Command(BaseCommand):
    help = (
        "Show the public key and fingerprint of AUDIT_SIGNING_KEY (to add to AUDIT_TRUSTED_PUBLIC_KEYS "
        "before a rotation), the keys trusted, and the keys that signed the stored checkpoints."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            current = signing.public_key_raw() if settings.AUDIT_SIGNING_KEY else None
            earlier = signing.earlier_public_keys()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        out = self.stdout.write
        if current is None:
            out("Current key: none (AUDIT_SIGNING_KEY is not set)")
        else:
            out(f"Current key: {chain.key_fingerprint(current)}")
            out(f"  public key (base64, for AUDIT_TRUSTED_PUBLIC_KEYS): {signing.public_key_base64(current)}")
            out(f"  public key (hex, as in checkpoints and bundles): {current.hex()}")
        out("Earlier keys trusted (AUDIT_TRUSTED_PUBLIC_KEYS):" + ("" if earlier else " none"))
        for raw in earlier:
            out(f"  {chain.key_fingerprint(raw)}  {signing.public_key_base64(raw)}")
        trusted = {current, *earlier}
        signers = (
            Checkpoint.objects.values("public_key")
            .annotate(n=Count("pk"), first=Min("seq"), last=Max("seq"))
            .order_by("first")
        )
        out("Keys that signed stored checkpoints:" + ("" if signers else " none yet"))
        for signer in signers:
            raw = bytes.fromhex(signer["public_key"])
            state = "current" if raw == current else "trusted" if raw in trusted else "NOT TRUSTED"
            out(
                f"  {chain.key_fingerprint(raw)} ({state}): {signer['n']} checkpoints, "
                f"#{signer['first']}..#{signer['last']}"
            )
