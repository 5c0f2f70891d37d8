"""The staff UI: the live queue, the decision endpoint, the history.

Views are interfaces: they check who is asking, parse input, call one service and shape the
answer. The queue itself arrives over the WebSocket (approvals/consumers.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.http.multipartparser import MultiPartParserError
from django.http.request import split_domain_port
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from approvals import services
from approvals.forms import DecisionForm
from approvals.models import REVIEW_ONLY_GROUP, ApprovalRequest

HISTORY_PAGE_SIZE = 50

View = Callable[..., HttpResponse]


def staff_required(view: View) -> View:
    """Pages: anonymous → the login page; logged in but not staff → 403 (not a login loop)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not request.user.is_staff:
            # A compliance reviewer who is not staff lands here after logging in: send them to
            # their pages rather than to a 403.
            if request.user.has_perm("compliance.view_review"):
                return redirect("review_search")
            raise PermissionDenied("Only staff can see approval requests.")
        return view(request, *args, **kwargs)

    return wrapper


def _error(message: str, status: int, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def posted(request: HttpRequest) -> QueryDict | None:
    """The POSTed form, or None when the body cannot be parsed as one (a broken multipart
    body, a charset Python does not know): the JSON views answer 400 in JSON then, not
    Django's HTML error page."""
    try:
        return request.POST
    except (MultiPartParserError, LookupError, ValueError):
        return None


def relying_party(request: HttpRequest) -> services.RelyingParty:
    """Who passkeys sign for here: the host this request came to (Django checked it against
    ALLOWED_HOSTS), without its port, and its origin; WEBAUTHN_RP_ID / WEBAUTHN_ORIGIN win."""
    host = request.get_host()
    domain, _port = split_domain_port(host)
    return services.RelyingParty.for_host(host=domain, origin=f"{request.scheme}://{host}")


def step_up_of(request: HttpRequest, assertion: str) -> services.StepUp | None:
    """The step-up a decision's POST carries (the browser's assertion as JSON), if any."""
    return services.StepUp(assertion, relying_party(request)) if assertion else None


@require_GET
@staff_required
def dashboard(request: HttpRequest) -> HttpResponse:
    groups = list(request.user.groups.values_list("name", flat=True))
    return render(
        request,
        "approvals/dashboard.html",
        {
            "max_reason_length": services.MAX_REASON_LENGTH,
            "max_internal_note_length": services.MAX_INTERNAL_NOTE_LENGTH,
            "timeout_seconds": settings.APPROVAL_TIMEOUT_SECONDS,
            "groups": groups,
            # A compliance reviewer sees the queue without buttons (duties do not mix; the
            # services refuse their decisions anyway: services.check_may_decide).
            "review_only": REVIEW_ONLY_GROUP in groups,
            "review_group": REVIEW_ONLY_GROUP,
            "edit_grant_minutes": services.EDIT_GRANT_MINUTES,
        },
    )


@require_POST
def decide(request: HttpRequest, pk: int) -> JsonResponse:
    """POST decision=approve|deny, guest_note=… (or reason=…, its older name), internal_note=…,
    confirmed=1, step_up=<the passkey assertion as JSON>, arguments=<edited JSON> (approve with
    changes), scope=call|session|guest, minutes=…, constraints=<JSON object> (form-encoded, CSRF token in
    X-CSRFToken). Answers JSON: 200 {request}; 400 {error[, field, code]} (bad input, or a note
    or confirmation the rule requires is missing); 403 {error[, step_up]} (not allowed, or the
    step-up is missing or does not verify); 404; 409 {error, request} (decided already)."""
    # JSON answers, not a redirect to the login page: the caller is fetch(), not a person.
    if not request.user.is_authenticated:
        return _error("Your session has ended. Log in again.", 403)
    if not request.user.is_staff:
        return _error("Only staff can decide approval requests.", 403)
    req = ApprovalRequest.objects.filter(pk=pk).first()
    if req is None:
        return _error("There is no such request.", 404)
    data = posted(request)
    if data is None:
        return _error("The form could not be read.", 400)
    form = DecisionForm(data)
    if not form.is_valid():
        errors = form.errors.get_json_data()
        first = next(iter(errors.values()))[0]["message"]
        return _error(first, 400, errors=errors)
    try:
        req = services.decide(
            req,
            approve=form.approve,
            by=request.user,
            guest_note=form.guest_note_text,
            internal_note=form.cleaned_data["internal_note"],
            confirmed=form.cleaned_data["confirmed"],
            step_up=step_up_of(request, form.cleaned_data["step_up"]),
            arguments=form.cleaned_data["arguments"],
            scope=form.cleaned_data["scope"] or "call",
            minutes=form.cleaned_data["minutes"],
            constraints=form.cleaned_data["constraints"],
        )
    except services.TransitionError as e:
        current = e.request.to_dict() if e.request is not None else None
        return _error(str(e), 409, request=current)
    except services.RequirementMissing as e:
        # What the rule requires was not given (a note, the confirmation): nothing changed.
        return _error(str(e), 400, field=e.field, code=e.code)
    except services.StepUpRequired as e:
        # No passkey assertion, or one that does not verify: the card asks for the passkey.
        return _error(str(e), 403, step_up=True, passkeys_url=reverse("passkeys"))
    except ValueError as e:
        return _error(str(e), 400)
    except PermissionDenied as e:
        # Not one of the groups this request's step names: the policy decides who may.
        return _error(str(e), 403)
    # 200 with the request as it is now: decided, or still pending with this approval counted
    # toward its quorum (request.policy.quorum_label says how far).
    return JsonResponse({"request": ApprovalRequest.objects.for_one().get(pk=req.pk).to_dict()})


@require_POST
def opened(request: HttpRequest, pk: int) -> JsonResponse:
    """POST from the dashboard when it has shown this pending request to the staff member
    (audit OPENED, once per person). Answers {"recorded": bool}; 403/404 as decide()."""
    if not request.user.is_authenticated:
        return _error("Your session has ended. Log in again.", 403)
    if not request.user.is_staff:
        return _error("Only staff can open approval requests.", 403)
    req = ApprovalRequest.objects.filter(pk=pk).first()
    if req is None:
        return _error("There is no such request.", 404)
    return JsonResponse({"recorded": services.mark_opened(req, by=request.user)})


@require_POST
def claim(request: HttpRequest, pk: int) -> JsonResponse:
    """POST "I'm on it" (implicit=1: the person opened the card's details; then a colleague's
    claim is left alone and answered 200 with claimed false). Answers JSON like decide():
    200 {claimed, request}; 403 (not staff / may not decide it), 404, 409 {error, request}
    (decided, or someone else is on it)."""
    return _claim_or_release(request, pk, release=False)


@require_POST
def release(request: HttpRequest, pk: int) -> JsonResponse:
    """POST: give up one's claim. 200 {released, request}; 403/404 as claim()."""
    return _claim_or_release(request, pk, release=True)


def _claim_or_release(request: HttpRequest, pk: int, *, release: bool) -> JsonResponse:
    if not request.user.is_authenticated:
        return _error("Your session has ended. Log in again.", 403)
    if not request.user.is_staff:
        return _error("Only staff can claim approval requests.", 403)
    req = ApprovalRequest.objects.filter(pk=pk).first()
    if req is None:
        return _error("There is no such request.", 404)
    answer: dict[str, Any]
    if release:
        answer = {"released": services.release_claim(req, by=request.user)}
    else:
        try:
            answer = {"claimed": services.claim(req, by=request.user)}
        except services.TransitionError as e:
            current = e.request.to_dict() if e.request is not None else None
            if request.POST.get("implicit") == "1" and current is not None and current["status"] == "pending":
                return JsonResponse({"claimed": False, "request": current})
            return _error(str(e), 409, request=current)
        except PermissionDenied as e:
            return _error(str(e), 403)
    return JsonResponse({**answer, "request": ApprovalRequest.objects.for_one().get(pk=req.pk).to_dict()})


@require_GET
@staff_required
def history(request: HttpRequest) -> HttpResponse:
    # reached_by, not visible_to: a request that escalated away from a group stays in its history.
    requests = (
        ApprovalRequest.objects.history()
        .reached_by(request.user)
        .select_related("decided_by", "grant")
        .prefetch_related("grants_given")
    )
    status = request.GET.get("status", "")
    # An unknown filter value shows everything rather than an empty page.
    if status in ApprovalRequest.Status.values and status != ApprovalRequest.Status.PENDING:
        requests = requests.filter(status=status)
    else:
        status = ""
    page = Paginator(requests, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    statuses = [(value, label) for value, label in ApprovalRequest.Status.choices if value != "pending"]
    return render(request, "approvals/history.html", {"page": page, "status": status, "statuses": statuses})
