"""WebSocket routes of the relay, and the origin rule that guards them (see config/asgi.py)."""

from urllib.parse import ParseResult

from channels.security.websocket import OriginValidator
from django.conf import settings
from django.urls import path

from realtime_bridge.consumers import RelayConsumer


class RelayOriginValidator(OriginValidator):
    """Let clients without an Origin header (SDKs, gateways) through; check browsers' Origin.

    The relay authenticates with a client token, never with a cookie, so a missing Origin
    is not a cross-site risk; a browser's Origin must still be one we serve.
    """

    def __init__(self, application):  # type: ignore[no-untyped-def]
        allowed = list(getattr(settings, "RELAY_ALLOWED_ORIGINS", None) or settings.ALLOWED_HOSTS)
        super().__init__(application, allowed)

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        if parsed_origin is None:
            return True
        return super().valid_origin(parsed_origin)

    def match_allowed_origin(self, parsed_origin, pattern):  # type: ignore[no-untyped-def]
        # ALLOWED_HOSTS entries have no scheme; accept them for http(s) origins as Channels'
        # AllowedHostsOriginValidator does.
        from django.http.request import is_same_domain

        if "://" not in pattern:
            return parsed_origin.hostname is not None and is_same_domain(parsed_origin.hostname, pattern)
        return super().match_allowed_origin(parsed_origin, pattern)


websocket_urlpatterns = [path("v1/realtime", RelayConsumer.as_asgi(), name="relay")]
