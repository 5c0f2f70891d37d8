"""Fixtures for tests: the demo hotel MCP server as a real process.

    def test_something(hotel_mcp):
        ...  # hotel_mcp.mcp_url, .sse_url, .api_key, .headers, .state(), .reset(), .tool()

One server process per test session (starting it costs about a second); `hotel_mcp` resets the
hotel before each test so no test sees another's refunds or unlocked doors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.plugins.processes import PYTHON, ServerProcess, free_port

HOTEL_API_KEY = "hotel-test-key"


@dataclass
class HotelMcp:
    base_url: str
    api_key: str
    process: ServerProcess

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"

    @property
    def sse_url(self) -> str:
        return f"{self.base_url}/sse"

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    def state(self) -> dict[str, Any]:
        response = httpx.get(f"{self.base_url}/state", headers=self.headers, timeout=10)
        response.raise_for_status()
        return response.json()

    def reset(self) -> dict[str, Any]:
        response = httpx.post(f"{self.base_url}/reset", headers=self.headers, timeout=10)
        response.raise_for_status()
        return response.json()

    def tool(self, server_label: str = "hotel_ops", *, transport: str = "mcp", **overrides: Any) -> dict[str, Any]:
        """The Realtime/Responses `mcp` tool object (REALTIME_PROTOCOL.md section 3.1) for this server,
        with the API key in `headers` (the custom-header case `authorization` cannot serve)."""
        url = self.mcp_url if transport == "mcp" else self.sse_url
        return {
            "type": "mcp",
            "server_label": server_label,
            "server_url": url,
            "headers": dict(self.headers),
            "require_approval": "always",
            **overrides,
        }


@pytest.fixture(scope="session")
def _hotel_mcp_server() -> Iterator[HotelMcp]:
    port = free_port()
    argv = [PYTHON, "-m", "demo.hotel_mcp", "--port", str(port), "--api-key", HOTEL_API_KEY]
    with ServerProcess(argv, port=port, name="hotel_mcp", timeout=30) as process:
        yield HotelMcp(base_url=f"http://127.0.0.1:{port}", api_key=HOTEL_API_KEY, process=process)


@pytest.fixture
def hotel_mcp(_hotel_mcp_server: HotelMcp) -> HotelMcp:
    """The running demo hotel MCP server, freshly reset."""
    _hotel_mcp_server.reset()
    return _hotel_mcp_server
