"""Passkeys (WebAuthn credentials) that staff register on their profile page, and the one-time
challenges of a registration or a step-up (a decision confirmed with a passkey). What they are
for: approvals/services/passkeys.py, docs/policies.md ("Step-up")."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class PasskeyCredential(models.Model):
    """One passkey of a staff member: what the browser's authenticator returned when it was
    registered (the credential id, the public key as COSE) and its signature counter."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="passkeys")
    credential_id = models.BinaryField(max_length=1023, unique=True)
    public_key = models.BinaryField()
    sign_count = models.PositiveBigIntegerField(default=0)
    name = models.CharField(max_length=100, help_text="The person's name for it: 'work phone', 'YubiKey'.")
    created = models.DateTimeField(default=timezone.now)
    last_used = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created", "pk"]
        verbose_name = "passkey"

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"


class WebAuthnChallenge(models.Model):
    """A challenge the server handed to a browser, kept until it is answered once (deleted then)
    or expires. A step-up's challenge is bound to the person and the request it decides, so an
    assertion made for one request cannot decide another, nor be replayed."""

    class Purpose(models.TextChoices):
        REGISTER = "register", "Register a passkey"
        STEP_UP = "step_up", "Step-up for a decision"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    purpose = models.CharField(max_length=10, choices=Purpose.choices)
    request = models.ForeignKey("approvals.ApprovalRequest", null=True, blank=True, on_delete=models.CASCADE)
    challenge = models.BinaryField(max_length=64, unique=True)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["expires_at"])]

    def __str__(self) -> str:
        return f"{self.purpose} challenge of {self.user_id}"
