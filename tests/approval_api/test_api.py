"""The approval API over Django's test client: creating, reading and waiting, scopes and bad
tokens refused, bad input changing nothing, the schema valid, webhooks signed and retried."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from openapi_spec_validator import validate
from standardwebhooks import Webhook

from approval_api import webhooks
from approval_api.models import WebhookDelivery
from approvals import services
from approvals.models import ApprovalRequest, AuditKind, ClientToken, RealtimeSession
from audit.models import AuditEvent
from tests.approval_api.conftest import bearer

REFUND = {"server": "pms", "tool": "issue_refund", "arguments": {"room": "1204", "amount": 48, "currency": "EUR"}}


def create(token: str, body: dict | None = None, **extra: Any):
    headers: dict[str, Any] = {**bearer(token), **extra}
    return Client().post("/api/v1/requests", json.dumps(body or REFUND), content_type="application/json", **headers)


def test_a_request_made_over_the_api_waits_for_staff_like_any_other(api_token, alice):
    _, plaintext = api_token
    body = {
        **REFUND,
        "session": {"id": "conv-77", "label": "Web chat: Dana", "metadata": {"room": "1204"}},
        "requester": {"id": "u-9", "name": "Dana Whitfield"},
    }
    response = create(plaintext, body)
    assert response.status_code == 201, response.content
    out = response.json()
    assert (out["status"], out["final"], out["approved"]) == ("pending", False, None)
    assert out["arguments"] == REFUND["arguments"] and out["session"]["id"] == "conv-77"
    req = ApprovalRequest.objects.get(pk=out["id"])
    # On the dashboard like a Realtime request, its origin named.
    card = req.to_dict()
    assert card["session"]["kind_label"] == "Approval API" and card["session"]["label"] == "Web chat: Dana"
    assert card["session"]["metadata"]["requester"] == "Dana Whitfield"
    assert AuditEvent.objects.filter(request=req, kind=AuditKind.REQUESTED).exists()

    # A second request of the same caller session joins it.
    second = create(plaintext, {**body, "arguments": {"room": "1204", "amount": 5, "currency": "EUR"}}).json()
    assert ApprovalRequest.objects.get(pk=second["id"]).session_id == req.session_id

    services.decide(req, by=alice, approve=True, reason="Receipt checked")
    got = Client().get(f"/api/v1/requests/{req.pk}", **bearer(plaintext)).json()
    assert (got["status"], got["approved"], got["reason"], got["decided_by"]) == (
        "approved",
        True,
        "Receipt checked",
        "Alice",
    )
    # Reading the answer is recorded once, as an answer sent upstream.
    Client().get(f"/api/v1/requests/{req.pk}", **bearer(plaintext))
    assert AuditEvent.objects.filter(request=req, kind=AuditKind.SENT, actor_label="approval API").count() == 1


def test_scopes_and_bad_tokens_are_refused(api_token, db):
    _, gateway = api_token
    _, tablet = services.issue_token(label="Room 1204", metadata={})  # realtime only
    _, reader = services.issue_token(label="Reader", metadata={}, scopes=["requests:read"])
    revoked, revoked_plain = services.issue_token(label="Old", metadata={}, scopes=["requests:write"])
    services.revoke_token(revoked, by=None)

    assert create(tablet).status_code == 403
    assert "requests:write" in create(tablet).json()["detail"]
    assert create(reader).status_code == 403
    assert create(revoked_plain).status_code == 401
    assert create("cst_" + "x" * 40).status_code == 401
    no_header = Client().post("/api/v1/requests", json.dumps(REFUND), content_type="application/json")
    assert no_header.status_code == 401 and no_header["WWW-Authenticate"].startswith("Bearer")
    basic = create("ignored", HTTP_AUTHORIZATION="Basic YWxpY2U6eA==")
    assert basic.status_code == 401
    assert ApprovalRequest.objects.count() == 0 and RealtimeSession.objects.count() == 0

    req_id = create(gateway).json()["id"]
    assert Client().get(f"/api/v1/requests/{req_id}", **bearer(reader)).status_code == 404  # not its request
    assert Client().get(f"/api/v1/requests/{req_id}/wait?timeout=0", **bearer(reader)).status_code == 404
    assert Client().get(f"/api/v1/requests/{req_id}/wait", **bearer(tablet)).status_code == 403
    assert Client().get(f"/api/v1/requests/{req_id}/wait").status_code == 401
    assert Client().get("/api/v1/webhooks", **bearer(reader)).status_code == 403
    # The relay refuses an API-only token: it has no `realtime` scope.
    assert ClientToken.objects.for_plaintext(gateway) is None
    assert ClientToken.objects.for_plaintext(tablet) is not None


@pytest.mark.parametrize(
    "body",
    [
        {"tool": "issue_refund", "arguments": {}},
        {**REFUND, "server": "no spaces allowed"},
        {**REFUND, "tool": ""},
        {**REFUND, "arguments": ["not", "an", "object"]},
        {**REFUND, "arguments": {"blob": "x" * 70_000}},
        {**REFUND, "session": {"id": "y" * 201}},
        {**REFUND, "requester": {"email": "not-an-email"}},
    ],
)
def test_bad_input_gets_a_clear_error_and_changes_nothing(api_token, body):
    _, plaintext = api_token
    before = AuditEvent.objects.count()
    response = create(plaintext, body)
    assert response.status_code == 400
    assert response.json()  # names the field
    assert ApprovalRequest.objects.count() == 0 and RealtimeSession.objects.count() == 0
    assert AuditEvent.objects.count() == before


def test_not_json_is_refused(api_token):
    _, plaintext = api_token
    response = Client().post("/api/v1/requests", "{not json", content_type="application/json", **bearer(plaintext))
    assert response.status_code == 400 and ApprovalRequest.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_the_long_poll_answers_when_staff_decide(api_token, alice):
    # transaction=True: the waiting client runs in a thread of its own, with its own connection.
    _, plaintext = api_token
    req_id = create(plaintext).json()["id"]
    # Nothing yet: a short wait comes back pending.
    pending = Client().get(f"/api/v1/requests/{req_id}/wait?timeout=0.2", **bearer(plaintext))
    assert pending.status_code == 200 and pending.json()["final"] is False
    assert Client().get(f"/api/v1/requests/{req_id}/wait?timeout=9999", **bearer(plaintext)).status_code == 400

    result: dict = {}

    def waiter() -> None:
        started = time.monotonic()
        result["response"] = Client().get(f"/api/v1/requests/{req_id}/wait?timeout=30", **bearer(plaintext))
        result["took"] = time.monotonic() - started

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.5)
    services.decide(ApprovalRequest.objects.get(pk=req_id), by=alice, approve=False, reason="Not this time")
    thread.join(30)
    got = result["response"].json()
    assert result["response"].status_code == 200, got
    assert (got["status"], got["approved"], got["reason"]) == ("denied", False, "Not this time")
    assert result["took"] < 30


def test_the_schema_is_valid_openapi_and_the_docs_are_served(db):
    schema = Client().get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    document = json.loads(schema.content)
    validate(document)
    paths = document["paths"]
    assert {"/api/v1/requests", "/api/v1/requests/{id}", "/api/v1/requests/{id}/wait", "/api/v1/webhooks"} <= set(paths)
    assert document["components"]["securitySchemes"]["clientToken"]["scheme"] == "bearer"
    docs = Client().get("/api/v1/docs")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content


def test_webhooks_are_signed_as_standard_webhooks_and_retried(
    api_token, alice, receiver, settings, django_capture_on_commit_callbacks
):
    settings.APPROVAL_API_WEBHOOK_RETRY_SECONDS = ["1", "1"]
    _, plaintext = api_token
    made = Client().post(
        "/api/v1/webhooks", json.dumps({"url": receiver.url}), content_type="application/json", **bearer(plaintext)
    )
    assert made.status_code == 201
    secret = made.json()["secret"]
    assert secret.startswith("whsec_")
    assert [w["url"] for w in Client().get("/api/v1/webhooks", **bearer(plaintext)).json()] == [receiver.url]

    receiver.statuses = [500]  # the first try fails
    req = ApprovalRequest.objects.get(pk=create(plaintext).json()["id"])
    # The decision's after-commit work (the hook that makes the delivery), run as a commit would.
    with django_capture_on_commit_callbacks(execute=True):
        services.decide(req, by=alice, approve=True, reason="ok")
    delivery = WebhookDelivery.objects.get(request=req)
    # The worker would run the task; here the same function, by hand.
    assert webhooks.attempt(delivery.pk) == "pending"
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.last_status_code == 500
    assert delivery.next_attempt_at is not None and delivery.next_attempt_at > timezone.now()
    assert webhooks.attempt(delivery.pk) is None  # not due yet
    assert webhooks.attempt(delivery.pk, now=timezone.now() + timedelta(seconds=2)) == "delivered"

    first, second = receiver.wait_for(2)
    assert first[0]["webhook-id"] == second[0]["webhook-id"] == delivery.message_id  # one event, one id
    payload = Webhook(secret).verify(second[1], second[0])
    assert payload["type"] == "approval.decided"
    assert (payload["data"]["id"], payload["data"]["approved"]) == (req.pk, True)
    # A forged body does not verify.
    with pytest.raises(Exception, match="signature"):
        Webhook(secret).verify(second[1].replace(b"true", b"false"), second[0])

    assert Client().delete(f"/api/v1/webhooks/{made.json()['id']}", **bearer(plaintext)).status_code == 204
    assert Client().get("/api/v1/webhooks", **bearer(plaintext)).json() == []
