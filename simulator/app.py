"""The simulator's ASGI app: the Realtime WebSocket plus the HTTP API of simulator/http_api.py."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute, WebSocketRoute

from simulator import egress, http_api
from simulator.config import SimulatorConfig
from simulator.endpoint import realtime_endpoint
from simulator.state import SimulatorState


def create_app(config: SimulatorConfig) -> Starlette:
    """`app.state.sim` is the process's SimulatorState; handlers read it from there."""
    egress.configure(config.mcp_egress, config.mcp_egress_allow, config.mcp_egress_deny)
    routes: list[BaseRoute] = [WebSocketRoute("/v1/realtime", realtime_endpoint), *http_api.http_routes()]
    app = Starlette(routes=routes)
    app.state.sim = SimulatorState(config)
    return app
