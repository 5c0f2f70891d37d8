"""The dashboard socket, hostile: staff's browsers send nothing on it, so whatever arrives
(text, JSON of any shape, binary, empty) is ignored: no error, no close, no state change, and
the next change of a request still reaches that same socket."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import connections
from hypothesis import strategies as st

from approvals import events, services
from approvals.models import ApprovalRequest
from audit.models import AuditEvent
from tests.approvals.test_consumers import DashboardCommunicator, dashboard_socket, open_request
from tests.hostile import strategies, surfaces

pytestmark = pytest.mark.django_db(transaction=True)

DASHBOARD_FRAMES: st.SearchStrategy[str | bytes] = st.one_of(
    strategies.hostile_frames(),
    st.builds(
        json.dumps,
        st.recursive(st.none() | st.booleans() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)),
    ),
    st.sampled_from(['{"type":"decide","id":1,"decision":"approve"}', '{"type":"snapshot"}', '{"type":"presence"}']),
)


@sync_to_async
def state() -> tuple[list[tuple[int, str]], int]:
    return list(ApprovalRequest.objects.values_list("pk", "status")), AuditEvent.objects.count()


async def next_request_frame(comm: DashboardCommunicator) -> dict[str, Any]:
    while True:
        frame = await comm.receive_json_from(timeout=10)
        if frame.get("type") not in ("presence",):
            return frame


async def test_the_dashboard_socket_ignores_whatever_a_browser_sends(alice: Any) -> None:
    room = await database_sync_to_async(services.open_session)(kind="relay", label="Room 1204", metadata={})
    req = await open_request(room, "mcpr_hostile")
    comm = await dashboard_socket(alice)
    connected, _ = await comm.connect()
    assert connected
    assert (await next_request_frame(comm))["type"] == "snapshot"
    before = await state()

    async def one(frame: str | bytes) -> None:
        await comm.send_input({"type": "websocket.receive", "bytes" if isinstance(frame, bytes) else "text": frame})
        # The socket still serves: a change of the request reaches it, and nothing else came.
        # (This process sends a card once per change: forget the last one, so the same card is news.)
        events._last_sent.digests.pop(req.pk, None)
        await database_sync_to_async(events.request_changed)(req.pk)
        frame_out = await next_request_frame(comm)
        assert frame_out["type"] == "request_changed" and frame_out["request"]["id"] == req.pk, frame_out
        assert await state() == before
        surfaces.ran("dashboard socket")

    await surfaces.explore(DASHBOARD_FRAMES, one)
    await comm.disconnect()
    await database_sync_to_async(connections.close_all)()
