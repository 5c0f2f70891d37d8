"""MCP servers of the official `mcp` 1.x SDK, run by the probe tests in their own virtualenv
(tests/mcp_servers/envs.py): Countersign itself is on mcp 2.x.

    python mcp1_servers.py example  --port N --transport streamable-http|sse
    python mcp1_servers.py handmade --port N --tools JSON [--sse-path /events]
    python mcp1_servers.py oauth    --port N

- `example`: the SDK's README example (a FastMCP server with an `add` tool and a greeting resource).
- `handmade`: a low-level server that lists exactly the tools given as JSON (MCP `Tool` objects, so any
  name or input schema the 1.x types allow, e.g. `"type": "string"`), Streamable HTTP at /mcp and
  HTTP+SSE at --sse-path (default /sse) on one port.
- `oauth`: the example behind the SDK's OAuth resource-server support: every request without a valid
  token gets 401 with `WWW-Authenticate: Bearer …, resource_metadata="…"` (RFC 9728), and the metadata
  names the authorization server https://auth.hotel.example and the scope `hotel:read`.

Prints "serving" once the app is built; readiness is the port accepting connections.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from mcp import types
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.fastmcp import FastMCP
from mcp.server.lowlevel import Server
from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send


def example() -> FastMCP:
    """The `mcp` 1.x README's first server, as written there."""
    mcp = FastMCP("Demo")

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers"""
        return a + b

    @mcp.resource("greeting://{name}")
    def get_greeting(name: str) -> str:
        """Get a personalized greeting"""
        return f"Hello, {name}!"

    return mcp


class RefuseEveryToken:
    """A token verifier that knows no token: every request is unauthenticated."""

    async def verify_token(self, token: str) -> AccessToken | None:
        return None


def oauth(port: int) -> FastMCP:
    mcp = FastMCP(
        "Protected",
        token_verifier=RefuseEveryToken(),
        auth=AuthSettings(
            issuer_url="https://auth.hotel.example",
            resource_server_url=f"http://127.0.0.1:{port}/mcp",
            required_scopes=["hotel:read"],
            validate_token_resource=True,
        ),
    )

    @mcp.tool()
    def get_room_status(room: str) -> str:
        """Whether a room is occupied."""
        return f"room {room}: occupied"

    return mcp


def handmade(tools: list[dict[str, Any]], sse_path: str) -> Starlette:
    server: Server[Any, Any] = Server("handmade")
    listed = [types.Tool.model_validate(t) for t in tools]

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return listed

    @server.call_tool(validate_input=False)
    async def call_tool(name: str, arguments: dict[str, Any]) -> list[types.TextContent]:
        return [types.TextContent(type="text", text=f"{name} ran with {json.dumps(arguments)}")]

    manager = StreamableHTTPSessionManager(app=server)
    sse = SseServerTransport("/messages/")

    class Streamable:  # an ASGI app, which Route passes the raw scope (a function would get a Request)
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await manager.handle_request(scope, receive, send)

    async def sse_endpoint(request: Request) -> Response:
        async with sse.connect_sse(request.scope, request.receive, request._send) as (read, write):
            await server.run(read, write, server.create_initialization_options())
        return Response()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    return Starlette(
        routes=[
            Route("/mcp", endpoint=Streamable(), methods=["GET", "POST", "DELETE"]),
            Route(sse_path, endpoint=sse_endpoint, methods=["GET"]),
            Mount("/messages/", app=sse.handle_post_message),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["example", "handmade", "oauth"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--transport", choices=["streamable-http", "sse"], default="streamable-http")
    parser.add_argument("--tools", default="[]")
    parser.add_argument("--sse-path", default="/sse")
    args = parser.parse_args()
    if args.kind == "handmade":
        app = handmade(json.loads(args.tools), args.sse_path)
    else:
        mcp = example() if args.kind == "example" else oauth(args.port)
        app = mcp.sse_app() if args.transport == "sse" else mcp.streamable_http_app()
    print("serving", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
