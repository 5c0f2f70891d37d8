"""A gateway in front of an MCP server that delegates "ask" to Countersign: the worked example of
docs/approval_api.md, in a few lines of Python on the official `mcp` SDK and the approval API.

    python -m demo.approval_gateway --countersign http://127.0.0.1:8000 --token cst_... \\
        --mcp http://127.0.0.1:8766/mcp --header X-API-Key=hotel-demo-key \\
        --session chat-1204 --requester "Dana Whitfield" unlock_door '{"room": "1204"}'

Before the tool runs, Countersign's staff see the call on their dashboard and approve or deny it
(or the policy answers at once); the gateway waits with the long poll, and runs the tool only if the
answer is yes, with exactly the arguments that were approved.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import httpx
import httpx2
import mcp_types
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client


class Denied(Exception):
    """Staff (or the policy, or the deadline) said no; the message is their reason."""


async def ask(
    countersign: httpx.AsyncClient, *, server: str, tool: str, arguments: dict[str, Any], session: str, requester: str
) -> dict[str, Any]:
    """Ask Countersign and wait for the final answer (the approval API's request, as JSON)."""
    created = await countersign.post(
        "/api/v1/requests",
        json={
            "server": server,
            "tool": tool,
            "arguments": arguments,
            "session": {"id": session, "label": f"{requester} (gateway)"},
            "requester": {"name": requester},
        },
    )
    created.raise_for_status()
    request: dict[str, Any] = created.json()
    while not request["final"]:
        waited = await countersign.get(f"/api/v1/requests/{request['id']}/wait", params={"timeout": 30})
        waited.raise_for_status()
        request = waited.json()
    return request


async def call_with_approval(
    countersign: httpx.AsyncClient,
    mcp_url: str,
    mcp_headers: dict[str, str],
    *,
    server: str,
    tool: str,
    arguments: dict[str, Any],
    session: str,
    requester: str,
) -> mcp_types.CallToolResult:
    """Run `tool` on the MCP server only once Countersign said yes. Raises Denied otherwise."""
    answer = await ask(countersign, server=server, tool=tool, arguments=arguments, session=session, requester=requester)
    if not answer["approved"]:
        raise Denied(answer["reason"] or answer["status"])
    async with Client(streamable_http_client(mcp_url, http_client=httpx2.AsyncClient(headers=mcp_headers))) as mcp:
        return await mcp.call_tool(tool, arguments)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--countersign", required=True, help="Countersign's base URL")
    parser.add_argument("--token", required=True, help="a client token with requests:write and requests:read")
    parser.add_argument("--mcp", required=True, help="the MCP server's Streamable HTTP URL")
    parser.add_argument("--header", action="append", default=[], metavar="NAME=VALUE", help="for the MCP server")
    parser.add_argument("--server", default="hotel", help="the server's label at Countersign")
    parser.add_argument("--session", default="gateway", help="your id of the conversation")
    parser.add_argument("--requester", default="gateway user", help="who asks")
    parser.add_argument("tool")
    parser.add_argument("arguments", help="JSON object")
    args = parser.parse_args(argv)
    headers = dict(h.split("=", 1) for h in args.header)

    async def run() -> int:
        async with httpx.AsyncClient(
            base_url=args.countersign, headers={"Authorization": f"Bearer {args.token}"}, timeout=60
        ) as countersign:
            try:
                result = await call_with_approval(
                    countersign,
                    args.mcp,
                    headers,
                    server=args.server,
                    tool=args.tool,
                    arguments=json.loads(args.arguments),
                    session=args.session,
                    requester=args.requester,
                )
            except Denied as denied:
                print(f"denied: {denied}")
                return 1
        print(json.dumps(result.model_dump(mode="json", exclude_none=True), indent=2))
        return 0

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
