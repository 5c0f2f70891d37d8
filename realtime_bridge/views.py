"""HTTP interfaces of the sideband and Responses paths: OpenAI's webhook, staff call actions,
the runs API and the browser-call (WebRTC) endpoints. Views check who is asking, parse input,
call realtime_bridge.calls / runs, and shape JSON."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any

import openai
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.translation import gettext
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from approvals import services
from approvals.models import ClientToken
from realtime_bridge import calls, runs
from realtime_bridge.models import Call, ResponsesRun

if TYPE_CHECKING:
    from django.contrib.auth.models import User

log = logging.getLogger(__name__)

View = Callable[..., HttpResponse]


def _error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _no_view(request: HttpRequest) -> HttpResponse:
    # The CSRF check is run by hand (see _caller); it needs a view to be handed, never called.
    return HttpResponse()


def _staff_user(request: HttpRequest) -> User:
    """The staff member a `_staff_json` view serves (it has turned everyone else away)."""
    user = request.user
    assert isinstance(user, User)
    return user


def _staff_json(view: View) -> View:
    """JSON endpoints for staff: 403 JSON rather than a login redirect (the caller is fetch())."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return _error("Your session has ended. Log in again.", 403)
        if not request.user.is_staff:
            return _error("Only staff can do this.", 403)
        return view(request, *args, **kwargs)

    return wrapper


class _Caller:
    """Who calls an API endpoint: a client token (Bearer) or a logged-in user."""

    def __init__(self, token: ClientToken | None, user: Any) -> None:
        self.token = token
        self.user = user


def _api_caller(request: HttpRequest, *, staff_only: bool) -> _Caller | JsonResponse:
    """Bearer client token (no CSRF: no cookie is involved), or a logged-in session, whose
    unsafe requests must pass Django's CSRF check like any form."""
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        token = ClientToken.objects.for_plaintext(auth[7:].strip())
        if token is None:
            return _error("Invalid client token.", 401)
        return _Caller(token, None)
    user = request.user
    if not user.is_authenticated:
        return _error("Authenticate with a client token (Bearer) or log in.", 401)
    if staff_only and not user.is_staff:
        return _error("Only staff can do this.", 403)
    if request.method == "POST":
        refused = CsrfViewMiddleware(_no_view).process_view(request, _no_view, (), {})
        if refused is not None:
            return _error("CSRF check failed.", 403)
    return _Caller(None, user)


# Starting a session from a login (a browser call's client secret, a Responses run) puts an agent
# to work for a guest and costs money: it needs this permission, not only a login (superusers
# have it; give it to a group in the admin). A client token (Bearer) is its own authority.
START_SESSION_PERMISSION = "approvals.start_session"


def _refuse_start(caller: _Caller) -> JsonResponse | None:
    """403 JSON for a logged-in caller without the permission to start sessions; else None."""
    if caller.token is None and not caller.user.has_perm(START_SESSION_PERMISSION):
        message = gettext(
            "Starting a call or a run needs the permission “Can start sessions” (%(perm)s): ask an administrator."
        ) % {"perm": START_SESSION_PERMISSION}
        return JsonResponse({"error": message, "permission": START_SESSION_PERMISSION}, status=403)
    return None


def _owner(caller: _Caller) -> str:
    return f"token:{caller.token.pk}" if caller.token is not None else f"user:{caller.user.pk}"


def _json_body(request: HttpRequest) -> dict[str, Any] | None:
    if request.content_type == "application/json":
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None
    return request.POST.dict()


# --- OpenAI's webhook -----------------------------------------------------------------------


