"""Display helpers for the history page."""

from __future__ import annotations

import json
from typing import Any

from django import template

from approvals.models import ApprovalRequest

register = template.Library()


@register.filter
def pretty_json(value: Any) -> str:
    """Indented JSON for people; non-JSON strings come back unchanged."""
    if value is None:
        return ""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


@register.filter
def call_error_text(error: Any) -> str:
    """An mcp_call error object ({type, code?, message}) in one line."""
    if not error:
        return ""
    if isinstance(error, dict):
        kind = str(error.get("type", "error")).replace("_", " ")
        code = f" {error['code']}" if error.get("code") is not None else ""
        message = error.get("message") or error.get("content") or ""
        return f"{kind}{code}: {message}" if message else f"{kind}{code}"
    return str(error)


@register.filter
def time_to_decide(req: ApprovalRequest) -> str:
    """How long the request waited: "12 s", "1 min 5 s"."""
    if req.decided_at is None:
        return ""
    seconds = max(0, round((req.decided_at - req.created_at).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60} s"
