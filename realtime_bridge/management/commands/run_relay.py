"""`python manage.py run_relay [--host H] [--port N]`: the relay on a plain websockets server
(realtime_bridge/relay_server.py), for deployments whose guests stream audio through Countersign."""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand

from realtime_bridge.relay_server import serve_relay


class Command(BaseCommand):
    help = "Serve the Realtime relay (/v1/realtime) on a plain websockets server."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001)

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        asyncio.run(serve_relay(host, port))
