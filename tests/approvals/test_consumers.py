from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connections
from django.test import Client

from approvals import events, services
from approvals.models import ApprovalRequest
from config.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

ALLOWED_ORIGIN = b"http://localhost"


@database_sync_to_async
def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


class DashboardCommunicator(WebsocketCommunicator):
    """Skips the presence frames (who is online) unless `presence` is set: most tests here are
    about requests, and every dashboard that connects or leaves sends one to all."""

    presence = False

    def _skip(self, output: dict[str, Any]) -> bool:
        text = output.get("text") or ""
        return not self.presence and text.startswith('{"type": "presence"')

    async def receive_output(self, timeout: float = 1) -> dict[str, Any]:
        while True:
            output = await super().receive_output(timeout)
            if not self._skip(output):
                return output

    async def receive_nothing(self, timeout: float = 0.1, interval: float = 0.01) -> bool:
        while not await super().receive_nothing(timeout, interval):
            output = await super().receive_output(timeout)
            if not self._skip(output):
                self.output_queue.put_nowait(output)  # put back for the next receive
                return False
        return True


async def dashboard_socket(user=None, *, origin: bytes | None = ALLOWED_ORIGIN) -> DashboardCommunicator:
    headers = [(b"host", b"localhost")]
    if origin is not None:
        headers.append((b"origin", origin))
    if user is not None:
        cookie = await session_cookie(user)
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    return DashboardCommunicator(application, "/ws/dashboard/", headers=headers)


@database_sync_to_async
def open_request(session, upstream_id: str) -> ApprovalRequest:
    req, _ = services.open_request(
        session=session,
        upstream_id=upstream_id,
        server_label="hotel",
        tool_name="unlock_door",
        arguments='{"room": "1204"}',
        raw_item={"type": "mcp_approval_request", "id": upstream_id},
    )
    return req


@database_sync_to_async
def as_dict(req: ApprovalRequest) -> dict[str, Any]:
    return ApprovalRequest.objects.for_display().get(pk=req.pk).to_dict()


def without_clock(data: dict[str, Any]) -> dict[str, Any]:
    # seconds_left depends on when it was serialised; everything else must match exactly.
    assert 0 < data["seconds_left"] <= 60
    return {k: v for k, v in data.items() if k != "seconds_left"}


@pytest.fixture(autouse=True)
async def _close_worker_thread_connections():
    yield
    # database_sync_to_async runs the ORM in one shared worker thread, whose connection would
    # outlive the test (CONN_MAX_AGE) and keep PostgreSQL from dropping the test database.
    await database_sync_to_async(connections.close_all)()


@pytest.fixture
def room(db):
    return services.open_session(kind="relay", label="Room 1204", metadata={"room": "1204"})


async def test_staff_get_a_snapshot_of_pending_requests_on_connect(alice, room):
    first = await open_request(room, "mcpr_1")
    second = await open_request(room, "mcpr_2")
    await database_sync_to_async(services.decide)(second, approve=True, by=alice)
    comm = await dashboard_socket(alice)

    connected, _ = await comm.connect()

    assert connected
    frame = await comm.receive_json_from()
    assert frame["type"] == "snapshot"
    assert [without_clock(r) for r in frame["requests"]] == [without_clock(await as_dict(first))]
    assert await comm.receive_nothing()
    await comm.disconnect()


async def test_a_new_request_and_its_decision_reach_the_dashboard_live(alice, bob, room):
    comm = await dashboard_socket(alice)
    await comm.connect()
    assert await comm.receive_json_from() == {"type": "snapshot", "requests": []}

    req = await open_request(room, "mcpr_1")
    frame = await comm.receive_json_from()
    assert frame["type"] == "request_changed"
    assert without_clock(frame["request"]) == without_clock(await as_dict(req))

    await database_sync_to_async(services.decide)(req, approve=False, by=bob, reason="Not tonight")
    frame = await comm.receive_json_from()
    assert frame == {"type": "request_changed", "request": await as_dict(req)}
    assert (frame["request"]["status"], frame["request"]["decided_by_label"]) == ("denied", "Bob")

    assert await comm.receive_nothing()
    await comm.disconnect()


async def test_a_new_conversation_line_updates_the_pending_card(alice, room):
    req = await open_request(room, "mcpr_1")
    comm = await dashboard_socket(alice)
    await comm.connect()
    await comm.receive_json_from()  # the snapshot

    await database_sync_to_async(services.add_conversation_line)(session=room, role="user", text="Hurry please")

    frame = await comm.receive_json_from()
    assert frame["request"]["id"] == req.pk
    assert [line["text"] for line in frame["request"]["conversation"]] == ["Hurry please"]
    assert await comm.receive_nothing()
    await comm.disconnect()


async def test_anonymous_visitors_are_refused(db):
    comm = await dashboard_socket(None)

    connected, _ = await comm.connect()

    assert not connected


async def test_non_staff_are_refused(charlie):
    comm = await dashboard_socket(charlie)

    connected, _ = await comm.connect()

    assert not connected


@pytest.mark.parametrize("origin", [b"http://evil.example", None], ids=["foreign", "missing"])
async def test_a_foreign_or_missing_origin_is_refused(alice, origin):
    comm = await dashboard_socket(alice, origin=origin)

    connected, _ = await comm.connect()

    assert not connected


async def test_a_closed_dashboard_leaves_the_group(alice):
    comm = await dashboard_socket(alice)
    await comm.connect()
    await comm.receive_json_from()
    layer = get_channel_layer()
    assert len(layer.groups.get(events.DASHBOARD, {})) == 1

    await comm.disconnect()

    assert not layer.groups.get(events.DASHBOARD)
