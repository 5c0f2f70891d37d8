"""Passkeys: a staff member registers them from their profile page, and confirms a decision with
one when its rule requires a step-up (docs/policies.md, "Step-up").

Every challenge the server hands out is stored (WebAuthnChallenge) with a short expiry and taken
back exactly once, by a conditional DELETE: of two answers to one challenge only one verifies,
and a step-up's challenge names the person and the request it was made for. The relying party
(`rp_id`) and the origin the browser must have signed come from the caller (the view, from the
HTTP request: the host Django's ALLOWED_HOSTS accepted), unless WEBAUTHN_RP_ID / WEBAUTHN_ORIGIN
fix them in settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import webauthn
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from webauthn.helpers import bytes_to_base64url, parse_client_data_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from approvals.models import ApprovalRequest, AuditKind, PasskeyCredential, WebAuthnChallenge
from approvals.services._common import StepUpRequired, user_label
from audit import writer

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# How long a browser has to answer a challenge: a person touching a key or reading a fingerprint.
CHALLENGE_SECONDS = 120
MAX_NAME_LENGTH = 100
Purpose = WebAuthnChallenge.Purpose


class PasskeyError(ValueError):
    """A registration that cannot be used (expired challenge, a response that does not verify,
    a passkey already registered). Nothing was stored."""


@dataclass(frozen=True)
class RelyingParty:
    """Who the browser signs for: the RP ID (a host name) and the origin(s) it must report."""

    rp_id: str
    origin: str

    @classmethod
    def for_host(cls, *, host: str, origin: str) -> RelyingParty:
        """From the HTTP request's host (without port) and origin, unless settings fix them."""
        return cls(
            rp_id=getattr(settings, "WEBAUTHN_RP_ID", "") or host,
            origin=getattr(settings, "WEBAUTHN_ORIGIN", "") or origin,
        )


@dataclass(frozen=True)
class StepUp:
    """A passkey assertion sent with a decision (the browser's PublicKeyCredential as JSON), and
    the relying party it must verify for."""

    assertion: str | dict[str, Any]
    rp: RelyingParty


def _rp_name() -> str:
    return getattr(settings, "WEBAUTHN_RP_NAME", "") or "Countersign"


def _store_challenge(user: User, purpose: str, challenge: bytes, req: ApprovalRequest | None = None) -> None:
    now = timezone.now()
    # Answered or abandoned: an expired challenge is only clutter. The index on expires_at makes
    # this cheap, and doing it here needs no periodic task.
    WebAuthnChallenge.objects.filter(expires_at__lte=now).delete()
    WebAuthnChallenge.objects.create(
        user=user,
        purpose=purpose,
        request=req,
        challenge=challenge,
        expires_at=now + timedelta(seconds=CHALLENGE_SECONDS),
    )


def _take_challenge(
    credential: str | dict[str, Any], *, user: User, purpose: str, req: ApprovalRequest | None
) -> bytes:
    """The challenge the browser signed, if the server gave it to this person (for this request)
    and it has not expired nor been used: deleted here, so it verifies once. Raises ValueError."""
    try:
        data = json.loads(credential) if isinstance(credential, str) else credential
        client_data = webauthn.base64url_to_bytes(data["response"]["clientDataJSON"])
        challenge = parse_client_data_json(client_data).challenge
    except (ValueError, KeyError, TypeError, WebAuthnException) as exc:
        raise ValueError("The browser's answer is not a WebAuthn credential.") from exc
    taken, _ = WebAuthnChallenge.objects.filter(
        challenge=challenge, user=user, purpose=purpose, request=req, expires_at__gt=timezone.now()
    ).delete()
    if not taken:
        raise ValueError("This passkey prompt has expired or was already used. Try again.")
    return challenge


def _credential_id(credential: str | dict[str, Any]) -> bytes:
    data = json.loads(credential) if isinstance(credential, str) else credential
    try:
        return webauthn.base64url_to_bytes(str(data["rawId"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError("The browser's answer has no credential id.") from exc


# Registration -----------------------------------------------------------------------------------


def registration_options(user: User, *, rp: RelyingParty) -> dict[str, Any]:
    """The options for navigator.credentials.create() (JSON-ready): a new challenge for this
    person, their existing passkeys excluded. Side effect: stores the challenge."""
    options = webauthn.generate_registration_options(
        rp_id=rp.rp_id,
        rp_name=_rp_name(),
        user_id=str(user.pk).encode(),
        user_name=user.get_username(),
        user_display_name=user_label(user),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=bytes(c)) for c in user.passkeys.values_list("credential_id", flat=True)
        ],
        timeout=CHALLENGE_SECONDS * 1000,
    )
    _store_challenge(user, Purpose.REGISTER, options.challenge)
    out: dict[str, Any] = json.loads(webauthn.options_to_json(options))
    return out


def register_passkey(user: User, *, credential: str | dict[str, Any], name: str, rp: RelyingParty) -> PasskeyCredential:
    """Verify the browser's answer to registration_options() and keep the passkey. Preconditions:
    the challenge was given to `user` within CHALLENGE_SECONDS. Side effects: the challenge is
    used up (even when verification then fails); the PasskeyCredential and an audit row
    (PASSKEY_ADDED). Raises PasskeyError, with nothing stored."""
    name = (name or "").strip()[:MAX_NAME_LENGTH] or "Passkey"
    try:
        challenge = _take_challenge(credential, user=user, purpose=Purpose.REGISTER, req=None)
        verified = webauthn.verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=rp.origin,
            require_user_verification=True,
        )
    except (ValueError, WebAuthnException) as exc:
        raise PasskeyError(f"The passkey could not be registered: {exc}") from None
    with transaction.atomic():
        if PasskeyCredential.objects.filter(credential_id=verified.credential_id).exists():
            raise PasskeyError("This passkey is registered already.")
        passkey = PasskeyCredential.objects.create(
            user=user,
            credential_id=verified.credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            name=name,
        )
        writer.record(
            kind=AuditKind.PASSKEY_ADDED,
            actor=user,
            actor_label=user_label(user),
            payload={
                "passkey_id": passkey.pk,
                "name": name,
                "credential_id": bytes_to_base64url(verified.credential_id),
            },
        )
    return passkey


