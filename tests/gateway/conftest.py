"""Fixtures for the MCP gateway: the hotel registered in gateway mode, sessions with their
capability tokens, and approved requests made through the real services."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from approvals import events, services, tasks
from approvals.models import ApprovalRequest, McpServer, RealtimeSession

UNLOCK_ARGS = {"room": "1204"}


@pytest.fixture(autouse=True)
def _quiet_effects(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Unit tests: no broker, no channel layer. (End-to-end tests, marked e2e, keep the real ones.)"""
    if request.node.get_closest_marker("e2e") is not None:
        return
    monkeypatch.setattr(tasks.expire_request, "apply_async", lambda *a, **k: None)
    monkeypatch.setattr(events, "request_changed", lambda pk: True)
    monkeypatch.setattr(events, "send_request", lambda req: True)
    monkeypatch.setattr(events, "relay_decision", lambda **kwargs: True)


@pytest.fixture
def gw_server(db: None) -> McpServer:
    server, _ = services.register_mcp_server(
        label="hotel", url="http://127.0.0.1:9/mcp", headers={"X-API-Key": "hotel-secret"}, gateway_mode=True
    )
    return server


def open_session(label: str = "Room 1204") -> RealtimeSession:
    return services.open_session(kind="relay", label=label, metadata={"room": "1204"})


@pytest.fixture
def approved(alice: Any) -> Callable[..., ApprovalRequest]:
    """approved(session, tool, arguments): a request of `session` that Alice approved."""
    counter = iter(range(1, 10_000))

    def make(session: RealtimeSession, tool: str = "unlock_door", arguments: dict[str, Any] | None = None) -> Any:
        import json

        args = json.dumps(arguments if arguments is not None else UNLOCK_ARGS)
        req, _ = services.open_request(
            session=session,
            upstream_id=f"mcpr_{next(counter)}_{session.pk}",
            server_label="hotel",
            tool_name=tool,
            arguments=args,
            raw_item={"type": "mcp_approval_request", "name": tool, "server_label": "hotel", "arguments": args},
        )
        return services.decide(req, approve=True, by=alice, confirmed=True)

    return make


# End to end -------------------------------------------------------------------------------------


def start_gateway(stack: Any, **env: str) -> Any:
    """`run_gateway` as the Procfile's `gateway` process; `proc.url` is its base URL."""
    from tests.plugins.processes import PYTHON, free_port

    port = free_port()
    argv = [PYTHON, "manage.py", "run_gateway", "--host", "127.0.0.1", "--port", str(port)]
    proc = stack.run(argv, name="gateway", port=port, **env)
    proc.url = f"http://127.0.0.1:{port}"
    return proc


def mcp_url(gateway_proc: Any, label: str = "hotel") -> str:
    return f"{gateway_proc.url}/mcp-gateway/{label}/mcp"
