"""One change, one frame (issue 16.7): callbacks of one transaction that each re-send a request
(a run's step records the tool call, then re-sends every card of its session) reach a dashboard
as one frame per change, not the same card twice."""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db import transaction

from approvals import services
from approvals.models import RealtimeSession
from realtime_bridge import calls
from tests.approvals.test_consumers import dashboard_socket, open_request

pytestmark = pytest.mark.django_db(transaction=True)


async def frames_until_marker(comm: Any, marker_id: str) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = json.loads((await comm.receive_output(10))["text"])
        frames.append(frame)
        if frame.get("type") == "request_changed" and frame["request"]["upstream_id"] == marker_id:
            return frames


def record_call_and_announce(session_id: int, upstream_id: str) -> None:
    """What a Responses run's last step does in one transaction (realtime_bridge/runs._record)."""
    with transaction.atomic():
        item = {
            "id": "mcp_call_1",
            "type": "mcp_call",
            "approval_request_id": upstream_id,
            "server_label": "hotel",
            "name": "unlock_door",
            "arguments": '{"room": "1204"}',
            "output": "Door 1204 unlocked.",
        }
        services.record_mcp_call(session=RealtimeSession.objects.get(pk=session_id), item=item)
        transaction.on_commit(lambda: calls.announce_session(session_id), robust=True)


async def test_a_call_recorded_and_its_session_announced_in_one_transaction_is_one_frame(alice, bob):
    room = await database_sync_to_async(services.open_session)(kind="relay", label="Room 1204", metadata={})
    req = await open_request(room, "mcpr_1")
    comm = await dashboard_socket(alice)
    await comm.connect()
    assert (await comm.receive_json_from())["type"] == "snapshot"

    await database_sync_to_async(services.decide)(req, approve=True, by=bob, reason="Checked ID")
    await database_sync_to_async(record_call_and_announce)(room.pk, "mcpr_1")
    await open_request(room, "mcpr_marker")  # comes after anything the two could have sent
    frames = await frames_until_marker(comm, "mcpr_marker")

    cards = [f["request"] for f in frames if f.get("type") == "request_changed" and f["request"]["id"] == req.pk]
    assert [(c["status"], c["call"]["recorded"]) for c in cards] == [("approved", False), ("approved", True)]
    await comm.disconnect()
