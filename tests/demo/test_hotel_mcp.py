"""The demo hotel MCP server, driven by the official `mcp` client over both transports it serves."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from tests.plugins.hotel import HotelMcp

TRANSPORTS = ["streamable_http", "sse"]


@asynccontextmanager
async def connect(hotel: HotelMcp, transport: str, api_key: str | None = "default") -> AsyncIterator[Client]:
    headers = {} if api_key is None else {"X-API-Key": hotel.api_key if api_key == "default" else api_key}
    if transport == "sse":
        async with Client(sse_client(hotel.sse_url, headers=headers)) as client:
            yield client
    else:
        async with (
            httpx2.AsyncClient(headers=headers) as http,
            Client(streamable_http_client(hotel.mcp_url, http_client=http)) as client,
        ):
            yield client


async def call(hotel: HotelMcp, name: str, arguments: dict[str, Any], transport: str = "streamable_http") -> Any:
    """Call a tool that must succeed; returns its structured result."""
    async with connect(hotel, transport) as client:
        result = await client.call_tool(name, arguments)
    assert not result.is_error, result.content
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


async def call_failing(hotel: HotelMcp, name: str, arguments: dict[str, Any]) -> str:
    async with connect(hotel, "streamable_http") as client:
        result = await client.call_tool(name, arguments)
    assert isinstance(result, CallToolResult)
    assert result.is_error
    return result.content[0].text


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tools_are_listed_with_annotations_that_match_what_they_do(hotel_mcp, transport):
    async with connect(hotel_mcp, transport) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert set(tools) == {
        "get_room_status",
        "lookup_folio",
        "set_room_lighting",
        "unlock_door",
        "issue_refund",
        "add_minibar_credit",
        "schedule_late_checkout",
        "move_room",
        "request_housekeeping",
        "book_taxi",
        "schedule_wake_up_call",
    }
    hints = {
        name: (t.annotations.read_only_hint, t.annotations.destructive_hint, t.annotations.idempotent_hint)
        for name, t in tools.items()
    }
    assert hints["get_room_status"][0] is True
    assert hints["lookup_folio"][0] is True
    assert hints["set_room_lighting"] == (False, False, True)
    assert hints["unlock_door"] == (False, True, True)
    assert hints["issue_refund"] == (False, True, False)
    assert hints["add_minibar_credit"] == (False, False, False)
    assert hints["schedule_late_checkout"] == (False, False, True)
    assert hints["move_room"] == (False, True, False)
    assert hints["request_housekeeping"] == (False, False, False)
    assert hints["book_taxi"] == (False, False, False)
    assert hints["schedule_wake_up_call"] == (False, False, False)
    # Only the refund (the payment processor) and the taxi (the taxi company) leave the hotel's own systems.
    assert sorted(n for n, t in tools.items() if t.annotations.open_world_hint) == ["book_taxi", "issue_refund"]
    assert all(t.annotations.title and t.description for t in tools.values())
    refund = tools["issue_refund"].input_schema
    assert refund["required"] == ["room", "amount", "currency", "reason"]
    assert refund["properties"]["amount"]["exclusiveMinimum"] == 0
    assert tools["set_room_lighting"].input_schema["required"] == ["room"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_get_room_status_reports_guests_door_and_lights(hotel_mcp, transport):
    status = await call(hotel_mcp, "get_room_status", {"room": "1204"}, transport)

    assert status["guests"] == ["Dana Whitfield", "Sam Whitfield"]
    assert status["door_locked"] is True
    assert status["lighting"] == {"level": 35, "scene": "relax"}
    assert status["checkout_time"] == "11:00"


async def test_lookup_folio_lists_charges_and_balance(hotel_mcp):
    folio = await call(hotel_mcp, "lookup_folio", {"room": "1204"})

    assert [c["amount"] for c in folio["charges"]] == [398.0, 14.5, 86.0]
    assert folio["balance"] == 498.5
    assert folio["currency"] == "EUR"
    assert hotel_mcp.state()["activity"] == []


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_set_room_lighting_by_level_and_by_scene(hotel_mcp, transport):
    await call(hotel_mcp, "set_room_lighting", {"room": "1204", "level": 0}, transport)
    assert hotel_mcp.state()["rooms"]["1204"]["lighting"] == {"level": 0, "scene": None}

    await call(hotel_mcp, "set_room_lighting", {"room": "1204", "scene": "reading"}, transport)
    assert hotel_mcp.state()["rooms"]["1204"]["lighting"] == {"level": 70, "scene": "reading"}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unlock_door_unlocks_and_logs_the_reason(hotel_mcp, transport):
    result = await call(hotel_mcp, "unlock_door", {"room": "1204", "reason": "guest's wife locked out"}, transport)

    assert result["was_locked"] is True
    room = hotel_mcp.state()["rooms"]["1204"]
    assert room["door_locked"] is False
    assert room["door_log"][0]["reason"] == "guest's wife locked out"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_issue_refund_adds_a_refund_to_the_folio(hotel_mcp, transport):
    args = {"room": "1204", "amount": 14.5, "currency": "EUR", "reason": "minibar charged in error"}
    result = await call(hotel_mcp, "issue_refund", args, transport)

    assert result["refund_id"] == "ref_0001"
    folio = hotel_mcp.state()["rooms"]["1204"]["folio"]
    assert folio["refunds"] == [{"id": "ref_0001", "reason": "minibar charged in error", "amount": 14.5}]
    assert folio["balance"] == 484.0


async def test_add_minibar_credit_adds_up_over_calls(hotel_mcp):
    await call(hotel_mcp, "add_minibar_credit", {"room": "1205", "amount": 20, "currency": "eur"})
    result = await call(hotel_mcp, "add_minibar_credit", {"room": "1205", "amount": 5.25, "currency": "EUR"})

    assert result["minibar_credit"] == 25.25
    assert hotel_mcp.state()["rooms"]["1205"]["minibar_credit"] == 25.25


async def test_schedule_late_checkout_moves_checkout(hotel_mcp):
    result = await call(hotel_mcp, "schedule_late_checkout", {"room": "1410", "time": "14:30"})

    assert result == {"room": "1410", "checkout_time": "14:30", "previous_checkout_time": "11:00"}
    assert hotel_mcp.state()["rooms"]["1410"]["checkout_time"] == "14:30"
    assert [a["action"] for a in hotel_mcp.state()["activity"]] == ["schedule_late_checkout"]


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("get_room_status", {"room": "9999"}, "There is no room '9999'"),
        ("unlock_door", {"room": "0000"}, "There is no room '0000'"),
        ("issue_refund", {"room": "1204", "amount": -5, "currency": "EUR", "reason": "x"}, "greater than 0"),
        ("issue_refund", {"room": "1204", "amount": 5, "currency": "EURO", "reason": "x"}, "not a currency we settle"),
        ("issue_refund", {"room": "1204", "amount": 5, "currency": "USD", "reason": "x"}, "kept in EUR, not USD"),
        ("issue_refund", {"room": "1205", "amount": 309.01, "currency": "EUR", "reason": "x"}, "only 309.00 EUR"),
        ("issue_refund", {"room": "1204", "amount": 1.005, "currency": "EUR", "reason": "x"}, "two decimal places"),
        ("issue_refund", {"room": "1206", "amount": 5, "currency": "EUR", "reason": "x"}, "no guest checked in"),
        ("issue_refund", {"room": "1204", "amount": 5, "currency": "EUR"}, "reason"),
        ("add_minibar_credit", {"room": "1204", "amount": 0, "currency": "EUR"}, "greater than 0"),
        ("set_room_lighting", {"room": "1204", "level": 101}, "less than or equal to 100"),
        ("set_room_lighting", {"room": "1204"}, "either a level"),
        ("set_room_lighting", {"room": "1204", "scene": "disco"}, "scene"),
        ("schedule_late_checkout", {"room": "1204", "time": "10:00"}, "must be after"),
        ("schedule_late_checkout", {"room": "1204", "time": "20:00"}, "until 18:00"),
        ("schedule_late_checkout", {"room": "1204", "time": "noonish"}, "not a time of day"),
        ("move_room", {"room": "1206"}, "no guest checked in"),
        ("move_room", {"room": "1204", "to_room": "1205"}, "Room 1205 is occupied"),
        ("request_housekeeping", {"room": "1204", "item": "champagne"}, "towels"),
        ("request_housekeeping", {"room": "1204", "item": "towels", "quantity": 40}, "less than or equal to 6"),
        ("book_taxi", {"room": "1204", "pickup_time": "7", "destination": "airport"}, "not a time of day"),
        ("book_taxi", {"room": "1204", "pickup_time": "07:00", "destination": "x", "passenger": "Bob"}, "not a guest"),
        ("schedule_wake_up_call", {"room": "1204", "time": "06:30", "day": "tomorrow"}, "not a date"),
    ],
)
async def test_invalid_input_is_a_tool_error_that_changes_nothing(hotel_mcp, name, arguments, message):
    before = hotel_mcp.state()

    text = await call_failing(hotel_mcp, name, arguments)

    assert message in text
    assert hotel_mcp.state() == before


async def test_refunds_cannot_add_up_to_more_than_the_charges(hotel_mcp):
    args = {"room": "1205", "amount": 300, "currency": "EUR", "reason": "spa closed"}
    await call(hotel_mcp, "issue_refund", args)

    text = await call_failing(hotel_mcp, "issue_refund", {**args, "amount": 10})

    assert "only 9.00 EUR" in text
    assert hotel_mcp.state()["rooms"]["1205"]["folio"]["balance"] == 9.0


async def test_reset_restores_the_initial_hotel(hotel_mcp):
    initial = hotel_mcp.state()
    await call(hotel_mcp, "unlock_door", {"room": "1410"})
    assert hotel_mcp.state() != initial

    hotel_mcp.reset()

    assert hotel_mcp.state() == initial


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer hotel-test-key"}])
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/mcp"), ("GET", "/sse"), ("POST", "/messages/"), ("GET", "/state"), ("POST", "/reset")],
)
def test_every_endpoint_needs_the_api_key_header(hotel_mcp, headers, method, path):
    response = httpx.request(method, hotel_mcp.base_url + path, headers=headers, json={}, timeout=10)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("api_key", [None, "wrong"])
async def test_mcp_client_without_the_right_key_cannot_connect(hotel_mcp, transport, api_key):
    # The transports report the 401 differently (an HTTPStatusError for SSE, an MCPError -32603 for
    # Streamable HTTP); the status itself is checked by the raw HTTP test above.
    with pytest.raises(Exception):  # noqa: B017
        async with connect(hotel_mcp, transport, api_key=api_key) as client:
            await client.call_tool("unlock_door", {"room": "1204"})

    assert hotel_mcp.state()["rooms"]["1204"]["door_locked"] is True


async def test_move_room_takes_the_stay_to_a_vacant_room_of_the_same_kind(hotel_mcp):
    before = hotel_mcp.state()["rooms"]["0812"]

    moved = await call(hotel_mcp, "move_room", {"room": "0812", "reason": "noisy neighbours"})

    rooms = hotel_mcp.state()["rooms"]
    assert moved == {"from_room": "0812", "to_room": "1206", "kind": "standard queen", "guests": ["Aiko Tanaka"]}
    assert rooms["1206"]["guests"] == ["Aiko Tanaka"]
    assert rooms["1206"]["folio"]["balance"] == before["folio"]["balance"]
    assert rooms["0812"]["guests"] == [] and rooms["0812"]["folio"]["charges"] == []


async def test_concierge_requests_are_kept_on_the_room(hotel_mcp):
    await call(hotel_mcp, "request_housekeeping", {"room": "1205", "item": "towels", "quantity": 2})
    taxi = await call(
        hotel_mcp,
        "book_taxi",
        {"room": "1410", "pickup_time": "6:15", "destination": "the airport", "day": "2026-12-04"},
    )
    await call(hotel_mcp, "schedule_wake_up_call", {"room": "1410", "time": "05:45"})

    rooms = hotel_mcp.state()["rooms"]
    assert rooms["1205"]["requests"] == [{"id": "bk_0001", "kind": "housekeeping", "item": "towels", "quantity": 2}]
    assert taxi["passenger"] == "Marco Bellini" and taxi["pickup_time"] == "06:15"
    assert [r["kind"] for r in rooms["1410"]["requests"]] == ["taxi", "wake_up_call"]
