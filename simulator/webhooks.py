"""Signed webhooks, as OpenAI sends them for incoming SIP calls (REALTIME_PROTOCOL.md section 8.2).

Standard Webhooks: the secret is `whsec_<base64 key>`; the signature is base64(HMAC-SHA256(key,
"{webhook-id}.{webhook-timestamp}.{raw body}")) in the header `webhook-signature: v1,<sig>`. This is
exactly what `openai`'s `client.webhooks.unwrap()` verifies (openai/lib/_webhooks.py), so a console
that accepts the simulator's webhooks accepts OpenAI's.

Reference: https://platform.openai.com/docs/guides/webhooks, https://www.standardwebhooks.com/
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from simulator.state import Call

logger = logging.getLogger(__name__)

USER_AGENT = "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)"
DELIVERY_TIMEOUT = 10.0


def new_secret() -> str:
    """A fresh `whsec_` secret, in the format the OpenAI dashboard hands out."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    # Same rule as the SDK: a whsec_ secret is base64 of the key; anything else is used as raw bytes.
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def sign(body: bytes, *, secret: str, webhook_id: str, timestamp: int) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    body: bytes, *, secret: str, webhook_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    webhook_id = webhook_id or f"wh_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "user-agent": USER_AGENT,
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(body, secret=secret, webhook_id=webhook_id, timestamp=timestamp),
    }


def call_incoming_event(call: Call, *, sip_media_security: str | None = "srtp") -> dict[str, Any]:
    """The `realtime.call.incoming` event for a call (section 8.2)."""
    data: dict[str, Any] = {"call_id": call.call_id, "sip_headers": call.sip_headers}
    if sip_media_security is not None:
        data["sip_media_security"] = sip_media_security
    return {
        "object": "event",
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "realtime.call.incoming",
        "created_at": int(call.created_at or time.time()),
        "data": data,
    }


@dataclass
class Delivery:
    """What happened when one webhook was posted: the receiver's status, or why it was not reached."""

    webhook_id: str
    url: str
    status_code: int | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def to_dict(self) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            "url": self.url,
            "status_code": self.status_code,
            "delivered": self.delivered,
            "error": self.error,
        }


async def deliver(url: str, event: dict[str, Any], *, secret: str, times: int = 1) -> list[Delivery]:
    """POST the signed event to `url`, `times` times with the same `webhook-id` (OpenAI and Twilio may
    deliver one event more than once, section 8.3; receivers must deduplicate). One attempt each: the
    simulator does not retry on failure, it reports it."""
    body = json.dumps(event, separators=(",", ":")).encode()
    webhook_id = f"wh_{uuid.uuid4().hex}"
    deliveries = []
    async with httpx.AsyncClient(timeout=DELIVERY_TIMEOUT) as client:
        for _ in range(times):
            # Signed at send time, as a retry would be: the timestamp must be fresh (tolerance 300 s).
            headers = signed_headers(body, secret=secret, webhook_id=webhook_id)
            delivery = Delivery(webhook_id=webhook_id, url=url)
            try:
                response = await client.post(url, content=body, headers=headers)
                delivery.status_code = response.status_code
            except httpx.HTTPError as exc:
                delivery.error = f"{type(exc).__name__}: {exc}"
                logger.warning("webhook %s to %s failed: %s", webhook_id, url, delivery.error)
            deliveries.append(delivery)
    return deliveries
