"""The dashboard's decisions beyond yes and no (issue 14): approve all the requests of one turn,
the list of live grants, and revoking one. Interfaces only: they check who asks, parse the
form, call one service and answer JSON (fetch() from static/js/grants.js)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from approvals import services
from approvals.forms import ApproveAllForm
from approvals.models import ApprovalRequest, Grant
from approvals.views import posted

MAX_GRANTS_LISTED = 100


def _error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _staff(request: HttpRequest) -> User | JsonResponse:
    """The staff member asking, or the JSON refusal (not a redirect to the login page: the
    caller is fetch(), not a person)."""
    user = request.user
    if not user.is_authenticated:
        return _error("Your session has ended. Log in again.", 403)
    if not isinstance(user, User) or not user.is_staff:
        return _error("Only staff can decide approval requests.", 403)
    return user


@require_POST
def approve_all(request: HttpRequest) -> JsonResponse:
    """POST ids=1,2,3 (the cards of one turn the person saw), confirmed=1, guest_note=….
    Each is decided through services.decide_all (each its own checks and audit rows). Answers
    200 {results: [{id, ok, error, request}]}; 400 (not confirmed, not one turn), 403."""
    user = _staff(request)
    if isinstance(user, JsonResponse):
        return user
    data = posted(request)
    if data is None:
        return _error("The form could not be read.", 400)
    form = ApproveAllForm(data)
    if not form.is_valid():
        errors = form.errors.get_json_data()
        return _error(next(iter(errors.values()))[0]["message"], 400)
    ids = form.request_ids
    found = {req.pk: req for req in ApprovalRequest.objects.for_one().filter(pk__in=ids)}
    turns = {(req.session_id, req.turn) for req in found.values()}
    if len(found) != len(ids) or len(turns) != 1:
        # Approve all is for the requests one turn made together, never a mass approval.
        return _error("Approve all works on the requests of one turn only.", 400)
    results = services.decide_all(
        [found[pk] for pk in ids],
        by=user,
        guest_note=form.cleaned_data["guest_note"],
        confirmed=form.cleaned_data["confirmed"],
    )
    current = {req.pk: req for req in ApprovalRequest.objects.for_one().filter(pk__in=ids)}
    return JsonResponse(
        {
            "results": [
                {"id": req.pk, "ok": why is None, "error": why, "request": current[req.pk].to_dict()}
                for req, why in results
            ]
        }
    )


def _visible_grants(request: HttpRequest) -> Q:
    """Grants whose decision the person's groups could have made (superusers: all)."""
    if request.user.is_superuser:
        return Q()
    reachable = ApprovalRequest.objects.reached_by(request.user).values("pk")
    return Q(source_request__in=reachable)


@require_GET
def grant_list(request: HttpRequest) -> JsonResponse:
    """GET: the live grants this person's groups could have made, newest first:
    {grants: [Grant.to_dict() + session label]}."""
    user = _staff(request)
    if isinstance(user, JsonResponse):
        return user
    now = timezone.now()
    grants = (
        Grant.objects.live(now)
        .filter(_visible_grants(request))
        .select_related("session")
        .order_by("-created_at", "-pk")[:MAX_GRANTS_LISTED]
    )
    return JsonResponse({"grants": [{**g.to_dict(now=now), "session_label": g.session.label} for g in grants]})


@require_POST
def revoke(request: HttpRequest, pk: int) -> JsonResponse:
    """POST: end a live grant now (audited). 200 {revoked, grant}; 403; 404."""
    user = _staff(request)
    if isinstance(user, JsonResponse):
        return user
    grant = Grant.objects.filter(pk=pk).first()
    if grant is None:
        return _error("There is no such grant.", 404)
    try:
        revoked = services.revoke_grant(grant, by=user)
    except PermissionDenied as e:
        return _error(str(e), 403)
    return JsonResponse({"revoked": revoked, "grant": grant.to_dict()})
