"""`python manage.py run_bridge`: the long-running sideband bridge (realtime_bridge/sideband.py).

A thin async loop (STYLE.md 3.4): it holds the sideband sockets of the live calls it has a
lease on, and stops cleanly on SIGTERM or SIGINT, leaving the calls live and released for
another bridge to attach to. Several may run at once; each call is held by one of them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from django.core.management.base import BaseCommand

from realtime_bridge.sideband import Bridge

log = logging.getLogger("realtime_bridge.run_bridge")


class Command(BaseCommand):
    help = "Hold the sideband sockets of live SIP and WebRTC calls and relay their approvals."

    def handle(self, *args: Any, **options: Any) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await Bridge().run(stop)
        log.info("bridge: stopped")
