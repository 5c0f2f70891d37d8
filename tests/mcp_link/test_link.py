"""mcp_link on its own; against real servers it runs under tests/approvals/test_probe.py and
tests/simulator/test_mcp_client.py, through its two users."""

from __future__ import annotations

import pytest

import mcp_link


def test_it_sends_the_headers_and_the_bearer_token_as_openai_does():
    sent = mcp_link.request_headers(authorization="tok", headers={"X-API-Key": "k", "X-Floor": 12})
    assert sent == {"X-API-Key": "k", "X-Floor": "12", "Authorization": "Bearer tok"}
    assert mcp_link.request_headers(authorization=None, headers=None) == {}


@pytest.mark.parametrize(
    ("url", "configured", "expected"),
    [
        ("https://h.example/mcp", "auto", "auto"),
        ("https://h.example/sse", "auto", "auto"),
        ("https://h.example/sse", "streamable_http", "streamable_http"),
        ("https://h.example/mcp", "sse", "sse"),
    ],
)
def test_the_path_decides_nothing_only_a_configured_transport_does(url, configured, expected):
    assert mcp_link.detect_transport(url, configured) == expected


def test_a_failure_keeps_the_innermost_exception_its_causes_and_the_first_status():
    try:
        try:
            raise ConnectionRefusedError("refused")
        except ConnectionRefusedError as exc:
            raise RuntimeError("transport gave up") from exc
    except RuntimeError as exc:
        cause = exc
    group = BaseExceptionGroup("task group", [ExceptionGroup("inner", [cause])])
    failure = mcp_link.LinkError(group, [mcp_link.HttpStatus(403, "Forbidden"), mcp_link.HttpStatus(500, "Oops")])

    assert failure.exc is group and failure.innermost is cause
    assert [type(e) for e in failure.chain()] == [RuntimeError, ConnectionRefusedError]
    assert failure.status is not None and str(failure.status) == "HTTP 403 Forbidden"
    assert failure.credentials_rejected


async def test_an_unreachable_server_is_a_link_error():
    with pytest.raises(mcp_link.LinkError) as raised:
        await mcp_link.list_tools(
            "http://127.0.0.1:9/mcp", transport=mcp_link.STREAMABLE_HTTP, headers={}, time_limit=5
        )
    assert any(isinstance(e, ConnectionError) or "connect" in type(e).__name__.lower() for e in raised.value.chain())
    assert raised.value.status is None and not raised.value.credentials_rejected
