"""The leases of the relay sessions this process holds (issue 16.6).

Every relayed session has a lease in its row (`lease_holder`, `lease_expires_at`), taken when
it opens. One task per process renews all of them at once, every third of RELAY_LEASE_SECONDS,
with one UPDATE. When the process dies (kill -9, a lost machine), its leases run out and the
beat sweep (`realtime_bridge.tasks.sweep_relay_leases`) closes the sessions and cancels their
pending requests. A session the sweep closed under a live holder (a process stalled for a whole
lease) is ended by its holder at the next renewal: its requests are already cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable

from channels.db import database_sync_to_async
from django.conf import settings

from approvals import services

log = logging.getLogger(__name__)


def holder_name() -> str:
    """This process, as a lease names it: host:pid (forked run_relay workers differ by pid)."""
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


def lease_seconds() -> float:
    return float(settings.RELAY_LEASE_SECONDS)


class LeaseKeeper:
    def __init__(self) -> None:
        self.held: dict[int, Callable[[], None]] = {}  # session id: what to call if it is lost
        self._task: asyncio.Task[None] | None = None

    def hold(self, session_id: int, on_lost: Callable[[], None]) -> None:
        """Keep renewing the lease of `session_id` (taken when it opened) until release();
        `on_lost` is called if the session turns out to be closed under us."""
        self.held[session_id] = on_lost
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._renew())

    def release(self, session_id: int) -> None:
        self.held.pop(session_id, None)
        if not self.held and self._task is not None and not self._task.done():
            with contextlib.suppress(RuntimeError):  # the task's loop is already closed
                self._task.cancel()
            self._task = None

    async def _renew(self) -> None:
        while self.held:
            await asyncio.sleep(lease_seconds() / 3)
            await self.renew_now()

    async def renew_now(self) -> None:
        ids = list(self.held)
        if not ids:
            return
        try:
            renewed = set(
                await database_sync_to_async(services.hold_sessions)(ids, holder=holder_name(), seconds=lease_seconds())
            )
        except Exception:
            # The database is away: the leases last a whole RELAY_LEASE_SECONDS, and the next
            # renewal (a third of it later) tries again.
            log.exception("relay: could not renew the leases of %s sessions", len(ids))
            return
        for session_id in ids:
            if session_id not in renewed and session_id in self.held:
                log.warning("relay: session %s was closed under this process (its lease had run out)", session_id)
                self.held.pop(session_id)()


LEASES = LeaseKeeper()
