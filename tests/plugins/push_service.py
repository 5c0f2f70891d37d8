"""A push service for tests, since no browser vendor's can be reached here: it speaks RFC 8030
to the sender and, standing in for the browser too, decrypts each payload with the
subscription's private keys (RFC 8291, aes128gcm, via http_ece).

    def test_something(push_service):
        info = push_service.subscribe()   # what PushManager.subscribe() gives the page
        ...                               # the app pushes to info["endpoint"]
        [message] = push_service.wait_for(1)
        message.payload                   # the decrypted JSON

Each POST is checked as a push service checks it (TTL present, Urgency valid, VAPID token
signed by the key it names, for this origin, not expired, aes128gcm body), recorded with its
arrival time (time.time(), comparable across processes) and answered 201 Created. An endpoint
marked with `expire()` answers 410 Gone, an unknown one 404.
Reference: https://www.rfc-editor.org/rfc/rfc8030#section-5
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

URGENCIES = ("very-low", "low", "normal", "high")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _parsed(plain: bytes) -> Any:
    try:
        return json.loads(plain)
    except ValueError:
        return plain.decode(errors="replace")


@dataclass
class Received:
    token: str
    endpoint: str
    ttl: int
    urgency: str
    vapid_claims: dict[str, Any]
    payload: Any
    at: float


@dataclass
class _Browser:
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes


@dataclass
class PushServiceStandIn:
    base_url: str = ""
    received: list[Received] = field(default_factory=list)
    browsers: dict[str, _Browser] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    condition: threading.Condition = field(default_factory=threading.Condition)

    def subscribe(self) -> dict[str, Any]:
        """A new browser's subscription (PushSubscription.toJSON())."""
        token = b64url(os.urandom(12))
        key = ec.generate_private_key(ec.SECP256R1())
        auth = os.urandom(16)
        self.browsers[token] = _Browser(key, auth)
        public = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"endpoint": f"{self.base_url}/push/{token}", "keys": {"p256dh": b64url(public), "auth": b64url(auth)}}

    def expire(self, endpoint: str) -> None:
        """The browser unsubscribed: the endpoint answers 410 Gone from now on."""
        self.gone.add(endpoint.rsplit("/", 1)[1])

    def to(self, endpoint: str) -> list[Received]:
        token = endpoint.rsplit("/", 1)[1]
        with self.condition:
            return [r for r in self.received if r.token == token]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until at least `count` messages arrived; returns them all."""
        deadline = time.monotonic() + timeout
        with self.condition:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.received)} push messages arrived, expected {count}")
                self.condition.wait(left)
            return list(self.received)

    def clear(self) -> None:
        with self.condition:
            self.received.clear()

    # The receiving side --------------------------------------------------------------------

    def check_vapid(self, authorization: str) -> dict[str, Any]:
        """RFC 8292: `vapid t=<JWT>,k=<public key>`; the JWT must verify with k."""
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid" or not Vapid02.verify(authorization):
            raise ValueError("bad VAPID token")
        parts = dict(item.split("=", 1) for item in params.split(","))
        claims: dict[str, Any] = json.loads(b64url_decode(parts["t"].split(".")[1]))
        if claims.get("aud") != self.base_url or int(claims.get("exp", 0)) < time.time() or not claims.get("sub"):
            raise ValueError(f"bad VAPID claims {claims}")
        return claims

    def accept(self, token: str, headers: Any, body: bytes) -> tuple[int, str]:
        if token in self.gone:
            return 410, "Gone"
        browser = self.browsers.get(token)
        if browser is None:
            return 404, "Not Found"
        try:
            ttl = int(headers.get("TTL", ""))
        except ValueError:
            return 400, "TTL required"
        urgency = headers.get("Urgency", "normal")
        if urgency not in URGENCIES:
            return 400, "bad Urgency"
        try:
            claims = self.check_vapid(headers.get("Authorization", ""))
        except (ValueError, KeyError, IndexError, AssertionError):
            return 401, "Unauthorized"
        if headers.get("Content-Encoding") != "aes128gcm":
            return 415, "aes128gcm only"
        plain = http_ece.decrypt(body, private_key=browser.private_key, auth_secret=browser.auth, version="aes128gcm")
        message = Received(
            token=token,
            endpoint=f"{self.base_url}/push/{token}",
            ttl=ttl,
            urgency=urgency,
            vapid_claims=claims,
            payload=_parsed(plain),
            at=time.time(),
        )
        with self.condition:
            self.received.append(message)
            self.condition.notify_all()
        return 201, "Created"


def _handler(service: PushServiceStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a push service offers

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not self.path.startswith("/push/"):
                status, reason = 404, "Not Found"
            else:
                status, reason = service.accept(self.path.removeprefix("/push/"), self.headers, body)
            self.send_response(status, reason)
            if status == 201:
                self.send_header("Location", f"{service.base_url}/message/{len(service.received)}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class running_push_service:
    """Start the stand-in on a free loopback port in a thread (a context manager)."""

    def __enter__(self) -> PushServiceStandIn:
        self.service = PushServiceStandIn()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.service))
        self.server.daemon_threads = True
        self.service.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self.service

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def push_service() -> Iterator[PushServiceStandIn]:
    with running_push_service() as service:
        yield service
