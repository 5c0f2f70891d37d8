"""The Stop box of a page that shows one session (the case page): `{% stop_session_box session %}`.

An inclusion tag, so that the page's own view needs no change: whether the reader may stop
sessions is read here from the request's user (services.check_may_stop's rule)."""

from __future__ import annotations

from typing import Any

from django import template

from approvals import events, services
from approvals.models import RealtimeSession

register = template.Library()


@register.inclusion_tag("approvals/_stop_session.html", takes_context=True)
def stop_session_box(context: dict[str, Any], session: RealtimeSession) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    can_stop = False
    if user is not None and user.is_authenticated:
        try:
            services.check_may_stop(session, user)
            can_stop = True
        except services.PermissionDenied:
            pass
    return {
        "session": session,
        "can_stop": can_stop,
        "is_live": session.status == RealtimeSession.Status.OPEN and session.kind == RealtimeSession.Kind.RELAY,
        "next": request.get_full_path() if request is not None else "/",
        "stopped": session.close_code == events.STOPPED_CLOSE_CODE,
        "csrf_token": context.get("csrf_token"),
        "max_reason": services.MAX_STOP_REASON_LENGTH,
    }
