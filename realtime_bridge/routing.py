"""WebSocket routes of the relay, and the origin rule that guards them (see config/asgi.py)."""

from __future__ import annotations

from re import Pattern
from typing import TYPE_CHECKING
from urllib.parse import ParseResult, urlparse

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.urls import path
from django.utils.http import is_same_domain

from realtime_bridge.consumers import RelayConsumer

if TYPE_CHECKING:
    from channels.utils import _ChannelApplication


class RelayOriginValidator(OriginValidator):
    """Let clients without an Origin header (SDKs, gateways) through; check browsers' Origin.

    The relay authenticates with a client token, never with a cookie, so a missing Origin
    is not a cross-site risk; a browser's Origin must still be one we serve.
    """

    def __init__(self, application: _ChannelApplication) -> None:
        allowed = list(getattr(settings, "RELAY_ALLOWED_ORIGINS", None) or settings.ALLOWED_HOSTS)
        super().__init__(application, allowed)

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        if parsed_origin is None:
            return True
        return super().valid_origin(parsed_origin)

    def match_allowed_origin(self, parsed_origin: ParseResult | None, pattern: str | Pattern[str]) -> bool:
        # ALLOWED_HOSTS entries have no scheme; accept them for http(s) origins as Channels'
        # AllowedHostsOriginValidator does.
        if isinstance(pattern, str) and "://" not in pattern:
            hostname = parsed_origin.hostname if parsed_origin is not None else None
            return hostname is not None and is_same_domain(hostname, pattern)
        return super().match_allowed_origin(parsed_origin, pattern)


def origin_allowed(origin: str | None) -> bool:
    """The rule above, for a server that checks the handshake itself (run_relay), so that the
    two servers of the relay cannot drift apart. Reads the settings now, as Channels does."""
    return RelayOriginValidator(_never_called).valid_origin(None if origin is None else urlparse(origin))


async def _never_called(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    raise RuntimeError("origin_allowed() only checks origins")


# django-stubs type path() for HTTP views only; Channels routes ASGI applications with it.
websocket_urlpatterns = [path("v1/realtime", RelayConsumer.as_asgi(), name="relay")]  # type: ignore[arg-type]
