"""WebSocket routes of the staff UI, and the origin check that guards them (config/asgi.py wraps
them in it and in auth).

The dashboard authenticates with the session cookie, so a page on a foreign origin could ride a
staff member's cookie. Channels' AllowedHostsOriginValidator compares only the Origin's host
name with ALLOWED_HOSTS: `https://localhost:9999` passed for a console served on
`http://localhost:8000`. `DashboardOriginValidator` checks scheme, host and port as Django's
CSRF check does for a POST (CsrfViewMiddleware._origin_verified): the Origin must be this
server's own origin (the scheme the request came in on, and its Host, which must be in
ALLOWED_HOSTS), or one of CSRF_TRUSTED_ORIGINS (`https://*.example.com` for subdomains).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.urls import path
from django.utils.http import is_same_domain

from approvals.consumers import DashboardConsumer


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin1")
    return None


def _is_secure(scope: dict[str, Any]) -> bool:
    """As request.is_secure(): the scheme the server saw, or the proxy's header when
    SECURE_PROXY_SSL_HEADER trusts one (SECURE_SSL)."""
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy:
        meta_name, secure_value = proxy
        header = meta_name.removeprefix("HTTP_").lower().replace("_", "-").encode("latin1")
        value = _header(scope, header)
        if value is not None:
            return value.split(",")[0].strip() == secure_value
    return scope.get("scheme") in ("wss", "https")


def own_origin(scope: dict[str, Any]) -> str | None:
    """This server's origin as the browser reached it, or None when its Host is not ours."""
    host = _header(scope, b"host") or ""
    domain, _port = split_domain_port(host)
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # as Django's get_host()
    if not domain or not validate_host(domain, allowed):
        return None
    return f"{'https' if _is_secure(scope) else 'http'}://{host.lower()}"


def origin_allowed(origin: str | None, scope: dict[str, Any]) -> bool:
    if not origin or origin == "null":
        return False
    origin = origin.lower()
    if origin == own_origin(scope):
        return True
    trusted = [o.lower() for o in settings.CSRF_TRUSTED_ORIGINS]
    if origin in trusted:
        return True
    parsed = urlsplit(origin)
    for entry in trusted:
        if "*" not in entry:
            continue
        scheme, _, netloc = entry.partition("://")
        if parsed.scheme == scheme and is_same_domain(parsed.netloc, netloc.replace("*", "", 1)):
            return True
    return False


class DashboardOriginValidator:
    """Refuses the handshake (HTTP 403) unless the Origin passes origin_allowed()."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(_header(scope, b"origin"), scope):
            return await WebsocketDenier()(scope, receive, send)  # type: ignore[arg-type]
        return await self.application(scope, receive, send)


websocket_urlpatterns = [
    # Channels' URLRouter takes ASGI apps where django-stubs' path() expects views.
    path("ws/dashboard/", DashboardConsumer.as_asgi(), name="dashboard-ws"),  # type: ignore[arg-type]
]
