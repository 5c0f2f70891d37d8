"""Coordination over the dashboard socket: a claim reaches the other dashboards, presence
frames, and a closed last dashboard releases its person's claims."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group

from approvals import services
from approvals.models import ApprovalRequest, DashboardPresence
from tests.approvals.test_consumers import dashboard_socket, open_request

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def desk(transactional_db, alice, bob, django_user_model):
    group = Group.objects.create(name="front-desk")
    alice.groups.add(group)
    bob.groups.add(group)
    return group


@pytest.fixture
def room(transactional_db):
    return services.open_session(kind="relay", label="Room 1204", metadata={"room": "1204"})


async def next_of(comm, kind: str) -> dict:
    while True:
        frame = await comm.receive_json_from(timeout=3)
        if frame["type"] == kind:
            return frame


async def test_a_claim_reaches_the_other_dashboards(desk, alice, bob, room):
    req = await open_request(room, "mcpr_1")
    alice_ws, bob_ws = await dashboard_socket(alice), await dashboard_socket(bob)
    await alice_ws.connect()
    await bob_ws.connect()
    await next_of(alice_ws, "snapshot")
    await next_of(bob_ws, "snapshot")

    await database_sync_to_async(services.claim)(req, by=alice)

    frame = await next_of(bob_ws, "request_changed")
    assert frame["request"]["claim"]["label"] == "Alice"
    await alice_ws.disconnect()
    await bob_ws.disconnect()


async def test_presence_frames_say_who_of_the_group_is_online(desk, alice, bob):
    alice_ws = await dashboard_socket(alice)
    alice_ws.presence = True
    await alice_ws.connect()
    await next_of(alice_ws, "snapshot")
    assert (await next_of(alice_ws, "presence"))["online"] == {"front-desk": ["Alice"]}

    bob_ws = await dashboard_socket(bob)
    await bob_ws.connect()

    while (await next_of(alice_ws, "presence"))["online"] != {"front-desk": ["Alice", "Bob"]}:
        pass  # the presence event of Alice's own connect may come first
    await bob_ws.disconnect()
    assert (await next_of(alice_ws, "presence"))["online"] == {"front-desk": ["Alice"]}
    await alice_ws.disconnect()
    assert not await database_sync_to_async(DashboardPresence.objects.exists)()


async def test_closing_the_last_dashboard_releases_the_claim(desk, alice, bob, room):
    req = await open_request(room, "mcpr_1")
    first, second = await dashboard_socket(alice), await dashboard_socket(alice)
    await first.connect()
    await second.connect()
    await database_sync_to_async(services.claim)(req, by=alice)

    await first.disconnect()
    assert await database_sync_to_async(lambda: ApprovalRequest.objects.get(pk=req.pk).claimed_by_id)() == alice.pk

    await second.disconnect()
    assert await database_sync_to_async(lambda: ApprovalRequest.objects.get(pk=req.pk).claimed_by_id)() is None
