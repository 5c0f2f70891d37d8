"""Passkeys on a staff member's profile page (/profile/passkeys/: list, register, delete), and the
step-up challenge of a decision (/requests/<id>/step-up/options). Interfaces only: the WebAuthn
work is approvals/services/passkeys.py; the decision itself is views.decide."""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from approvals import services
from approvals.models import ApprovalRequest
from approvals.views import _error, relying_party, staff_required

# A registration response is a few kilobytes (an attestation statement with certificates).
MAX_BODY = 64_000


def _json_staff(request: HttpRequest) -> JsonResponse | None:
    # JSON answers for fetch(), never the login page.
    if not request.user.is_authenticated:
        return _error(_("Your session has ended. Log in again."), 403)
    if not (request.user.is_active and request.user.is_staff):
        return _error(_("Only staff can use passkeys here."), 403)
    return None


@require_GET
@staff_required
def passkeys(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "approvals/passkeys.html",
        {"passkeys": request.user.passkeys.all(), "max_name": services.passkeys.MAX_NAME_LENGTH},  # type: ignore[union-attr]
    )


@require_POST
def registration_options(request: HttpRequest) -> JsonResponse:
    """POST → {"options": PublicKeyCredentialCreationOptions as JSON}."""
    refused = _json_staff(request)
    if refused is not None:
        return refused
    options = services.registration_options(request.user, rp=relying_party(request))  # type: ignore[arg-type]
    return JsonResponse({"options": options})


@require_POST
def register(request: HttpRequest) -> JsonResponse:
    """POST JSON {"credential": the browser's PublicKeyCredential as JSON, "name": "…"} →
    200 {"passkey": {id, name}}, 400 {error}."""
    refused = _json_staff(request)
    if refused is not None:
        return refused
    if len(request.body) > MAX_BODY:
        return _error(_("The browser's answer is too large."), 400)
    try:
        body = json.loads(request.body or b"{}")
        credential, name = body["credential"], str(body.get("name") or "")
    except (ValueError, KeyError, TypeError):
        return _error(_("Send the browser's credential as JSON."), 400)
    try:
        passkey = services.register_passkey(
            request.user,  # type: ignore[arg-type]
            credential=credential,
            name=name,
            rp=relying_party(request),
        )
    except services.PasskeyError as exc:
        return _error(str(exc), 400)
    return JsonResponse({"passkey": {"id": passkey.pk, "name": passkey.name}})


@require_POST
@staff_required
def delete(request: HttpRequest, pk: int) -> HttpResponse:
    if services.delete_passkey(request.user, pk=pk):  # type: ignore[arg-type]
        messages.success(request, _("The passkey was removed."))
    else:
        messages.error(request, _("You have no such passkey."))
    return redirect("passkeys")


@require_POST
def step_up_options(request: HttpRequest, pk: int) -> JsonResponse:
    """POST → {"options": PublicKeyCredentialRequestOptions as JSON}: a challenge for this person
    and this request, to send back with the decision (views.decide's step_up field). 403 when
    they may not decide it or have no passkey, 404, 409 when it is no longer pending."""
    refused = _json_staff(request)
    if refused is not None:
        return refused
    req = ApprovalRequest.objects.filter(pk=pk).first()
    if req is None:
        return _error(_("There is no such request."), 404)
    if req.status != ApprovalRequest.Status.PENDING:
        current = ApprovalRequest.objects.for_one().get(pk=pk)
        return _error(services.closed_message(current), 409, request=current.to_dict())
    if not req.may_decide(request.user):
        return _error(_("You may not decide this request."), 403)
    try:
        options = services.step_up_options(req, user=request.user, rp=relying_party(request))  # type: ignore[arg-type]
    except services.StepUpRequired as exc:
        return _error(str(exc), 403, step_up=True, passkeys_url=reverse("passkeys"))
    return JsonResponse({"options": options})
