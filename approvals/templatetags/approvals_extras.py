"""Display helpers of the staff screens: the one time format, people's names, amounts, status
words, and the history's JSON and error lines.

The browser side of the same formats is static/js/format.js; `time_zone_attrs` hands it the zone.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from babel.numbers import UnknownCurrencyError, format_currency
from django import template
from django.conf import settings
from django.utils import timezone, translation
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import pgettext_lazy

from approvals.models import ApprovalRequest

register = template.Library()

# One format for every time on the staff screens, whatever the language: 24-hour clock and ISO
# dates read the same at every desk, and the zone is always said.
TIME_FORMATS = {
    "time": "%H:%M:%S %Z",  # cards, "sent 14:05:09 CET"
    "full": "%Y-%m-%d %H:%M:%S %Z",  # case pages, history, search
    "minute": "%Y-%m-%d %H:%M %Z",  # ranges, holds
    "date": "%Y-%m-%d",
}

STATUS_LABELS = {
    "pending": pgettext_lazy("request status", "Pending"),
    "approved": pgettext_lazy("request status", "Approved"),
    "denied": pgettext_lazy("request status", "Denied"),
    "expired": pgettext_lazy("request status", "Expired"),
    "cancelled": pgettext_lazy("request status", "Cancelled"),
}


@register.filter
def when(value: datetime | None, style: str = "time") -> str:
    """A moment in settings.TIME_ZONE: "14:05:09 CET" (style "time"), "2025-03-04 14:05:09 CET"
    ("full"), "2025-03-04 14:05 CET" ("minute"), "2025-03-04" ("date"); "precise" adds
    milliseconds to "full", for audit timelines. "" for None."""
    if value is None or value == "":
        return ""
    if timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    local = value.astimezone(timezone.get_default_timezone())
    if style == "precise":
        return local.strftime(f"%Y-%m-%d %H:%M:%S.{local.microsecond // 1000:03d} %Z")
    return local.strftime(TIME_FORMATS.get(style, TIME_FORMATS["time"]))


@register.filter
def display_name(user: Any) -> str:
    """A person as the screens name them: full name, else username; "" for nobody."""
    if user is None or not getattr(user, "is_authenticated", False):
        return ""
    return str(user.get_full_name() or user.get_username())


@register.filter
def money(amount: Any, currency: str) -> str:
    """An amount in its currency, as the active language writes it: 20 EUR is "€20.00" in
    English, "20,00 €" in German. Something that is not an amount comes back as it was."""
    try:
        number = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return str(amount)
    locale = translation.to_locale(translation.get_language() or settings.LANGUAGE_CODE)
    try:
        return str(format_currency(number, str(currency).upper(), locale=locale))
    except (UnknownCurrencyError, ValueError):
        return f"{amount} {currency}"


@register.filter
def status_label(status: str) -> str:
    """A request's status in the reader's language ("approved" -> "Genehmigt")."""
    return str(STATUS_LABELS.get(status, status))


@register.simple_tag
def time_zone_attrs() -> SafeString:
    """The data attributes on <body> that static/js/format.js reads: the zone's IANA name and,
    for the offsets it has this year, the abbreviation Python's zone database gives them, so that
    the browser writes "CET" exactly where the server does (Intl alone would say "GMT+1")."""
    zone = timezone.get_default_timezone()
    year = timezone.now().year
    names: dict[str, str] = {}
    for month in (1, 7):
        moment = datetime(year, month, 1, 12, tzinfo=UTC).astimezone(zone)
        names[_offset_name(moment.utcoffset())] = moment.strftime("%Z")
    return format_html(
        'data-time-zone="{}" data-time-zone-names="{}"', settings.TIME_ZONE, json.dumps(names, sort_keys=True)
    )


def _offset_name(offset: timedelta | None) -> str:
    """An offset as Intl's timeZoneName "shortOffset" writes it: "GMT", "GMT+1", "GMT-3:30"."""
    minutes = round((offset or timedelta()).total_seconds() / 60)
    if not minutes:
        return "GMT"
    sign = "+" if minutes > 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"GMT{sign}{hours}" + (f":{rest:02d}" if rest else "")


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
        return _("%(seconds)d s") % {"seconds": seconds}
    return _("%(minutes)d min %(seconds)d s") % {"minutes": seconds // 60, "seconds": seconds % 60}
