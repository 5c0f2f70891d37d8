"""Register an MCP server, or update the one with this label. Never prints a secret.

    python manage.py register_mcp_server --label hotel --url https://mcp.hotel.example/mcp \
        --authorization "$HOTEL_MCP_KEY" --header X-Property=lisbon --require-approval always

Options left out keep their current value on an update; --header replaces all headers.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from approvals import services
from approvals.management.commands.create_client_token import parse_pairs
from approvals.models import McpServer


class Command(BaseCommand):
    help = "Create or update an MCP server by label (credentials are stored, never printed)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--label", required=True, help="the server_label the model sees")
        parser.add_argument("--url", required=True)
        parser.add_argument("--authorization", help="bearer token OpenAI sends to the server")
        parser.add_argument("--header", action="append", metavar="NAME=VALUE", help="extra HTTP header (repeatable)")
        parser.add_argument("--require-approval", choices=McpServer.RequireApproval.values)
        parser.add_argument(
            "--transport",
            choices=McpServer.Transport.values,
            help="how Countersign's gateway reaches the server upstream; OpenAI is given the URL alone",
        )
        parser.add_argument("--description")
        parser.add_argument(
            "--gateway",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="gateway mode: OpenAI gets Countersign's MCP gateway and a session token, never the server's "
            "URL or credentials (docs/gateway.md); --no-gateway turns it off",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        headers = parse_pairs(options["header"], "--header") if options["header"] is not None else None
        try:
            server, created = services.register_mcp_server(
                label=options["label"],
                url=options["url"],
                authorization=options["authorization"],
                headers=headers,
                require_approval=options["require_approval"],
                transport=options["transport"],
                description=options["description"],
                gateway_mode=options["gateway"],
            )
        except ValidationError as e:
            # Messages name the field and the rule, never the value.
            problems = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in e.message_dict.items())
            raise CommandError(f"Invalid MCP server: {problems}") from None
        verb = "Registered" if created else "Updated"
        auth = "set" if server.authorization else "none"
        names = ", ".join(server.headers) or "none"
        self.stdout.write(
            f"{verb} MCP server {server.label!r} at {server.url} "
            f"(require approval: {server.require_approval}; authorization: {auth}; headers: {names}"
            f"{'; gateway mode' if server.gateway_mode else ''})."
        )
