"""The simulator's egress rules (simulator/egress.py): like OpenAI's hosted MCP client, it can be
told to reach public hosts only, or never some hosts; by default it reaches everything."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulator import egress
from simulator.config import SimulatorConfig


def test_open_by_default():
    egress.check("http://127.0.0.1:8766/mcp", egress.Egress())
    assert SimulatorConfig().mcp_egress == "open"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.2:9000/mcp", "http://10.1.2.3/mcp", "http://192.168.1.5/sse", "http://[::1]:80/mcp"]
)
def test_public_mode_refuses_private_and_loopback_hosts(url):
    rules = egress.configure("public", allow="127.0.0.1")
    with pytest.raises(egress.EgressRefused, match="private address"):
        egress.check(url, rules)


def test_public_mode_reaches_public_and_allowed_hosts():
    rules = egress.configure("public", allow="127.0.0.1, 10.9.0.0/16")
    egress.check("http://127.0.0.1:8002/mcp-gateway/hotel/mcp", rules)
    egress.check("http://10.9.4.4/mcp", rules)
    egress.check("https://8.8.8.8/mcp", rules)


def test_denied_hosts_are_refused_in_any_mode():
    rules = egress.configure("open", deny="127.0.0.2,hotel.internal")
    with pytest.raises(egress.EgressRefused, match=r"configured not to reach 127\.0\.0\.2"):
        egress.check("http://127.0.0.2:9000/mcp", rules)
    with pytest.raises(egress.EgressRefused, match=r"hotel\.internal"):
        egress.check("http://hotel.internal/mcp", rules)
    egress.check("http://127.0.0.1:9000/mcp", rules)


def test_an_unknown_mode_is_refused_with_its_choices():
    with pytest.raises(ValueError, match="open, public"):
        egress.configure("closed")
    with pytest.raises(ValueError, match="mcp_egress must be one of"):
        SimulatorConfig(mcp_egress="closed")


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    egress.configure("open")