@csrf_exempt
@require_POST
def openai_webhook(request: HttpRequest) -> HttpResponse:
    """`realtime.call.incoming` (REALTIME_PROTOCOL.md 8.2). A webhook that is not OpenAI's
    (signature, timestamp) is 400 and changes nothing; one whose webhook-id or call was seen
    before is acknowledged (200, so the sender stops retrying) and does nothing."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        event = calls.verify_webhook(request.body, headers)
    except calls.WebhookRefused as exc:
        log.warning("webhook refused: %s", exc)
        return _error("Webhook refused: signature, timestamp or body not valid.", 400)
    webhook_id = headers.get("webhook-id", "")
    call = calls.record_webhook(webhook_id=webhook_id, event=event)
    if call is None:
        return JsonResponse({"status": "ignored"})
    try:
        call = calls.answer_incoming(call)
    except openai.APIError as exc:
        # Not answered: a 5xx makes the sender retry, and the retry must not look like a duplicate.
        log.exception("call %s could not be answered", call.call_id)
        calls.release_webhook(webhook_id=webhook_id, call=call)
        return _error(f"The call could not be answered: {exc}", 502)
    return JsonResponse({"status": call.status, "call": call.to_dict()})


# --- Calls: state and staff actions ----------------------------------------------------------


@require_GET
@_staff_json
def call_detail(request: HttpRequest, pk: int) -> JsonResponse:
    call = Call.objects.select_related("route").filter(pk=pk).first()
    if call is None:
        return _error("There is no such call.", 404)
    return JsonResponse({"call": call.to_dict()})


@require_POST
@_staff_json
def call_hangup(request: HttpRequest, pk: int) -> JsonResponse:
    call = Call.objects.filter(pk=pk).first()
    if call is None:
        return _error("There is no such call.", 404)
    try:
        call = calls.hang_up(call, by=_staff_user(request))
    except calls.CallError as exc:
        return _error(str(exc), 409)
    return JsonResponse({"call": call.to_dict()})


@require_POST
@_staff_json
def call_refer(request: HttpRequest, pk: int) -> JsonResponse:
    call = Call.objects.filter(pk=pk).first()
    if call is None:
        return _error("There is no such call.", 404)
    target = (request.POST.get("target_uri") or "").strip()
    if not target:
        return _error("Give the number or SIP address to transfer to (target_uri).", 400)
    try:
        call = calls.transfer(call, target_uri=target, by=_staff_user(request))
    except calls.CallError as exc:
        return _error(str(exc), 409)
    return JsonResponse({"call": call.to_dict()})


# --- Responses API runs -----------------------------------------------------------------------


@csrf_exempt  # checked in _api_caller for cookie sessions; a Bearer token carries no ambient authority
@require_POST
def runs_create(request: HttpRequest) -> JsonResponse:
    """POST /api/runs {"input", "instructions"?, "model"?} → 202 {"run": …}."""
    caller = _api_caller(request, staff_only=True)
    if isinstance(caller, JsonResponse):
        return caller
    refused = _refuse_start(caller)
    if refused is not None:
        return refused
    body = _json_body(request)
    if body is None:
        return _error("The body must be a JSON object.", 400)
    text, instructions, model = body.get("input"), body.get("instructions", ""), body.get("model", "")
    if not isinstance(text, str) or not text.strip():
        return _error("'input' is required: the user's message.", 400)
    if len(text) > runs.MAX_INPUT_CHARS or not isinstance(instructions, str) or not isinstance(model, str):
        return _error("'input' is too long, or 'instructions'/'model' are not strings.", 400)
    run = runs.start_run(input=text, instructions=instructions, model=model[:100], token=caller.token, user=caller.user)
    return JsonResponse({"run": run.to_dict()}, status=202)


@require_GET
def run_detail(request: HttpRequest, pk: int) -> JsonResponse:
    caller = _api_caller(request, staff_only=True)
    if isinstance(caller, JsonResponse):
        return caller
    run = ResponsesRun.objects.filter(pk=pk).first()
    # A token sees only its own runs; staff see all. Someone else's run is as absent as none.
    if run is None or (caller.token is not None and run.client_token_id != caller.token.pk):
        return _error("There is no such run.", 404)
    return JsonResponse({"run": run.to_dict()})


# --- Browser calls (WebRTC) -------------------------------------------------------------------


@csrf_exempt  # see runs_create
@require_POST
def webrtc_session(request: HttpRequest) -> JsonResponse:
    """Mint a client secret whose session holds the MCP servers (credentials stay here)."""
    caller = _api_caller(request, staff_only=False)
    if isinstance(caller, JsonResponse):
        return caller
    refused = _refuse_start(caller)
    if refused is not None:
        return refused
    if caller.token is not None:
        label, metadata = caller.token.label, dict(caller.token.metadata or {})
    else:
        label, metadata = f"Browser call: {services.user_label(caller.user)}", {"user": caller.user.get_username()}
    # Whoever mints the secret started the call: they never decide its requests.
    started_by = caller.user.pk if caller.token is None else None
    try:
        minted = calls.mint_client_secret(label=label, metadata=metadata, owner=_owner(caller), started_by=started_by)
    except openai.APIError as exc:
        log.warning("client secret not minted: %s", exc)
        return _error("Could not start a call right now.", 502)
    return JsonResponse(minted)


@csrf_exempt  # see runs_create
@require_POST
def webrtc_attach(request: HttpRequest) -> JsonResponse:
    """The browser created its call: {"call_id": "rtc_…", "ticket": …} → the bridge attaches."""
    caller = _api_caller(request, staff_only=False)
    if isinstance(caller, JsonResponse):
        return caller
    body = _json_body(request)
    if body is None or not isinstance(body.get("call_id"), str) or not isinstance(body.get("ticket"), str):
        return _error('Send {"call_id": "rtc_…", "ticket": "…"}.', 400)
    try:
        call = calls.attach_browser_call(call_id=body["call_id"], ticket=body["ticket"], owner=_owner(caller))
    except calls.CallError as exc:
        return _error(str(exc), 400)
    return JsonResponse({"call": call.to_dict()}, status=201)
