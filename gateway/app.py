"""The gateway's MCP endpoint: `/mcp-gateway/<label>/mcp` (Streamable HTTP) for every enabled
registered server, built on the official SDK's low-level `Server`, served by `run_gateway`.

Every HTTP request must carry `Authorization: Bearer <token>`: a session's capability token
(what OpenAI got for a server in gateway mode) or a client token with the scope `mcp:gateway`;
anything else is answered 401 before any MCP work. `initialize` is the gateway's own;
`tools/list` is the real server's list without the tools the policy always denies (and its
drift noted); `tools/call` runs on the real server only as approvals/services/gateway.py
decides. A refused call is a tool result with `isError` and the reason in words, which the model
can read back to the guest. A client's call that waits for staff gets `notifications/progress`
(when it sent a progress token) until the decision.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, cast

import mcp_types as types
from channels.db import DatabaseSyncToAsync
from django.utils import timezone
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

import mcp_link
from approvals import services
from approvals.models import ApprovalRequest, McpServer
from gateway.upstream import Pool, Target, UpstreamError

logger = logging.getLogger(__name__)
T = TypeVar("T")

PATH = "/mcp-gateway/{label}/mcp"
# While a client's call waits for staff: how often the decision is looked up, and how often the
# client hears that it is still waiting.
POLL_SECONDS = 0.5
PROGRESS_SECONDS = 5.0
# A pending request this far past its deadline is expired by the gateway itself (the beat sweep
# normally does it first; this keeps a client from waiting forever when no worker runs).
OVERDUE_SLACK = timedelta(seconds=5)
# JSON-RPC error of a listing the token may not make (-32001: implementation-defined server error).
TOKEN_REFUSED = -32001
UNKNOWN_TOKEN = (
    "Unknown, revoked or unscoped token: send a session's gateway token, or a client token with the scope "
    "`mcp:gateway`."
)


# The server label of the request being served: what the SDK's Mcp-Param header check asks about
# (Gateway.input_schema), which it calls with the tool name only.
CURRENT_LABEL: ContextVar[str] = ContextVar("gateway_label", default="")


@dataclass(frozen=True)
class Resolved:
    """The caller and the server of one HTTP request, found before any MCP work."""

    caller: services.gateway.Caller
    server: McpServer
    target: Target


def db(func: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """`func` run in a thread of the loop's pool with its own database connection (Django keeps
    one per thread, reused up to DB_CONN_MAX_AGE). Not the one shared thread of
    `database_sync_to_async`: a call's result being recorded must not hold up the next call."""
    return cast("Callable[..., Awaitable[T]]", DatabaseSyncToAsync(func, thread_sensitive=False))


def _target(server: McpServer) -> Target:
    headers = mcp_link.request_headers(authorization=server.authorization or None, headers=server.headers or {})
    return Target(
        label=server.label,
        url=server.url,
        transport=mcp_link.detect_transport(server.url, server.transport),
        headers=tuple(sorted(headers.items())),
    )


def resolve(label: str, bearer: str) -> Resolved | tuple[int, str]:
    """The caller and server of a request, or (HTTP status, message)."""
    caller = services.gateway.authenticate(bearer)
    if caller is None:
        return 401, UNKNOWN_TOKEN
    token = caller.session_token
    if token is not None and token.server.label == label:
        server: McpServer | None = token.server if token.server.enabled else None  # loaded with the token
    else:
        server = McpServer.objects.filter(label=label, enabled=True).first()
    if server is None:
        return 404, f"No enabled MCP server {label!r} is registered."
    return Resolved(caller, server, _target(server))


def _bearer(scope: Scope) -> str:
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


