"""A staff member's dashboard socket lives only as long as their login may see the queue: it
closes on logout, deactivation, loss of staff status, and (on the periodic recheck) when the
login session has expired or is gone. On the real ASGI app, with a real session cookie."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connections
from django.test import Client

from approvals import events
from config.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def _close_worker_thread_connections():
    yield
    await database_sync_to_async(connections.close_all)()


from tests.approvals.test_consumers import DashboardCommunicator  # noqa: E402  skips presence frames


@database_sync_to_async
def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def dashboard(client: Client) -> WebsocketCommunicator:
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    headers = [
        (b"host", b"localhost"),
        (b"origin", b"http://localhost"),
        (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()),
    ]
    comm = DashboardCommunicator(application, "/ws/dashboard/", headers=headers)
    connected, _ = await comm.connect()
    assert connected
    assert (await comm.receive_json_from())["type"] == "snapshot"
    return comm


async def closed_with(comm: WebsocketCommunicator, *, timeout: float = 5) -> int:
    output = await comm.receive_output(timeout)
    assert output["type"] == "websocket.close", output
    return int(output["code"])


async def test_logging_out_closes_that_logins_dashboard_and_leaves_another_browser_open(alice):
    here, elsewhere = await logged_in(alice), await logged_in(alice)
    comm, other = await dashboard(here), await dashboard(elsewhere)

    await database_sync_to_async(here.logout)()

    assert await closed_with(comm) == events.CLOSE_LOGGED_OUT == 4401
    assert await other.receive_nothing()
    await other.disconnect()


async def test_logging_out_over_http_closes_the_dashboard(alice):
    client = await logged_in(alice)
    comm = await dashboard(client)

    response = await database_sync_to_async(client.post)("/accounts/logout/")

    assert response.status_code in (200, 302)
    assert await closed_with(comm) == 4401


async def test_deactivating_a_staff_member_closes_their_dashboards(alice, bob):
    comm = await dashboard(await logged_in(alice))
    bobs = await dashboard(await logged_in(bob))

    alice.is_active = False
    await database_sync_to_async(alice.save)()

    assert await closed_with(comm) == events.CLOSE_NOT_ALLOWED == 4403
    assert await bobs.receive_nothing()  # someone else's change closes nothing of theirs
    await bobs.disconnect()


async def test_losing_staff_status_closes_the_dashboard(alice):
    comm = await dashboard(await logged_in(alice))

    alice.is_staff = False
    await database_sync_to_async(alice.save)(update_fields=["is_staff"])

    assert await closed_with(comm) == 4403


async def test_a_save_that_keeps_access_closes_nothing(alice):
    comm = await dashboard(await logged_in(alice))

    alice.first_name = "Alicia"
    await database_sync_to_async(alice.save)()

    assert await comm.receive_nothing()
    await comm.disconnect()


async def test_a_deleted_login_session_closes_the_dashboard_on_the_recheck(alice, settings):
    settings.DASHBOARD_RECHECK_SECONDS = 0.2
    client = await logged_in(alice)
    comm = await dashboard(client)
    assert await comm.receive_nothing(0.5)  # still a valid login: the rechecks pass

    await database_sync_to_async(Session.objects.all().delete)()

    assert await closed_with(comm) == 4401


async def test_an_expired_login_session_closes_the_dashboard_on_the_recheck(alice, settings):
    settings.DASHBOARD_RECHECK_SECONDS = 0.2
    comm = await dashboard(await logged_in(alice))

    from django.utils import timezone

    await database_sync_to_async(Session.objects.update)(expire_date=timezone.now())

    assert await closed_with(comm) == 4401


async def test_a_deactivation_that_bypassed_save_is_caught_on_the_recheck(alice, settings, django_user_model):
    settings.DASHBOARD_RECHECK_SECONDS = 0.2
    comm = await dashboard(await logged_in(alice))

    # QuerySet.update() sends no post_save: the recheck still sees it.
    await database_sync_to_async(django_user_model.objects.filter(pk=alice.pk).update)(is_staff=False)

    assert await closed_with(comm) == 4403
