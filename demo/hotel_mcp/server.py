"""The demo hotel's MCP server (official `mcp` SDK, `MCPServer`), over Streamable HTTP and SSE.

Every request needs the header `X-API-Key`. That is deliberate: the Realtime API's MCP tool has a
single `authorization` field (sent as a bearer token), so a server that wants a custom header can
only be reached through the tool's `headers` map (REALTIME_PROTOCOL.md section 3.1), which is the
case the console must get right.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

import anyio
import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ToolAnnotations
from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from demo.hotel_mcp.hotel import HOUSEKEEPING_ITEMS, SCENES, SUPPORTED_CURRENCIES, Hotel, HotelError, HousekeepingItem
from demo.hotel_mcp.state_page import render_state

logger = logging.getLogger("hotel_mcp")
API_KEY_HEADER = "x-api-key"
DEFAULT_API_KEY = "hotel-demo-key"

RoomNumber = Annotated[str, Field(description="Room number, e.g. '1204'.", min_length=1, max_length=8)]
Currency = Annotated[
    str, Field(description=f"ISO 4217 code of the folio's currency: {', '.join(SUPPORTED_CURRENCIES)}.")
]


def build_mcp(hotel: Hotel) -> MCPServer:
    """The tools, bound to one hotel. Annotations are hints to clients (and to approval policies
    that match on `read_only`), so they say what the tool really does."""
    mcp = MCPServer(
        name="hotel_ops",
        title="Hotel operations",
        instructions="Front-desk operations for the demo hotel: rooms, doors, lights, folios and checkout.",
        version="1.0.0",
    )

    def run(action: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        # A HotelError is an anticipated refusal: ToolError makes the SDK answer isError=true with our
        # message (and no traceback in the log), which is what a model can read back to the guest.
        try:
            return action(*args, **kwargs)
        except HotelError as exc:
            raise ToolError(str(exc)) from None

    @mcp.tool(
        description="Show a room's occupancy, guests, door lock, lighting, checkout time and minibar credit.",
        annotations=ToolAnnotations(
            title="Get room status", read_only_hint=True, idempotent_hint=True, open_world_hint=False
        ),
    )
    async def get_room_status(room: RoomNumber) -> dict[str, Any]:
        return run(hotel.room_status, room)

    @mcp.tool(
        description="Show a room's folio: every charge, every refund and the balance, in the folio's currency.",
        annotations=ToolAnnotations(
            title="Look up folio", read_only_hint=True, idempotent_hint=True, open_world_hint=False
        ),
    )
    async def lookup_folio(room: RoomNumber) -> dict[str, Any]:
        return run(hotel.folio, room)

    @mcp.tool(
        description=(
            "Dim or brighten the lights in a room: give either a level from 0 (off) to 100 (full), "
            f"or a scene ({', '.join(f'{k}={v}' for k, v in SCENES.items())})."
        ),
        # Setting a level is an overwrite that the guest can undo; the same call twice changes nothing more.
        annotations=ToolAnnotations(
            title="Set room lighting",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    )
    async def set_room_lighting(
        room: RoomNumber,
        level: Annotated[int | None, Field(ge=0, le=100, description="Dimmer level, 0-100.")] = None,
        scene: Annotated[
            Literal["off", "night", "relax", "reading", "bright"] | None, Field(description="A named scene.")
        ] = None,
    ) -> dict[str, Any]:
        # Over MQTT this waits for the broker to confirm, so it runs off the event loop.
        return await anyio.to_thread.run_sync(lambda: run(hotel.set_lighting, room, level=level, scene=scene))

    @mcp.tool(
        description=(
            "Unlock a room's door remotely, e.g. for a guest locked out or a family member. "
            "The door stays unlocked until someone locks it; every unlock is logged with its reason."
        ),
        # Physical access to a guest's room cannot be taken back once someone walked in: destructive.
        # Unlocking an unlocked door changes nothing, hence idempotent.
        annotations=ToolAnnotations(
            title="Unlock door",
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    )
    async def unlock_door(
        room: RoomNumber,
        reason: Annotated[str | None, Field(description="Why the door is unlocked, for the door log.")] = None,
    ) -> dict[str, Any]:
        return run(hotel.unlock_door, room, reason=reason)

    @mcp.tool(
        description=(
            "Refund money to the guest's card against charges on the room's folio. The amount cannot exceed "
            "what is left to refund, and must be in the folio's currency."
        ),
        # Money leaves through the payment processor (an outside system) and cannot be pulled back:
        # destructive, open world, and calling it twice refunds twice.
        annotations=ToolAnnotations(
            title="Issue refund",
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=False,
            open_world_hint=True,
        ),
    )
    async def issue_refund(
        room: RoomNumber,
        amount: Annotated[float, Field(gt=0, description="Amount to refund, e.g. 14.50.")],
        currency: Currency,
        reason: Annotated[str, Field(min_length=1, description="Why, as it will appear on the folio.")],
    ) -> dict[str, Any]:
        return run(hotel.issue_refund, room, amount=amount, currency=currency, reason=reason)

    @mcp.tool(
        description="Give the room minibar credit that the guest can spend on minibar items.",
        # Additive (adds to a balance) but not idempotent: each call adds again.
        annotations=ToolAnnotations(
            title="Add minibar credit",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=False,
        ),
    )
    async def add_minibar_credit(
        room: RoomNumber,
        amount: Annotated[float, Field(gt=0, description="Credit to add, e.g. 20.")],
        currency: Currency,
    ) -> dict[str, Any]:
        return run(hotel.add_minibar_credit, room, amount=amount, currency=currency)

    @mcp.tool(
        description="Move the room's checkout to a later time today (after 11:00, until 18:00 at the latest).",
        annotations=ToolAnnotations(
            title="Schedule late checkout",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    )
    async def schedule_late_checkout(
        room: RoomNumber,
        time: Annotated[str, Field(description="New checkout time, HH:MM (24 h), e.g. '14:00'.")],
    ) -> dict[str, Any]:
        return run(hotel.schedule_late_checkout, room, time_of_day=time)

    _concierge_tools(mcp, hotel, run)
    return mcp


def _concierge_tools(mcp: MCPServer, hotel: Hotel, run: Any) -> None:
    @mcp.tool(
        description=(
            "Move the guests of a room to another room (a vacant one of the same kind unless `to_room` names "
            "one), with their folio and checkout; e.g. for noise, a broken air conditioner, or an upgrade."
        ),
        annotations=ToolAnnotations(
            title="Move room", read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
        ),
    )
    async def move_room(
        room: RoomNumber,
        to_room: Annotated[str | None, Field(description="The room to move to, e.g. '1206'.")] = None,
        reason: Annotated[str | None, Field(description="Why the guests move, for the log.")] = None,
    ) -> dict[str, Any]:
        return run(hotel.move_room, room, to_room=to_room, reason=reason)

    @mcp.tool(
        description=f"Ask housekeeping to bring something to a room: {', '.join(HOUSEKEEPING_ITEMS)}.",
        annotations=ToolAnnotations(
            title="Request housekeeping",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=False,
        ),
    )
    async def request_housekeeping(
        room: RoomNumber,
        item: Annotated[HousekeepingItem, Field(description="What to bring, e.g. 'towels'.")],
        quantity: Annotated[int, Field(ge=1, le=6, description="How many, 1-6.")] = 1,
    ) -> dict[str, Any]:
        return run(hotel.request_housekeeping, room, item=item, quantity=quantity)

    @mcp.tool(
        description="Book a taxi for a guest of the room: pickup time, destination, optionally the day and passenger.",
        # The taxi company is an outside system; a second call books a second taxi.
        annotations=ToolAnnotations(
            title="Book taxi", read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
        ),
    )
    async def book_taxi(
        room: RoomNumber,
        pickup_time: Annotated[str, Field(description="Pickup time, HH:MM (24 h), e.g. '07:30'.")],
        destination: Annotated[str, Field(min_length=1, description="Where to, e.g. 'the airport'.")],
        day: Annotated[str | None, Field(description="Pickup day, YYYY-MM-DD; today when omitted.")] = None,
        passenger: Annotated[str | None, Field(description="The guest's name, as checked in.")] = None,
    ) -> dict[str, Any]:
        return run(
            hotel.book_taxi, room, pickup_time=pickup_time, destination=destination, day=day, passenger=passenger
        )

    @mcp.tool(
        description="Schedule a wake-up call to the room's phone at a time, optionally on a given day.",
        annotations=ToolAnnotations(
            title="Schedule wake-up call",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=False,
        ),
    )
    async def schedule_wake_up_call(
        room: RoomNumber,
        time: Annotated[str, Field(description="HH:MM (24 h), e.g. '06:45'.")],
        day: Annotated[str | None, Field(description="YYYY-MM-DD; the next such time when omitted.")] = None,
    ) -> dict[str, Any]:
        return run(hotel.schedule_wake_up_call, room, time_of_day=time, day=day)


def _query_key(scope: Scope) -> bytes | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("key")
    return values[0].encode() if values else None


class RequireApiKey:
    """Pure ASGI (not BaseHTTPMiddleware), so the SSE and Streamable HTTP streams pass through untouched."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.api_key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # Who calls, in the log: the gateway's requests say so in their User-Agent (docs/gateway.md).
            agent = dict(scope["headers"]).get(b"user-agent", b"").decode("latin-1")
            logger.info("request %s %s from %r", scope["method"], scope["path"], agent)
            given = dict(scope["headers"]).get(API_KEY_HEADER.encode())
            if given is None and scope["path"] == "/state" and scope["method"] == "GET":
                # A browser cannot send a header when someone opens the state page: `?key=` there only.
                given = _query_key(scope)
            if given is None or not hmac.compare_digest(given, self.api_key):
                message = "Missing X-API-Key header." if given is None else "Invalid X-API-Key."
                body = {"error": {"type": "unauthorized", "code": "invalid_api_key", "message": message}}
                await JSONResponse(body, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(api_key: str, *, hotel: Hotel | None = None, host: str = "127.0.0.1") -> Starlette:
    """One app serving `/mcp` (Streamable HTTP), `/sse` + `/messages/` (SSE), `GET /state` and
    `POST /reset`. `app.state.hotel` is the live state. `host` decides DNS-rebinding protection the way
    the SDK does: on for loopback, off when listening on a public address."""
    hotel = hotel or Hotel()
    mcp = build_mcp(hotel)
    security = None
    if host not in ("127.0.0.1", "localhost", "::1"):
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    streamable = mcp.streamable_http_app(streamable_http_path="/mcp", transport_security=security, host=host)
    sse = mcp.sse_app(sse_path="/sse", message_path="/messages/", transport_security=security, host=host)

    async def state(request: Request) -> Response:
        # A browser (Accept: text/html) gets the page a person reads; everything else the JSON.
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(render_state(hotel.snapshot()))
        return JSONResponse(hotel.snapshot())

    async def reset(request: Request) -> JSONResponse:
        await anyio.to_thread.run_sync(hotel.reset)
        return JSONResponse(hotel.snapshot())

    routes: list[BaseRoute] = [
        *streamable.routes,
        *sse.routes,
        Route("/state", state, methods=["GET"]),
        Route("/reset", reset, methods=["POST"]),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The Streamable HTTP session manager runs a task group for the server's lifetime.
        async with mcp.session_manager.run():
            yield

    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(RequireApiKey, api_key=api_key)
    app.state.hotel = hotel
    app.state.mcp = mcp
    return app