def delete_passkey(user: User, *, pk: int) -> bool:
    """Remove one of `user`'s passkeys. Side effect: an audit row (PASSKEY_REMOVED). False when
    they have no passkey with this id (someone else's is never touched)."""
    with transaction.atomic():
        passkey = PasskeyCredential.objects.filter(user=user, pk=pk).first()
        if passkey is None:
            return False
        payload = {
            "passkey_id": passkey.pk,
            "name": passkey.name,
            "credential_id": bytes_to_base64url(passkey.credential_id),
        }
        passkey.delete()
        writer.record(kind=AuditKind.PASSKEY_REMOVED, actor=user, actor_label=user_label(user), payload=payload)
    return True


# Step-up ----------------------------------------------------------------------------------------


def step_up_options(req: ApprovalRequest, *, user: User, rp: RelyingParty) -> dict[str, Any]:
    """The options for navigator.credentials.get() (JSON-ready) to confirm a decision of `req`
    by `user`: a challenge bound to both, their passkeys allowed, user verification required.
    Side effect: stores the challenge. Raises StepUpRequired when they have no passkey."""
    ids = [bytes(c) for c in user.passkeys.values_list("credential_id", flat=True)]
    if not ids:
        raise StepUpRequired("This rule asks for your passkey: register one on your profile page (Passkeys) first.")
    options = webauthn.generate_authentication_options(
        rp_id=rp.rp_id,
        allow_credentials=[PublicKeyCredentialDescriptor(id=i) for i in ids],
        user_verification=UserVerificationRequirement.REQUIRED,
        timeout=CHALLENGE_SECONDS * 1000,
    )
    _store_challenge(user, Purpose.STEP_UP, options.challenge, req)
    out: dict[str, Any] = json.loads(webauthn.options_to_json(options))
    return out


def verify_step_up(req: ApprovalRequest, *, user: User, step_up: StepUp | None) -> PasskeyCredential:
    """Check a decision's passkey assertion: made for a challenge given to `user` for `req`
    (unexpired, not used before), by one of `user`'s passkeys, signed for the relying party with
    user verification. Side effects: the challenge is used up; the passkey's sign_count and
    last_used move on. Raises StepUpRequired (nothing else changed)."""
    if step_up is None or not step_up.assertion:
        raise StepUpRequired("This rule asks you to confirm with your passkey.")
    try:
        challenge = _take_challenge(step_up.assertion, user=user, purpose=Purpose.STEP_UP, req=req)
        raw_id = _credential_id(step_up.assertion)
    except ValueError as exc:
        raise StepUpRequired(str(exc)) from None
    passkey = PasskeyCredential.objects.filter(user=user, credential_id=raw_id).first()
    if passkey is None:
        raise StepUpRequired("That passkey is not one of yours: use a passkey registered on your profile page.")
    try:
        verified = webauthn.verify_authentication_response(
            credential=step_up.assertion,
            expected_challenge=challenge,
            expected_rp_id=step_up.rp.rp_id,
            expected_origin=step_up.rp.origin,
            credential_public_key=bytes(passkey.public_key),
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=True,
        )
    except WebAuthnException as exc:
        raise StepUpRequired(f"The passkey confirmation did not verify: {exc}") from None
    # Only forward: two step-ups at once by one person never move the counter back.
    PasskeyCredential.objects.filter(pk=passkey.pk, sign_count__lte=verified.new_sign_count).update(
        sign_count=verified.new_sign_count, last_used=timezone.now()
    )
    passkey.refresh_from_db()
    return passkey


def step_up_record(passkey: PasskeyCredential) -> dict[str, Any]:
    """What the decision's audit row keeps of the step-up that confirmed it."""
    return {
        "passkey_id": passkey.pk,
        "credential_id": bytes_to_base64url(bytes(passkey.credential_id)),
        "sign_count": passkey.sign_count,
    }
