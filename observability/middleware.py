"""Binds the ids of each HTTP request for the logs (observability/logs.py): `request_id` (the
proxy's X-Request-ID when it sends one, else a fresh one, echoed in the response), and `user` when
the request is served synchronously (under ASGI the decide service binds who decides)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

# A request id from outside is echoed into logs and headers: only a short token of safe characters.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id_of(request: HttpRequest) -> str:
    given = request.headers.get("X-Request-ID", "")
    return given if _SAFE_ID.match(given) else uuid.uuid4().hex


def _bind(request: HttpRequest, *, user: bool) -> str:
    structlog.contextvars.clear_contextvars()
    request_id = request_id_of(request)
    structlog.contextvars.bind_contextvars(request_id=request_id)
    person: Any = getattr(request, "user", None) if user else None
    # request.user is lazy: reading it costs the session's query, which the views pay anyway.
    if person is not None and person.is_authenticated:
        structlog.contextvars.bind_contextvars(user=person.get_username())
    return request_id


class LogContextMiddleware:
    """After AuthenticationMiddleware. Sync and async: the dashboard's views are both."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        request_id = _bind(request, user=True)
        response: HttpResponse = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        # On the event loop, request.user would cost a thread hop and a session query before every
        # view, the decision's included: the request id only. Who decides is bound by the decide
        # service (approvals/services/decisions.py), which knows them without a query.
        request_id = _bind(request, user=False)
        get_response: Callable[[HttpRequest], Awaitable[HttpResponse]] = self.get_response
        response = await get_response(request)
        response["X-Request-ID"] = request_id
        return response
