"""What the login page needs to offer single sign-on (a template context processor)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def sso(request: HttpRequest) -> dict[str, object]:
    return {
        "sso_enabled": bool(settings.OIDC_ISSUER),
        "sso_label": settings.OIDC_LOGIN_LABEL,
        "sso_failed": request.GET.get("sso") == "failed",
    }
