"""Review metrics over a time range: time to decision by tool, group and staff member; outcome
rates; possible rubber-stamping; per-day counts drawn as an SVG chart on the server (no JS, no CDN)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _

from approvals.models import ApprovalRequest
from compliance.search import RUBBER_STAMP_SECONDS

Status = ApprovalRequest.Status
CHART_STATUSES = [Status.APPROVED, Status.DENIED, Status.EXPIRED, Status.CANCELLED]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n*q/100), at least 1
    return ordered[int(rank) - 1]


@dataclass
class Timing:
    name: str
    count: int
    p50: float | None
    p95: float | None
    fast: int = 0


def _timings(groups: dict[str, list[float]]) -> list[Timing]:
    rows = [
        Timing(
            name=name,
            count=len(values),
            p50=percentile(values, 50),
            p95=percentile(values, 95),
            fast=sum(v < RUBBER_STAMP_SECONDS for v in values),
        )
        for name, values in groups.items()
    ]
    return sorted(rows, key=lambda t: (-t.count, t.name))


@dataclass
class Metrics:
    start: datetime
    end: datetime
    total: int = 0
    rates: list[tuple[str, int, float]] = field(default_factory=list)
    by_tool: list[Timing] = field(default_factory=list)
    by_person: list[Timing] = field(default_factory=list)
    by_group: list[Timing] = field(default_factory=list)
    fast_decisions: int = 0
    chart: dict[str, Any] = field(default_factory=dict)


def compute(*, start: datetime, end: datetime) -> Metrics:
    m = Metrics(start=start, end=end)
    requests = ApprovalRequest.objects.filter(created_at__gte=start, created_at__lt=end)
    statuses = Counter(dict(requests.values_list("status").annotate(n=Count("pk")).order_by()))
    m.total = sum(statuses.values())
    # Auto-decisions: approved or denied with no person and no deadline (policies, issue 5).
    auto = requests.filter(decided_by__isnull=True, status__in=[Status.APPROVED, Status.DENIED]).count()
    # The first five split the total (their rates add up to 100 %); the rows after them are parts
    # of those (templates/compliance/metrics.html shows them below the total).
    for label, n in [
        (_("Approved"), statuses[Status.APPROVED]),
        (_("Denied"), statuses[Status.DENIED]),
        (_("Expired (no decision in time)"), statuses[Status.EXPIRED]),
        (_("Cancelled (session ended)"), statuses[Status.CANCELLED]),
        (_("Still pending"), statuses[Status.PENDING]),
        (_("of which decided automatically by a rule"), auto),
    ]:
        m.rates.append((label, n, 100.0 * n / m.total if m.total else 0.0))
    if connection.vendor == "postgresql":
        m.by_tool, m.by_person, m.by_group = (_timings_sql(start, end, by) for by in ("tool", "person", "group"))
    else:
        m.by_tool, m.by_person, m.by_group = _timings_python(requests)
    m.fast_decisions = sum(t.fast for t in m.by_person)
    m.chart = _chart(requests)
    return m


def _timings_python(requests: Any) -> tuple[list[Timing], list[Timing], list[Timing]]:
    rows = list(
        requests.decided()
        .filter(decided_by__isnull=False)
        .values_list("tool_name", "decided_by_id", "decided_by_label", "created_at", "decided_at")
    )
    groups_of: dict[int, list[str]] = defaultdict(list)
    people = {person for _, person, *_ in rows}
    for user_id, name in Group.objects.filter(user__in=people).values_list("user", "name"):
        groups_of[user_id].append(name)
    tool: dict[str, list[float]] = defaultdict(list)
    person: dict[str, list[float]] = defaultdict(list)
    group: dict[str, list[float]] = defaultdict(list)
    for tool_name, person_id, label, created, decided in rows:
        # Only people's decisions: the deadline or a session end is not a decision time.
        seconds = (decided - created).total_seconds()
        tool[tool_name].append(seconds)
        person[label].append(seconds)
        for name in groups_of.get(person_id) or ["(no group)"]:
            group[name].append(seconds)
    return _timings(tool), _timings(person), _timings(group)


_KEYS = {
    "tool": ("r.tool_name", ""),
    "person": ("r.decided_by_label", ""),
    "group": (
        "COALESCE(g.name, '(no group)')",
        "LEFT JOIN auth_user_groups ug ON ug.user_id = r.decided_by_id LEFT JOIN auth_group g ON g.id = ug.group_id",
    ),
}


def _timings_sql(start: datetime, end: datetime, by: str) -> list[Timing]:
    """The same figures as _timings_python, aggregated by PostgreSQL instead of in Python:
    percentile_disc is the nearest-rank percentile that `percentile()` computes."""
    key, join = _KEYS[by]
    sql = f"""
        SELECT key, count(*),
               percentile_disc(0.5) WITHIN GROUP (ORDER BY s),
               percentile_disc(0.95) WITHIN GROUP (ORDER BY s),
               count(*) FILTER (WHERE s < %s)
        FROM (SELECT {key} AS key, EXTRACT(EPOCH FROM (r.decided_at - r.created_at))::float8 AS s
              FROM approvals_approvalrequest r {join}
              WHERE r.created_at >= %s AND r.created_at < %s
                AND r.decided_by_id IS NOT NULL AND r.status <> 'pending') t
        GROUP BY key"""
    with connection.cursor() as cursor:
        cursor.execute(sql, [RUBBER_STAMP_SECONDS, start, end])
        rows = [Timing(name=k, count=n, p50=p50, p95=p95, fast=fast) for k, n, p50, p95, fast in cursor.fetchall()]
    return sorted(rows, key=lambda t: (-t.count, t.name))


def _chart(requests: Any) -> dict[str, Any]:
    """Per-day stacked bars of outcomes, as coordinates for an inline SVG."""
    per_day: dict[date, Counter[str]] = defaultdict(Counter)
    tz = timezone.get_current_timezone()
    for day, status, n in (
        requests.annotate(day=TruncDate("created_at", tzinfo=tz)).values_list("day", "status").annotate(n=Count("pk"))
    ):
        per_day[day][status] += n
    if not per_day:
        return {}
    first, last = min(per_day), max(per_day)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)][-62:]
    top = max(sum(per_day[d].values()) for d in days) or 1
    width, height, gap = 14, 160, 4
    bars = []
    for i, day in enumerate(days):
        y: float = height
        segments = []
        for status in [*CHART_STATUSES, Status.PENDING]:
            n = per_day[day][status]
            if not n:
                continue
            h = height * n / top
            y -= h
            segments.append({"status": status, "y": round(y, 1), "h": round(h, 1), "n": n})
        bars.append({"x": i * (width + gap), "day": day, "total": sum(per_day[day].values()), "segments": segments})
    return {"bars": bars, "width": len(days) * (width + gap), "height": height, "bar": width, "top": top}
