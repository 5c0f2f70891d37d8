"""Connect to a registered MCP server as OpenAI would, list its tools, and say what is wrong.

    python manage.py probe_mcp hotel_ops

Prints the report (never a credential), stores the tools with their definition hashes (a changed
definition is flagged for review in the admin), and exits with status 1 when the probe fails.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from approvals import services
from approvals.models import McpServer


class Command(BaseCommand):
    help = "Probe an MCP server of the registry: connect, list the tools, report problems in plain words."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("label", help="the server_label of a registered MCP server")

    def handle(self, *args: Any, **options: Any) -> None:
        server = McpServer.objects.filter(label=options["label"]).first()
        if server is None:
            raise CommandError(f"No MCP server is registered as {options['label']!r}.")
        result = services.probe_mcp_server(server, by=None)
        self.stdout.write(result.report())
        drifted = server.tools.drifted().order_by("name")
        for tool in drifted:
            self.stdout.write(f"- changed since last review: tool {tool.name!r} (mark it reviewed in the admin)")
        if not result.ok:
            raise CommandError(f"The probe of {server.label!r} failed.", returncode=1)
