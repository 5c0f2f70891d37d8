"""Who may open a relay session, checked before any work is done for them (issue 16.5).

- Handshakes per client address (RELAY_HANDSHAKES_PER_MINUTE_PER_ADDRESS): counted in the
  process that takes the handshake, in memory. No database query and no Redis round trip, so
  a flood of bad handshakes costs each one a dictionary lookup, and nothing that the rest of the
  process needs (the one thread Daphne runs the ORM on, /healthz, the dashboards) waits for it.
  With several relay processes the limit holds per process. The address is the peer's (on
  Daphne with --proxy-headers, X-Forwarded-For's).
- Live sessions per client token (RELAY_MAX_SESSIONS_PER_TOKEN): counted in the database, which
  every process shares, among the token's open relay sessions whose lease is live (a session of
  a dead process stops counting when its lease runs out). Checked at the handshake, after the
  token is known: handshakes racing each other may pass it together.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.utils import timezone

from approvals.models import ClientToken, RealtimeSession

# Above this many addresses remembered, the idle ones (bucket full again) are forgotten.
MAX_ADDRESSES = 10_000


class AddressLimiter:
    """A token bucket per address: `per_minute` handshakes in a burst, refilled at
    per_minute/60 a second. `per_minute` is read from the settings at each call unless given."""

    def __init__(self, per_minute: int | None = None) -> None:
        self._per_minute = per_minute
        self.buckets: dict[str, tuple[float, float]] = {}  # address: (tokens, when)

    @property
    def per_minute(self) -> int:
        if self._per_minute is not None:
            return self._per_minute
        return int(settings.RELAY_HANDSHAKES_PER_MINUTE_PER_ADDRESS)

    def allow(self, address: str | None, *, now: float | None = None) -> bool:
        limit = self.per_minute
        if limit <= 0 or not address:
            return True
        now = time.monotonic() if now is None else now
        tokens, when = self.buckets.get(address, (float(limit), now))
        tokens = min(float(limit), tokens + (now - when) * limit / 60.0)
        allowed = tokens >= 1.0
        self.buckets[address] = (tokens - 1.0 if allowed else tokens, now)
        if len(self.buckets) > MAX_ADDRESSES:
            self._forget_idle(now, limit)
        return allowed

    def _forget_idle(self, now: float, limit: int) -> None:
        full_after = 60.0  # any bucket untouched this long is full again
        self.buckets = {a: (t, w) for a, (t, w) in self.buckets.items() if now - w < full_after}


HANDSHAKES = AddressLimiter()

RATE_LIMITED_MESSAGE = "Too many connection attempts from this address. Retry in a minute."


def sessions_left(token: ClientToken) -> bool:
    """Whether `token` may open one more relay session now."""
    limit = int(settings.RELAY_MAX_SESSIONS_PER_TOKEN)
    if limit <= 0:
        return True
    live = RealtimeSession.objects.filter(
        client_token=token,
        kind=RealtimeSession.Kind.RELAY,
        status=RealtimeSession.Status.OPEN,
        lease_expires_at__gt=timezone.now(),
    ).count()
    return live < limit
