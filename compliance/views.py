"""The review pages, for the `compliance` group: read-only over the approvals (reviewers cannot
decide), plus exports and legal holds. Views are interfaces: permission, parse, one call, render."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import get_resolver, get_urlconf, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from approvals.models import ApprovalRequest, ConversationLine
from approvals.services import user_label
from audit.models import AuditEvent
from audit.verify import verify_rows
from compliance import bundle, exports, metrics, services
from compliance.models import Export, LegalHold
from compliance.search import SORTS, SearchForm

PAGE_SIZE = 50
# Conversation lines shown before the request and after its decision on a case page.
LINES_AROUND = 8

View = Callable[..., HttpResponseBase]


def forbidden(request: HttpRequest, message: str) -> HttpResponse:
    """The 403 page, as Django's handler renders it. Returned rather than raised: Django logs a
    raised PermissionDenied with its whole traceback, a returned 403 as one line."""
    handler: Callable[..., HttpResponse] = get_resolver(get_urlconf()).resolve_error_handler(403)
    return handler(request, exception=PermissionDenied(message))


def review_required(view: View) -> View:
    """Anonymous → the login page; logged in without compliance.view_review → 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not request.user.has_perm("compliance.view_review"):
            return forbidden(request, "Only compliance reviewers can see the review pages.")
        return view(request, *args, **kwargs)

    return wrapper


@require_GET
@review_required
def search(request: HttpRequest) -> HttpResponse:
    form = SearchForm(request.GET)
    page = Paginator(form.queryset(), PAGE_SIZE).get_page(request.GET.get("page"))
    query = form.query()
    query.pop("page", None)
    params = request.GET.copy()
    params.pop("page", None)
    return render(
        request,
        "compliance/search.html",
        {
            "form": form,
            "page": page,
            "querystring": params.urlencode(),
            "query_json": json.dumps(query),
            "sorts": SORTS,
            "exports": Export.objects.filter(
                Q(requested_by_id=request.user.pk) | Q(shared_with=request.user.pk)
            ).distinct()[:5],
        },
    )


CSV_COLUMNS = [
    "id",
    "created_at",
    "session",
    "session_metadata",
    "server",
    "tool",
    "arguments",
    "status",
    "decided_at",
    "decided_by",
    "seconds_to_decision",
    "reason",
    "rule",
    "decision_sent_at",
    "call_arguments",
    "call_output",
    "call_error",
]


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_rows(requests: Any) -> Iterator[list[Any]]:
    yield CSV_COLUMNS
    for r in requests.iterator(chunk_size=2000):
        seconds = (r.decided_at - r.created_at).total_seconds() if r.decided_at else ""
        yield [
            r.pk,
            r.created_at.isoformat(),
            r.session.label,
            json.dumps(r.session.metadata, ensure_ascii=False),
            r.server_label,
            r.tool_name,
            r.arguments,
            r.status,
            r.decided_at.isoformat() if r.decided_at else "",
            r.decided_by_label,
            seconds,
            r.reason,
            r.rule_label,
            r.decision_sent_at.isoformat() if r.decision_sent_at else "",
            r.call_arguments,
            "" if r.call_output is None else r.call_output,
            json.dumps(r.call_error) if r.call_error else "",
        ]


@require_GET
@review_required
def search_csv(request: HttpRequest) -> HttpResponseBase:
    form = SearchForm(request.GET)
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in _csv_rows(form.queryset())), content_type="text/csv"
    )
    response["Content-Disposition"] = f'attachment; filename="countersign-{timezone.now():%Y%m%d-%H%M%S}.csv"'
    return response


def _arguments_match(req: ApprovalRequest) -> bool | None:
    """Did the tool run with the arguments that were approved? None when nothing ran."""
    if req.call_recorded_at is None or req.purged_at is not None:
        return None
    if req.call_arguments == req.arguments:
        return True
    try:
        return json.loads(req.call_arguments) == json.loads(req.arguments)
    except ValueError:
        return False


@require_GET
@review_required
def case(request: HttpRequest, pk: int) -> HttpResponse:
    req = get_object_or_404(ApprovalRequest.objects.select_related("session", "decided_by", "mcp_server"), pk=pk)
    events = AuditEvent.objects.filter(
        Q(request=req) | Q(session_id=req.session_id, request__isnull=True, kind__startswith="session_")
    ).order_by("seq")
    rows = verify_rows(events)
    lines = ConversationLine.objects.filter(session_id=req.session_id)
    end = req.call_recorded_at or req.decided_at or timezone.now()
    before = list(reversed(lines.filter(created_at__lt=req.created_at).order_by("-created_at", "-pk")[:LINES_AROUND]))
    during = list(lines.filter(created_at__gte=req.created_at, created_at__lte=end))
    after = list(lines.filter(created_at__gt=end)[:LINES_AROUND])
    return render(
        request,
        "compliance/case.html",
        {
            "req": req,
            "rows": rows,
            "chain_ok": all(r.ok for r in rows),
            "all_sealed": all(r.sealed for r in rows),
            "before": before,
            "during": during,
            "after": after,
            "arguments_match": _arguments_match(req),
            # The MCP gateway's enforcement (docs/gateway.md): the calls it ran or refused for this approval.
            "gateway_calls": list(req.gateway_calls.order_by("created_at", "pk")),
            "gateway_mode": req.mcp_server is not None and req.mcp_server.gateway_mode,
            "holds": req.legal_holds.select_related("placed_by", "released_by"),
            "active_hold": req.legal_holds.active().first(),
            "can_hold": request.user.has_perm("compliance.manage_legal_hold"),
        },
    )


