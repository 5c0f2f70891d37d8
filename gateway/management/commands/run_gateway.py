"""`python manage.py run_gateway [--host H] [--port N]`: the MCP gateway (gateway/app.py) on
uvicorn, the `gateway` process of `make run`. OpenAI (for servers in gateway mode) and MCP
clients with a client token reach `/mcp-gateway/<label>/mcp` here; see docs/gateway.md."""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand

from gateway.app import create_app

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Serve the MCP gateway (/mcp-gateway/<label>/mcp) for the registered MCP servers."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.GATEWAY_PORT, help="Default: GATEWAY_PORT (8002).")

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        # Host headers are checked as Django checks them (ALLOWED_HOSTS, with any port); "*" or a
        # leading-dot pattern turns the check off here, as it widens it there.
        hosts = list(settings.ALLOWED_HOSTS)
        allowed = None if any(h == "*" or h.startswith(".") for h in hosts) else [f"{h}:*" for h in hosts] + hosts
        app = create_app(allowed_hosts=allowed)
        log.info("gateway: serving on http://%s:%s/mcp-gateway/<label>/mcp", host, port)
        # uvloop when installed (as run_relay), no access log (the gateway logs each call itself).
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=settings.LOG_LEVEL.lower(),
            log_config=None,
            loop=loop,
            access_log=False,
        )
