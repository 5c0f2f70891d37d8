"""Webhook deliveries of the approval API, signed as Standard Webhooks specifies
(https://www.standardwebhooks.com: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64
HMAC-SHA256>` over `id.timestamp.body`, with the `whsec_` secret), with the `standardwebhooks` library.

At least once: a delivery is tried right after the decision commits, then at the backoff of
APPROVAL_API_WEBHOOK_RETRY_SECONDS until the endpoint answers 2xx; receivers deduplicate by
`webhook-id` (the same for every attempt of one event). A beat sweep picks up deliveries whose task
was lost (a worker killed mid-try)."""

from __future__ import annotations

import base64
import json
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

import httpx
from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from standardwebhooks import Webhook

from approval_api import requests as api_requests
from approval_api.models import WebhookDelivery, WebhookEndpoint
from approvals.models import ApprovalRequest, RealtimeSession

log = logging.getLogger(__name__)
DELIVER_TASK = "approval_api.tasks.deliver_webhook"
EVENT_DECIDED = "approval.decided"
# A try in flight holds its delivery this long: another worker (the sweep) leaves it alone meanwhile.
ATTEMPT_LEASE = timedelta(seconds=60)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def retry_schedule() -> list[float]:
    return [float(s) for s in settings.APPROVAL_API_WEBHOOK_RETRY_SECONDS]


def on_decision(*, request_id: int, session_id: int, status: str, kind: str) -> None:
    """events.decision_committed receiver: one delivery per active endpoint of the request's
    token, when the request came through the API."""
    req = ApprovalRequest.objects.select_related("session").filter(pk=request_id).first()
    if req is None or req.session.kind != RealtimeSession.Kind.API or req.session.client_token_id is None:
        return
    endpoints = list(
        WebhookEndpoint.objects.filter(client_token_id=req.session.client_token_id, disabled_at__isnull=True)
    )
    if not endpoints:
        return
    payload = {"type": EVENT_DECIDED, "timestamp": timezone.now().isoformat(), "data": api_requests.to_api(req)}
    for endpoint in endpoints:
        try:
            with transaction.atomic():
                delivery = WebhookDelivery.objects.create(
                    endpoint=endpoint,
                    request=req,
                    event_type=EVENT_DECIDED,
                    message_id="msg_" + secrets.token_hex(12),
                    payload=payload,
                    next_attempt_at=timezone.now(),
                )
        except IntegrityError:
            continue  # told already
        current_app.send_task(DELIVER_TASK, args=[delivery.pk])


def _claim(delivery_id: int, now: datetime) -> WebhookDelivery | None:
    """Take a due delivery for one try (a conditional UPDATE: of two workers one wins)."""
    won = WebhookDelivery.objects.filter(
        pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=now + ATTEMPT_LEASE)
    if not won:
        return None
    return WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)


def sign(endpoint: WebhookEndpoint, delivery: WebhookDelivery, body: str, now: datetime) -> dict[str, str]:
    signature = Webhook(endpoint.secret).sign(msg_id=delivery.message_id, timestamp=now, data=body)
    return {
        "content-type": "application/json",
        "user-agent": "Countersign-Webhooks/1",
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


def attempt(delivery_id: int, *, now: datetime | None = None) -> str | None:
    """Try one delivery if it is due; returns its status after the try, or None if not due/taken."""
    now = now or timezone.now()
    delivery = _claim(delivery_id, now)
    if delivery is None:
        return None
    endpoint = delivery.endpoint
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False)
    code: int | None = None
    error = ""
    try:
        response = httpx.post(
            endpoint.url,
            content=body.encode(),
            headers=sign(endpoint, delivery, body, now),
            timeout=settings.APPROVAL_API_WEBHOOK_TIMEOUT_SECONDS,
            follow_redirects=False,
        )
        code = response.status_code
        if not 200 <= code < 300:
            error = f"HTTP {code}: {response.text[:200]}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    return _record(delivery, now=now, code=code, error=error)


def _record(delivery: WebhookDelivery, *, now: datetime, code: int | None, error: str) -> str:
    attempts = delivery.attempts + 1
    fields: dict[str, Any] = {"attempts": attempts, "last_status_code": code, "last_error": error}
    schedule = retry_schedule()
    if not error:
        fields.update(status=WebhookDelivery.Status.DELIVERED, delivered_at=now, next_attempt_at=None)
        if delivery.request_id is not None:
            req = ApprovalRequest.objects.filter(pk=delivery.request_id).first()
            if req is not None:
                api_requests.mark_read(req)
    elif attempts > len(schedule):
        fields.update(status=WebhookDelivery.Status.FAILED, next_attempt_at=None)
        log.warning("webhook %s to %s failed for good: %s", delivery.message_id, delivery.endpoint.url, error)
    else:
        wait = schedule[attempts - 1]
        fields["next_attempt_at"] = now + timedelta(seconds=wait)
        current_app.send_task(DELIVER_TASK, args=[delivery.pk], countdown=wait)
        log.info("webhook %s to %s: %s; retry in %.0f s", delivery.message_id, delivery.endpoint.url, error, wait)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields)
    return str(fields.get("status", WebhookDelivery.Status.PENDING))


def due(now: datetime | None = None) -> list[int]:
    """Deliveries whose try is due (their task lost, or the retry's time come)."""
    now = now or timezone.now()
    return list(
        WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:500]
    )
