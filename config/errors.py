"""The error pages staff see (403, 404, 500), styled like the rest with the navigation, and the
one-line log of a refused page.

Django's own handlers render `403.html`/`404.html`/`500.html` too; these add the request, so the
navigation knows who is logged in. The 500 handler renders without the request's context
processors: whatever broke the page may be what they would touch (the session, the database).
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, HttpResponseServerError, JsonResponse
from django.shortcuts import render
from django.template import loader

API_PREFIX = "/api/"
# Bare minimum when even the template cannot be rendered: a 500 page must never raise.
_FALLBACK_500 = "<!doctype html><title>Server error</title><h1>Server error (500)</h1>"


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "403.html", {"reason": _public_reason(exception)}, status=403)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith(API_PREFIX):  # programs get the approval API's error shape, not a page
        return JsonResponse({"detail": "Not found."}, status=404)
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "Server error."}, status=500)
    try:
        # No RequestContext: `user`, `messages` and the CSRF token stay out of it.
        html = loader.get_template("500.html").render({"request_path": request.path})
    except Exception:  # the page of last resort must not raise itself
        html = _FALLBACK_500
    return HttpResponseServerError(html)


def _public_reason(exception: Exception | None) -> str:
    """The PermissionDenied message, which the views write for the person refused; a bare
    PermissionDenied() gives none."""
    if exception is None:
        return ""
    return str(exception)


class ForbiddenOneLine(logging.Filter):
    """On the `django.request` logger: a 403 becomes one line (path and user), without the
    traceback Django attaches to "Forbidden (Permission denied)". Every other record passes
    unchanged, so a 500 keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) != 403:
            return True
        request = getattr(record, "request", None)
        user = getattr(request, "user", None)
        who = user.get_username() if user is not None and user.is_authenticated else "anonymous"
        path = getattr(request, "path", "?")
        record.msg = "Forbidden: %s (user %s)"
        record.args = (path, who)
        record.exc_info = None
        record.exc_text = None
        return True
