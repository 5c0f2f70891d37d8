"""ASGI entry point: HTTP goes to Django, WebSockets to Channels consumers.

Every WebSocket route runs inside `AuthMiddlewareStack` and an origin validator, but the two
kinds are guarded differently on purpose:
- `/ws/...` (staff dashboards) authenticate with the session cookie, so a page on a foreign
  origin could ride a staff member's cookie: `DashboardOriginValidator` (approvals/routing.py)
  checks scheme, host and port as Django's CSRF check does, no exceptions.
- `/v1/realtime` (the relay) authenticates with a bearer client token that a browser never
  sends by itself. Its usual clients (the openai SDK, phone gateways) send no Origin header,
  which Channels' validator refuses, so the relay's validator lets a missing Origin through
  and checks a browser's Origin against RELAY_ALLOWED_ORIGINS (default: ALLOWED_HOSTS).
"""

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Daphne serves the staff pages' CSS and JS itself (with DEBUG off too): the dashboard must
# work from `make run` with nothing in front, and the files are a few kilobytes.
django_asgi_app = ASGIStaticFilesHandler(get_asgi_application())

# Imports that touch models must come after Django is set up.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls.resolvers import URLPattern  # noqa: E402

from approvals.routing import DashboardOriginValidator  # noqa: E402
from approvals.routing import websocket_urlpatterns as dashboard_patterns  # noqa: E402
from realtime_bridge.routing import RelayOriginValidator  # noqa: E402
from realtime_bridge.routing import websocket_urlpatterns as relay_patterns  # noqa: E402


def _wrap(patterns: list[URLPattern], guard) -> list[URLPattern]:
    return [URLPattern(p.pattern, guard(AuthMiddlewareStack(p.callback)), name=p.name) for p in patterns]


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # The stubs want their own URLPattern subtype, whose callback is an ASGI app, as ours are.
        "websocket": URLRouter(
            _wrap(relay_patterns, RelayOriginValidator) + _wrap(dashboard_patterns, DashboardOriginValidator)  # type: ignore[arg-type]
        ),
    }
)
