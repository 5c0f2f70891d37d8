"""A stand-in for Slack's Web API (chat.postMessage, chat.update, chat.postEphemeral,
users.info) that records every call, and Slack's request signing for interaction payloads.

    def test_something(slack_api, settings):
        settings.SLACK_API_URL = slack_api.url
        slack_api.users["U1"] = "alice@example.org"   # what users.info answers
        ...
        slack_api.calls_to("chat.update")[-1]["blocks"]

Reference: https://api.slack.com/web (ok/error envelope), https://api.slack.com/methods/users.info
Reference: https://api.slack.com/authentication/verifying-requests-from-slack
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

TOKEN = "xoxb-test-token"
SIGNING_SECRET = "test-signing-secret"


def sign(body: bytes, *, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends with a request: X-Slack-Request-Timestamp and the v0 signature."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


def interaction_body(payload: dict[str, Any]) -> bytes:
    """An interaction as Slack posts it: form-encoded, the JSON in `payload`."""
    return urlencode({"payload": json.dumps(payload)}).encode()


def block_actions(*, user: str, request_id: int, action: str, channel: str = "C-FRONT") -> dict[str, Any]:
    """A block_actions payload for a press on a request's Approve or Deny button."""
    return {
        "type": "block_actions",
        "team": {"id": "T1", "domain": "hotel"},
        "user": {"id": user, "username": user.lower(), "team_id": "T1"},
        "channel": {"id": channel, "name": "front-desk"},
        "container": {"type": "message", "channel_id": channel, "message_ts": "1.000100"},
        "response_url": "https://hooks.slack.invalid/actions/T1/1/x",
        "actions": [{"type": "button", "action_id": action, "block_id": f"request-{request_id}",
                     "value": str(request_id), "action_ts": str(time.time())}],
    }  # fmt: skip


@dataclass
class SlackStandIn:
    url: str = ""
    token: str = TOKEN
    users: dict[str, str] = field(default_factory=dict)  # Slack user id -> email
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ts: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for name, body in self.calls if name == method]

    def answer(self, method: str, body: dict[str, Any], authorization: str) -> dict[str, Any]:
        with self.lock:
            self.calls.append((method, body))
        if authorization != f"Bearer {self.token}":
            return {"ok": False, "error": "not_authed"}
        if method == "chat.postMessage":
            if not body.get("channel"):
                return {"ok": False, "error": "channel_not_found"}
            return {"ok": True, "channel": body["channel"], "ts": f"{1700000000 + next(self._ts)}.000100"}
        if method == "chat.update":
            return {"ok": True, "channel": body.get("channel"), "ts": body.get("ts")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"{1700000000 + next(self._ts)}.000200"}
        if method == "users.info":
            email = self.users.get(str(body.get("user")))
            if email is None:
                return {"ok": False, "error": "user_not_found"}
            return {"ok": True, "user": {"id": body["user"], "profile": {"email": email}}}
        return {"ok": False, "error": "unknown_method"}


def _handler(stand_in: SlackStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Type", "").startswith("application/json"):
                body = json.loads(raw or b"{}")
            else:
                body = dict(parse_qsl(raw.decode()))
            answer = json.dumps(
                stand_in.answer(self.path.removeprefix("/api/"), body, self.headers.get("Authorization", ""))
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def slack_api() -> Iterator[SlackStandIn]:
    stand_in = SlackStandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stand_in))
    server.daemon_threads = True
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}/api"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield stand_in
    server.shutdown()
    server.server_close()
