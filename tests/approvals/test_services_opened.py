import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client

from approvals import services, tasks
from audit.models import AuditEvent


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr(tasks.expire_request, "apply_async", lambda *a, **k: None)


def test_a_new_request_is_recorded_as_notified_once_it_reached_the_dashboards(
    make_request, effects, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        req = make_request()
    assert effects.dashboard == [req.pk]
    (notified,) = AuditEvent.objects.filter(request=req, kind="notified")
    assert notified.payload == {"group": "approvals.dashboard", "audience": "any staff"}


def test_no_notified_row_when_the_broadcast_failed(make_request, monkeypatch, django_capture_on_commit_callbacks):
    from approvals import events

    monkeypatch.setattr(events, "send_request", lambda req: False)
    with django_capture_on_commit_callbacks(execute=True):
        req = make_request()
    assert not AuditEvent.objects.filter(request=req, kind="notified").exists()


def test_opening_is_recorded_once_per_staff_member(make_request, alice, bob):
    req = make_request()
    assert services.mark_opened(req, by=alice) is True
    assert services.mark_opened(req, by=alice) is False
    assert services.mark_opened(req, by=bob) is True
    opened = AuditEvent.objects.filter(request=req, kind="opened").order_by("pk")
    assert [(e.actor, e.actor_label) for e in opened] == [(alice, "Alice"), (bob, "Bob")]


def test_a_closed_request_is_not_recorded_as_opened(make_request, alice, bob):
    req = services.decide(make_request(), approve=True, by=bob)
    assert services.mark_opened(req, by=alice) is False
    assert not AuditEvent.objects.filter(request=req, kind="opened").exists()


def test_only_staff_open_requests(make_request, charlie):
    with pytest.raises(PermissionDenied):
        services.mark_opened(make_request(), by=charlie)


def test_the_opened_endpoint_checks_csrf_staff_and_the_request(make_request, alice, charlie, password):
    req = make_request()
    strict = Client(enforce_csrf_checks=True)
    strict.login(username="alice", password=password)
    assert strict.post(f"/requests/{req.pk}/opened/").status_code == 403  # no CSRF token
    client = Client()
    assert client.post(f"/requests/{req.pk}/opened/").status_code == 403  # anonymous
    client.login(username="charlie", password=password)
    assert client.post(f"/requests/{req.pk}/opened/").status_code == 403  # not staff
    client.login(username="alice", password=password)
    assert client.post("/requests/424242/opened/").status_code == 404
    assert client.get(f"/requests/{req.pk}/opened/").status_code == 405
    response = client.post(f"/requests/{req.pk}/opened/")
    assert response.status_code == 200 and response.json() == {"recorded": True}
    assert client.post(f"/requests/{req.pk}/opened/").json() == {"recorded": False}