@require_POST
@review_required
def place_hold(request: HttpRequest, pk: int) -> HttpResponse:
    if not request.user.has_perm("compliance.manage_legal_hold"):
        return forbidden(request, "You may not place legal holds.")
    req = get_object_or_404(ApprovalRequest, pk=pk)
    try:
        services.place_hold(req, by=request.user, reason=request.POST.get("reason", ""))  # type: ignore[arg-type]
        messages.success(request, "The case is under legal hold: the retention purge will keep it.")
    except services.HoldError as e:
        messages.error(request, str(e))
    return redirect("review_case", pk=pk)


@require_POST
@review_required
def release_hold(request: HttpRequest, pk: int) -> HttpResponse:
    if not request.user.has_perm("compliance.manage_legal_hold"):
        return forbidden(request, "You may not release legal holds.")
    hold = get_object_or_404(LegalHold, pk=pk)
    if services.release_hold(hold, by=request.user):  # type: ignore[arg-type]
        messages.success(request, "The legal hold is released.")
    return redirect("review_case", pk=hold.request_id)


@require_GET
@review_required
def metrics_page(request: HttpRequest) -> HttpResponse:
    form = SearchForm(request.GET)
    now = timezone.now()
    start = end = None
    if form.is_valid():
        start, end = form.cleaned_data["start"], form.cleaned_data["end"]
    end = end or now
    start = start or end - timedelta(days=30)
    return render(request, "compliance/metrics.html", {"form": form, "m": metrics.compute(start=start, end=end)})


@require_POST
@review_required
def export_create(request: HttpRequest) -> HttpResponse:
    form = SearchForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The search has errors; fix them before exporting.")
        return redirect("review_search")
    export = exports.request_export(by=request.user, query=form.query())  # type: ignore[arg-type]
    return redirect("review_export", pk=export.pk)


def _export(request: HttpRequest, pk: int) -> Export | HttpResponse:
    """The export, if this person may open it (Export.visible_to); else the 403 page."""
    export = get_object_or_404(Export, pk=pk)
    if not export.visible_to(request.user):
        return forbidden(request, "This export is neither yours nor shared with you.")
    return export


@require_GET
@review_required
def export_status(request: HttpRequest, pk: int) -> HttpResponse:
    export = _export(request, pk)
    if isinstance(export, HttpResponse):
        return export
    if request.GET.get("format") == "json":
        data = export.to_dict()
        if export.status == Export.Status.DONE:
            data["download"] = reverse("review_export_download", args=[export.pk])
        return JsonResponse(data)
    owner = export.requested_by_id == request.user.pk
    return render(
        request,
        "compliance/export.html",
        {
            "export": export,
            "shared_with": [user_label(u) for u in export.shared_with.order_by("first_name", "username")],
            "share_form": exports.ShareForm(export=export) if owner else None,
        },
    )


@require_POST
@review_required
def export_share(request: HttpRequest, pk: int) -> HttpResponse:
    export = _export(request, pk)
    if isinstance(export, HttpResponse):
        return export
    if export.requested_by_id != request.user.pk:
        return forbidden(request, "Only the person who made an export can share it.")
    form = exports.ShareForm(request.POST, export=export)
    if not form.is_valid():
        messages.error(request, "An export can only be shared with compliance reviewers.")
        return redirect("review_export", pk=pk)
    try:
        if exports.share(export, by=request.user, people=list(form.cleaned_data["people"])):
            messages.success(request, "Sharing saved.")
    except exports.ShareError as e:
        messages.error(request, str(e))
    return redirect("review_export", pk=pk)


@require_GET
@review_required
def export_download(request: HttpRequest, pk: int) -> HttpResponseBase:
    export = _export(request, pk)
    if isinstance(export, HttpResponse):
        return export
    if export.status != Export.Status.DONE:
        raise Http404("The bundle is not ready.")
    path = bundle.export_path(export.file_name)
    if not path.exists():
        raise Http404("The bundle file is gone from AUDIT_EXPORT_DIR.")
    return FileResponse(path.open("rb"), as_attachment=True, filename=f"countersign-audit-{export.pk}.zip")
