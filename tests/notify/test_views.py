"""The installable app, the profile page, push subscriptions over HTTP, and a decision as the
service worker makes it (CSRF token from /notify/csrf, the dashboard's decide endpoint)."""

from __future__ import annotations

import json
from io import StringIO

from django.core.management import call_command
from django.test import Client
from py_vapid import Vapid02

from approvals.models import ApprovalRequest
from notify.models import NotificationPreference, PushSubscription

SUBSCRIPTIONS = "/notify/push/subscriptions"


def subscription(push_service) -> dict:
    return push_service.subscribe()


def test_the_manifest_makes_the_app_installable(client):
    response = client.get("/manifest.webmanifest")
    assert response["Content-Type"] == "application/manifest+json"
    data = response.json()
    assert (data["start_url"], data["scope"], data["display"]) == ("/", "/", "standalone")
    assert {icon["sizes"] for icon in data["icons"]} == {"192x192", "512x512"}


def test_the_service_worker_is_served_from_the_root(client):
    response = client.get("/sw.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert response["Service-Worker-Allowed"] == "/"
    assert b"notificationclick" in response.content


def test_the_favicon_is_there(client):
    assert client.get("/favicon.ico").status_code in (301, 302)


def test_push_subscriptions_need_a_staff_login_and_a_csrf_token(db, people, charlie, push_service):
    body = json.dumps(subscription(push_service))
    anonymous = Client(enforce_csrf_checks=True)
    assert anonymous.post(SUBSCRIPTIONS, body, content_type="application/json").status_code == 403
    outsider = Client()
    outsider.force_login(charlie)
    assert outsider.post(SUBSCRIPTIONS, body, content_type="application/json").status_code == 403
    staff = Client(enforce_csrf_checks=True)
    staff.force_login(people["fred"])
    assert staff.post(SUBSCRIPTIONS, body, content_type="application/json").status_code == 403  # no token
    assert not PushSubscription.objects.exists()


def test_a_browser_subscribes_and_unsubscribes(db, people, push_service):
    client = Client(enforce_csrf_checks=True)
    client.force_login(people["fred"])
    token = client.get("/notify/csrf").json()["csrf_token"]
    info = subscription(push_service)
    response = client.post(
        SUBSCRIPTIONS, json.dumps(info), content_type="application/json", headers={"X-CSRFToken": token,
        "User-Agent": "Firefox on Android"},
    )  # fmt: skip
    assert response.status_code == 201
    sub = PushSubscription.objects.get()
    assert (sub.user, sub.endpoint, sub.user_agent) == (people["fred"], info["endpoint"], "Firefox on Android")
    response = client.delete(
        SUBSCRIPTIONS, json.dumps({"endpoint": info["endpoint"]}), content_type="application/json",
        headers={"X-CSRFToken": token},
    )  # fmt: skip
    assert response.json() == {"deleted": True}
    assert not PushSubscription.objects.exists()


def test_a_subscription_must_name_an_https_endpoint_and_its_keys(client, people):
    client.force_login(people["fred"])
    bad = {"endpoint": "http://push.example.com/x", "keys": {"p256dh": "k", "auth": "a"}}
    assert client.post(SUBSCRIPTIONS, json.dumps(bad), content_type="application/json").status_code == 400
    assert client.post(SUBSCRIPTIONS, "nonsense", content_type="application/json").status_code == 400


def test_the_profile_page_turns_each_channel_on_and_off(client, people):
    client.force_login(people["fred"])
    page = client.get("/notify/profile")
    assert page.status_code == 200
    assert b"Enable push on this device" in page.content
    assert client.post("/notify/profile", {"push": "on", "slack": "on"}).status_code == 302
    pref = NotificationPreference.objects.get(user=people["fred"])
    assert (pref.push, pref.email, pref.slack) == (True, False, True)


def test_the_profile_page_is_for_staff(client, charlie):
    assert client.get("/notify/profile").status_code == 302  # to the login page
    client.force_login(charlie)
    assert client.get("/notify/profile").status_code == 403


def test_the_navigation_links_to_the_profile_page(client, people):
    client.force_login(people["fred"])
    assert b'href="/notify/profile"' in client.get("/history/").content


def test_a_notification_action_decides_with_the_live_login(hooks, people):
    req = hooks.open()
    worker = Client(enforce_csrf_checks=True)
    worker.force_login(people["fred"])
    who = worker.get("/notify/csrf").json()
    assert (who["authenticated"], who["staff"]) == (True, True)
    response = worker.post(
        f"/requests/{req.pk}/decide/", {"decision": "approve", "reason": ""}, headers={"X-CSRFToken": who["csrf_token"]}
    )
    assert response.status_code == 200
    assert ApprovalRequest.objects.get(pk=req.pk).decided_by == people["fred"]


def test_without_a_login_the_service_worker_is_told_to_open_the_card(client):
    assert client.get("/notify/csrf").json()["authenticated"] is False


def test_vapid_keys_prints_a_pair_that_signs():
    out = StringIO()
    call_command("vapid_keys", stdout=out)
    lines = dict(line.split("=", 1) for line in out.getvalue().split())
    vapid = Vapid02.from_string(lines["VAPID_PRIVATE_KEY"])
    headers = vapid.sign({"aud": "https://push.example.com", "sub": "mailto:it@hotel.example"})
    assert Vapid02.verify(headers["Authorization"])
    assert f"k={lines['VAPID_PUBLIC_KEY']}" in headers["Authorization"]
