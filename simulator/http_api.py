"""The simulator's HTTP routes: the Realtime calls API, the Responses API and the simulator's controls.

    POST /v1/realtime/client_secrets          mint an ek_ secret for a session config (section 3.2 item 3)
    POST /v1/realtime/calls                   WebRTC: SDP offer in, fake SDP answer out (section 3.2 item 5)
    POST /v1/realtime/calls/{id}/accept       SIP call control (section 8.3)
    POST /v1/realtime/calls/{id}/reject|refer|hangup
    POST /v1/responses                        Responses API with MCP tools and approvals (section 9)
    /sim/...                                  simulator controls: place a SIP call, make the caller talk or hang up,
                                              make the next Responses calls fail or wait (/sim/responses/faults)

simulator/calls_api.py, simulator/responses_api.py and simulator/sim_control.py hold the handlers;
simulator/http_common.py the error shape and the authentication they share.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from simulator.calls_api import (
    accept_call,
    create_call,
    create_client_secret,
    hangup_call,
    refer_call,
    reject_call,
)
from simulator.http_common import api
from simulator.responses_api import create_response, faults_endpoint, retrieve_response
from simulator.sim_control import (
    sim_approvals,
    sim_caller_hangup,
    sim_get_call,
    sim_list_calls,
    sim_listings,
    sim_place_call,
    sim_response_creates,
    sim_say,
)


def http_routes() -> list[BaseRoute]:
    post = ["POST"]
    return [
        Route("/v1/realtime/client_secrets", api(create_client_secret), methods=post),
        Route("/v1/realtime/calls", api(create_call), methods=post),
        Route("/v1/realtime/calls/{call_id}/accept", api(accept_call), methods=post),
        Route("/v1/realtime/calls/{call_id}/reject", api(reject_call), methods=post),
        Route("/v1/realtime/calls/{call_id}/refer", api(refer_call), methods=post),
        Route("/v1/realtime/calls/{call_id}/hangup", api(hangup_call), methods=post),
        Route("/v1/responses", api(create_response), methods=post),
        Route("/v1/responses/{response_id}", api(retrieve_response), methods=["GET"]),
        Route("/sim/calls", api(sim_place_call), methods=post),
        Route("/sim/calls", api(sim_list_calls), methods=["GET"]),
        Route("/sim/calls/{call_id}", api(sim_get_call), methods=["GET"]),
        Route("/sim/calls/{call_id}/say", api(sim_say), methods=post),
        Route("/sim/calls/{call_id}/hangup", api(sim_caller_hangup), methods=post),
        Route("/sim/approvals", api(sim_approvals), methods=["GET"]),
        Route("/sim/response_creates", api(sim_response_creates), methods=["GET"]),
        Route("/sim/listings", api(sim_listings), methods=["GET"]),
        Route("/sim/responses/faults", api(faults_endpoint), methods=["GET", "POST"]),
    ]
