"""The staff dashboard's socket checks the Origin's scheme, host and port, as Django's CSRF
check does (issue 16.7): only this server's own origin, or one of CSRF_TRUSTED_ORIGINS."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator

from approvals.routing import origin_allowed
from config.asgi import application
from tests.approvals.test_consumers import session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


def scope(host: str, *, scheme: str = "ws", forwarded_proto: str | None = None) -> dict:
    headers = [(b"host", host.encode())]
    if forwarded_proto:
        headers.append((b"x-forwarded-proto", forwarded_proto.encode()))
    return {"type": "websocket", "scheme": scheme, "headers": headers}


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://localhost:8000", "localhost:8000", True),
        ("https://localhost:8000", "localhost:8000", False),  # wrong scheme
        ("http://localhost:9999", "localhost:8000", False),  # wrong port
        ("http://localhost", "localhost:8000", False),  # no port is port 80
        ("http://evil.example:8000", "localhost:8000", False),
        ("http://evil.example", "evil.example", False),  # a Host we do not serve
        (None, "localhost:8000", False),
        ("null", "localhost:8000", False),
    ],
)
def test_only_this_servers_own_origin_passes(origin, host, allowed) -> None:
    assert origin_allowed(origin, scope(host)) is allowed


def test_the_scheme_is_the_one_the_request_came_in_on(settings) -> None:
    assert origin_allowed("https://localhost", scope("localhost", scheme="wss"))
    assert not origin_allowed("http://localhost", scope("localhost", scheme="wss"))
    # Behind a TLS proxy (SECURE_SSL), X-Forwarded-Proto says how the browser came in.
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert origin_allowed("https://localhost", scope("localhost", forwarded_proto="https"))
    assert not origin_allowed("http://localhost", scope("localhost", forwarded_proto="https"))


def test_csrf_trusted_origins_pass_with_their_scheme_and_port(settings) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://console.hotel.example", "https://*.desk.example"]
    assert origin_allowed("https://console.hotel.example", scope("localhost"))
    assert not origin_allowed("http://console.hotel.example", scope("localhost"))
    assert not origin_allowed("https://console.hotel.example:8443", scope("localhost"))
    assert origin_allowed("https://front.desk.example", scope("localhost"))
    assert not origin_allowed("http://front.desk.example", scope("localhost"))


@pytest.mark.parametrize(
    ("origin", "connected"),
    [(b"http://localhost:8000", True), (b"https://localhost:8000", False), (b"http://localhost:8001", False)],
    ids=["same-origin", "wrong-scheme", "wrong-port"],
)
async def test_a_dashboard_socket_with_a_wrong_scheme_or_port_is_refused(alice, origin, connected) -> None:
    cookie = await session_cookie(alice)
    headers = [(b"host", b"localhost:8000"), (b"origin", origin), (b"cookie", f"sessionid={cookie}".encode())]
    comm = WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)

    accepted, _ = await comm.connect(timeout=10)

    assert accepted is connected
    await comm.disconnect()