class Endpoint:
    """ASGI: check the token and the server, then hand the request to the SDK's transport (JSON
    answers for a session token, event streams for a client's) with what was found in
    `request.state.gateway`."""

    def __init__(self, *, session: ASGIApp, client: ASGIApp) -> None:
        self.session_app = session
        self.client_app = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        label = str(scope.get("path_params", {}).get("label", ""))
        found = await db(resolve)(label, _bearer(scope))
        if not isinstance(found, Resolved):
            status, message = found
            if status == 401:
                logger.warning("gateway: refused a request for %s: unknown token", label)
            body = {"jsonrpc": "2.0", "id": None, "error": {"code": TOKEN_REFUSED, "message": message}}
            headers = {"WWW-Authenticate": 'Bearer realm="countersign-gateway"'} if status == 401 else None
            await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)
            return
        state = {**(scope.get("state") or {}), "gateway": found}
        label_set = CURRENT_LABEL.set(found.server.label)
        try:
            mcp_app = self.session_app if found.caller.session_token is not None else self.client_app
            await mcp_app({**scope, "state": state}, receive, send)
        finally:
            CURRENT_LABEL.reset(label_set)


def _resolved(ctx: Any) -> Resolved:
    request = ctx.request
    found = getattr(getattr(request, "state", None), "gateway", None)
    if not isinstance(found, Resolved):
        raise MCPError(types.INVALID_REQUEST, "This endpoint serves the gateway's HTTP requests only.")
    return found


output_text = mcp_link.output_text


