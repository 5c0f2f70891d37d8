from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from approvals import services
from approvals.models import ClientToken


@pytest.fixture
def api_token(db) -> tuple[ClientToken, str]:
    """A gateway's token: asks, reads and subscribes."""
    return services.issue_token(
        label="Envoy gateway",
        metadata={"site": "Berlin"},
        scopes=["requests:write", "requests:read", "webhooks"],
    )


def bearer(token: str) -> dict[str, Any]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


class Receiver:
    """A webhook receiver: records every POST (headers and body); answers with the next status of
    `statuses` (then 200)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        self.got = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.got:
                    receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    code = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.got.notify_all()
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/countersign"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, n: int, timeout: float = 30) -> list[tuple[dict[str, str], bytes]]:
        with self.got:
            assert self.got.wait_for(lambda: len(self.received) >= n, timeout), f"{len(self.received)} of {n} webhooks"
            return list(self.received)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
