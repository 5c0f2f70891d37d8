"""Stop: a staff member with approvals.stop_session ends a guest's live session, from a card on
the dashboard (fetch, JSON) or from a case page (a form, then back to the page).

An interface only: it checks who is asking, reads the reason and calls services.stop_session,
which closes the session, cancels its pending requests and audits who and why; the relay that
holds the session closes both sockets when it hears of it.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from approvals import services
from approvals.forms import StopForm
from approvals.models import RealtimeSession


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _back(request: HttpRequest) -> str:
    target = request.POST.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return "/"


@require_POST
def stop(request: HttpRequest, pk: int) -> HttpResponse:
    """POST reason=… (required), next=<the page to go back to> (form-encoded, with CSRF).
    With `Accept: application/json` (the dashboard) it answers 200 {session, cancelled}; 400
    {error} (no reason, too long); 403 {error} (logged out, not staff, no permission); 404;
    409 {error} (the session ended already, or it is a call: hang it up instead). A form post
    (the case page) goes back to `next` with the outcome as a message; 403 is a 403 page."""
    json = _wants_json(request)
    user = request.user
    if not user.is_authenticated:
        if json:
            return JsonResponse({"error": "Your session has ended. Log in again."}, status=403)
        return redirect_to_login(_back(request))
    session = RealtimeSession.objects.filter(pk=pk).first()
    if session is None:
        if json:
            return JsonResponse({"error": "There is no such session."}, status=404)
        messages.error(request, "There is no such session.")
        return redirect(_back(request))
    form = StopForm(request.POST)
    status, error = 200, ""
    cancelled: list[int] = []
    try:
        # Permission first: someone who may not stop sessions is not told to type a reason.
        services.check_may_stop(session, user)
        if not form.is_valid():
            raise ValueError(form.errors["reason"][0])
        done = services.stop_session(session, by=user, reason=form.cleaned_data["reason"])
        cancelled = [req.pk for req in done]
    except PermissionDenied as e:
        if not json:
            raise
        status, error = 403, str(e)
    except services.SessionNotStoppable as e:
        status, error = 409, str(e)
    except ValueError as e:
        status, error = 400, str(e)
    if json:
        if status != 200:
            return JsonResponse({"error": error}, status=status)
        body = {"id": session.pk, "status": session.status, "close_code": session.close_code}
        return JsonResponse({"session": body, "cancelled": cancelled})
    if status != 200:
        messages.error(request, error)
    else:
        messages.success(request, f"Session stopped; {len(cancelled)} pending request(s) cancelled.")
    return redirect(_back(request))