def _error_result(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def _after_listing(server: McpServer, tools: list[types.Tool]) -> set[str]:
    """Note drift against the registry (as a session's mcp_list_tools would), and say which tools
    the policy lets a client see."""
    seen = [{"name": t.name, "description": t.description or "", "input_schema": t.input_schema} for t in tools]
    services.observe_listed_tools(server_label=server.label, tools=seen)
    return services.gateway.listable(server, [t.name for t in tools])


def _expire_if_overdue(req: ApprovalRequest) -> ApprovalRequest:
    if req.status == ApprovalRequest.Status.PENDING and timezone.now() > req.deadline + OVERDUE_SLACK:
        services.expire_request(req.pk)
    return services.gateway.current(req)


class Gateway:
    """The MCP server every gateway URL is served by, and its connections upstream."""

    def __init__(self) -> None:
        self.pool = Pool()
        self.recording: set[asyncio.Task[None]] = set()
        # (server label, tool name) → input schema, from the latest listing through this process.
        self.schemas: dict[tuple[str, str], dict[str, Any]] = {}
        self.server: Server[Any] = Server(
            "countersign-gateway",
            version="1.0.0",
            instructions="Countersign's MCP gateway: tools of a registered MCP server, run only as approved.",
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            get_tool_input_schema=self.input_schema,
        )

    def input_schema(self, name: str) -> dict[str, Any] | None:
        """A tool's input schema for the SDK's check of `Mcp-Param-*` headers (MCP 2026-07-28),
        from the last listing this process made; None (the check is skipped, as the SDK does when
        a listing fails) before any. Without it the SDK would list the tools upstream before every
        call."""
        return self.schemas.get((CURRENT_LABEL.get(), name))

    def _record(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                logger.exception("gateway: recording a call's result failed")

        task = asyncio.create_task(run())
        self.recording.add(task)
        task.add_done_callback(self.recording.discard)

    async def drain(self) -> None:
        """Wait for the results still being recorded (at shutdown)."""
        if self.recording:
            await asyncio.wait(set(self.recording), timeout=30)

    async def list_tools(self, ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        r = _resolved(ctx)
        problem = services.gateway.token_problem(r.caller, r.server.label)
        if problem:
            raise MCPError(TOKEN_REFUSED, problem)
        try:
            tools = await self.pool.list_tools(r.target)
        except UpstreamError as exc:
            raise MCPError(types.INTERNAL_ERROR, f"Countersign could not list the tools: {exc}.") from None
        shown = await db(_after_listing)(r.server, tools)
        for tool in tools:
            self.schemas[(r.server.label, tool.name)] = dict(tool.input_schema)
        return types.ListToolsResult(tools=[t for t in tools if t.name in shown])

    async def call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        r = _resolved(ctx)
        arguments = dict(params.arguments or {})
        gw = services.gateway
        started = time.perf_counter()
        try:
            if r.caller.session_token is not None:
                admission = await db(gw.admit_session_call)(r.caller, r.server, params.name, arguments)
            else:
                admission = await self._held(ctx, r, params.name, arguments)
        except gw.GatewayRefusal as refusal:
            return _error_result(str(refusal))
        finish = db(gw.finish)
        admitted = time.perf_counter()
        try:
            result = await self.pool.call_tool(r.target, params.name, arguments)
        except MCPError as exc:
            await finish(admission.call, output=None, error=f"MCP error {exc.code}: {exc.message}")
            raise
        except UpstreamError as exc:
            await finish(admission.call, output=None, error=str(exc))
            return _error_result(f"Countersign could not run the call: {exc}.")
        text = output_text(result)
        logger.info(
            "gateway: ran %s/%s (call %s, request %s; admitted in %.1f ms, upstream %.1f ms)",
            r.server.label,
            params.name,
            admission.call.pk,
            admission.call.request_id,
            (admitted - started) * 1000,
            (time.perf_counter() - admitted) * 1000,
        )
        # The approval was consumed before the call ran (at most once is settled); the result is
        # recorded while the answer goes back, off the caller's wait. Shutdown waits for it.
        self._record(
            finish(admission.call, output=None if result.is_error else text, error=text if result.is_error else None)
        )
        return result

    async def _held(self, ctx: Any, r: Resolved, name: str, arguments: dict[str, Any]) -> services.gateway.Admission:
        """A client's call: asked as an approval request, waited for (with progress), admitted."""
        req = await db(services.gateway.ask)(r.caller, r.server, name, arguments)
        started = time.monotonic()
        try:
            req = await self._wait(ctx, req, name, started)
        except asyncio.CancelledError:
            # The client went away: its request leaves the queue (a decision already made stays).
            await asyncio.shield(db(services.gateway.abandon)(req))
            raise
        return await db(services.gateway.admit_decided)(r.caller, r.server, req, arguments)

    async def _wait(self, ctx: Any, req: ApprovalRequest, name: str, started: float) -> ApprovalRequest:
        told = -PROGRESS_SECONDS
        refresh = db(_expire_if_overdue)
        while req.status == ApprovalRequest.Status.PENDING:
            waited = time.monotonic() - started
            if waited - told >= PROGRESS_SECONDS:
                told = waited
                left = max(0, int((req.deadline - timezone.now()).total_seconds()))
                await ctx.session.report_progress(
                    round(waited, 1),
                    None,
                    f"Waiting for staff to approve {name} (request #{req.pk}); this step's deadline is in {left} s.",
                )
            await asyncio.sleep(POLL_SECONDS)
            req = await refresh(req)
        return req


def create_app(*, allowed_hosts: list[str] | None = None) -> Starlette:
    """The gateway's ASGI app. `allowed_hosts`: Host headers accepted (DNS rebinding protection);
    None: any (behind a proxy that checks them)."""
    gateway = Gateway()
    security = (
        TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=allowed_hosts, allowed_origins=[])
        if allowed_hosts
        else TransportSecuritySettings(enable_dns_rebinding_protection=False)
    )
    # Stateless: every request stands alone (its token is checked each time), so any gateway
    # process may serve any request, and nothing is kept per client between them. OpenAI's calls
    # (session tokens) are answered as plain JSON, the cheapest; a client's call may be held for
    # staff and is answered as an event stream, which carries its progress notifications.
    plain = StreamableHTTPSessionManager(
        app=gateway.server, stateless=True, json_response=True, security_settings=security
    )
    streamed = StreamableHTTPSessionManager(app=gateway.server, stateless=True, security_settings=security)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with plain.run(), streamed.run():
            try:
                yield
            finally:
                await gateway.drain()
                await gateway.pool.close()

    endpoint = Endpoint(session=StreamableHTTPASGIApp(plain), client=StreamableHTTPASGIApp(streamed))
    app = Starlette(routes=[Route(PATH, endpoint=endpoint)], lifespan=lifespan)
    app.state.gateway = gateway
    return app
