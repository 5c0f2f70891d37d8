"""Web Push: a request's notification to every subscribed browser of the staff it is routed to.

The push service of each browser (Mozilla's, Google's, Apple's, ...) is reached over RFC 8030:
one POST per subscription with TTL and Urgency, the payload encrypted for that browser
(RFC 8291, aes128gcm) and the sender identified by a VAPID token (RFC 8292).
Reference: https://www.rfc-editor.org/rfc/rfc8030#section-5
Reference: https://www.rfc-editor.org/rfc/rfc8291
Reference: https://www.rfc-editor.org/rfc/rfc8292
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from py_vapid import Vapid02
from py_vapid.utils import b64urlencode
from pywebpush import WebPusher

from approvals.models import ApprovalRequest
from notify.models import PushSubscription
from notify.services import quick_actions_allowed, routed_staff

logger = logging.getLogger(__name__)

NEW = "new"
ESCALATED = "escalated"
# A push service that takes longer than this is counted as failed for this request; the next
# request tries again.
PUSH_TIMEOUT_SECONDS = 5
# RFC 8292 allows a token up to 24 h; one is signed per push service and reused until this
# much of it is left (signing is the costliest step of a push after the encryption).
VAPID_TOKEN_SECONDS = 12 * 3600
VAPID_RENEW_BEFORE_SECONDS = 3600
# Pushes of one request in flight at once: each is mostly a wait on a push service far away
# (tens of milliseconds), so fifty one after the other would take seconds.
PUSH_PARALLEL = 16
# The push service answers these when the subscription is gone for good (RFC 8030 7.3).
GONE = (404, 410)


def enabled() -> bool:
    return bool(settings.VAPID_PRIVATE_KEY and settings.VAPID_PUBLIC_KEY)


@lru_cache(maxsize=4)
def _vapid(private_key: str) -> Vapid02:
    return Vapid02.from_string(private_key)


_tokens: dict[tuple[str, str], tuple[int, dict[str, str]]] = {}
_tokens_lock = threading.Lock()
_local = threading.local()
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    # Made on first use, in the process that uses it (a Celery worker forks after import).
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=PUSH_PARALLEL, thread_name_prefix="push")
        return _executor


def vapid_headers(endpoint: str) -> dict[str, str]:
    """The Authorization header for a push service (its origin is the token's audience)."""
    parts = urlsplit(endpoint)
    audience = f"{parts.scheme}://{parts.netloc}"
    key = (settings.VAPID_PRIVATE_KEY, audience)
    now = int(time.time())
    with _tokens_lock:
        cached = _tokens.get(key)
        if cached is not None and cached[0] - now > VAPID_RENEW_BEFORE_SECONDS:
            return cached[1]
        expires = now + VAPID_TOKEN_SECONDS
        claims = {"aud": audience, "exp": expires, "sub": settings.VAPID_SUBJECT}
        headers: dict[str, str] = _vapid(settings.VAPID_PRIVATE_KEY).sign(claims)
        _tokens[key] = (expires, headers)
        return headers


def _session() -> requests.Session:
    # One keep-alive session per thread: the fifty pushes of a request to one push service
    # share a connection instead of each opening its own.
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


def payload(req: ApprovalRequest, *, kind: str) -> dict[str, Any]:
    """What the service worker (static/js/sw.js) shows: the notification's text, the card it
    opens, and Approve/Deny buttons only where a button press is a complete decision."""
    meta = req.session.metadata or {}
    label = req.session.label
    who = [label, str(meta.get("guest") or "")]
    if meta.get("room") and str(meta["room"]) not in label:
        who.append(f"room {meta['room']}")
    where = " · ".join(part for part in who if part)
    lines = [f"{req.tool_title} on {req.server_title}", where]
    if req.rule_label:
        lines.append(f"Rule {req.rule_label}")
    title = "Escalated to you" if kind == ESCALATED else "Approval needed"
    data: dict[str, Any] = {
        "title": f"{title}: {req.tool_title}",
        "body": "\n".join(line for line in lines if line),
        "url": f"/?request={req.pk}",
        "request_id": req.pk,
        "kind": kind,
        "tag": f"request-{req.pk}",
        "decide_url": reverse("decide", args=[req.pk]),
        "actions": [],
    }
    if quick_actions_allowed(req):
        data["actions"] = [{"action": "approve", "title": "Approve"}, {"action": "deny", "title": "Deny"}]
    return data


@dataclass
class Delivery:
    sent: int = 0
    gone: int = 0
    failed: int = 0


def _push(sub: PushSubscription, data: bytes, ttl: int) -> int | str:
    """One POST to the subscription's push service: its HTTP status, or the transport error."""
    headers = {**vapid_headers(sub.endpoint), "Urgency": "high"}
    try:
        response = WebPusher(sub.subscription_info(), requests_session=_session()).send(
            data, headers, ttl=ttl, timeout=PUSH_TIMEOUT_SECONDS
        )
    except (requests.RequestException, ValueError) as e:
        return type(e).__name__
    return int(response.status_code)


def send_request_push(request_id: int, *, kind: str) -> Delivery:
    """Push a pending request to every browser subscribed by the staff its current step is
    routed to who left push on (a decided one is skipped). Subscriptions the push service says
    are gone (404/410) are deleted; other failures are recorded on the subscription.
    Precondition: VAPID keys configured. Never raises for a push service's answer."""
    req = ApprovalRequest.objects.for_one().filter(pk=request_id).first()
    delivery = Delivery()
    if req is None or req.status != ApprovalRequest.Status.PENDING or not enabled():
        return delivery
    subs = list(PushSubscription.objects.filter(user__in=routed_staff(req, channel="push").values("pk")))
    if not subs:
        return delivery
    data = json.dumps(payload(req, kind=kind), separators=(",", ":")).encode()
    # Held no longer than the step lasts: a notification after the deadline is only noise.
    ttl = max(0, int((req.deadline - timezone.now()).total_seconds()))
    ok: list[int] = []
    gone: list[int] = []
    statuses = _pool().map(lambda sub: _push(sub, data, ttl), subs)
    for sub, status in zip(subs, statuses, strict=True):
        if isinstance(status, int) and 200 <= status < 300:
            ok.append(sub.pk)
        elif status in GONE:
            gone.append(sub.pk)
        else:
            delivery.failed += 1
            logger.warning("Push to subscription %s failed: %s", sub.pk, status)
            PushSubscription.objects.filter(pk=sub.pk).update(
                last_failure_at=timezone.now(), last_failure=str(status)[:200]
            )
    now = timezone.now()
    if ok:
        PushSubscription.objects.filter(pk__in=ok).update(last_success_at=now)
    if gone:
        PushSubscription.objects.filter(pk__in=gone).delete()
    delivery.sent, delivery.gone = len(ok), len(gone)
    return delivery


def new_key_pair() -> tuple[str, str]:
    """A fresh VAPID key pair as the settings take it: (public, private), both base64url
    (the public key is what the browser's PushManager.subscribe calls applicationServerKey)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = b64urlencode(key.private_numbers().private_value.to_bytes(32, "big"))
    public = b64urlencode(
        key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return public, private
