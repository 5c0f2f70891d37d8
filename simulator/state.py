"""Shared in-memory state of one simulator process: calls and client secrets.

The realtime module (WebSocket sessions) and the HTTP module (calls, client secrets,
webhooks, Responses) meet here; neither imports the other's internals.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from starlette.websockets import WebSocket

from simulator.config import SimulatorConfig

CallStatus = Literal["incoming", "accepted", "rejected", "referred", "ended"]


class CallSession(Protocol):
    """What the HTTP side and the sidebands use of a call's Realtime session (simulator/realtime.py)."""

    ended: bool

    @property
    def socket_count(self) -> int: ...

    async def attach(self, websocket: WebSocket) -> None: ...

    async def inject_user_text(self, text: str) -> None: ...

    async def end(self, code: int = 1000, reason: str = "call ended") -> None: ...


@dataclass
class Call:
    """A SIP or WebRTC call. `session` exists once the call is accepted (SIP) or created (WebRTC);
    sidebands attach to it with `GET /v1/realtime?call_id=`."""

    call_id: str
    kind: Literal["sip", "webrtc"]
    status: CallStatus = "incoming"
    sip_headers: list[dict[str, str]] = field(default_factory=list)
    session_config: dict[str, Any] | None = None
    session: CallSession | None = None
    refer_target: str | None = None
    reject_status: int | None = None
    created_at: float = 0.0


@dataclass
class ClientSecret:
    value: str
    expires_at: int
    session_config: dict[str, Any]


@dataclass
class ResponsesFaults:
    """What the next `POST /v1/responses` calls meet (knobs `--responses-fail-*`,
    `--responses-latency`, or `POST /sim/responses/faults` at run time), and how many came."""

    fail_count: int = 0
    fail_status: int = 500
    latency: float = 0.0
    received: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "fail_count": self.fail_count,
            "fail_status": self.fail_status,
            "latency": self.latency,
            "received": self.received,
        }


@dataclass
class SimulatorState:
    config: SimulatorConfig
    calls: dict[str, Call] = field(default_factory=dict)
    client_secrets: dict[str, ClientSecret] = field(default_factory=dict)
    # Stored Responses API responses, by id, for previous_response_id resumption.
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Every mcp_approval_response received over a Realtime socket, oldest first (bounded).
    approvals_received: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10000))
    # Every response.create received over a Realtime socket, with its instructions (bounded).
    response_creates: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10000))
    responses_faults: ResponsesFaults = field(default_factory=ResponsesFaults)
    # Every MCP listing a Realtime session ran: what it imported, what it left out and why (bounded).
    listings: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10000))

    def __post_init__(self) -> None:
        self.responses_faults = ResponsesFaults(
            fail_count=self.config.responses_fail_count,
            fail_status=self.config.responses_fail_status,
            latency=self.config.responses_latency,
        )
