"""Faults of `POST /v1/responses` for retry tests: the `--responses-*` knobs and
`/sim/responses/faults` (docs/simulator_http.md). The official SDK must read each fault as the
error class it raises for OpenAI's own."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from simulator.config import SimulatorConfig, parse_args
from tests.simulator.test_http_api import API_KEY, Sim, running_simulator

MODEL = "gpt-4.1"


def faults(sim: Sim) -> dict[str, Any]:
    return httpx.get(f"{sim.url}/sim/responses/faults", headers={"Authorization": f"Bearer {API_KEY}"}).json()


def test_the_knobs_make_the_first_calls_fail_with_openais_error_then_the_api_answers():
    with running_simulator(responses_fail_count=2, responses_fail_status=429) as sim:
        for _ in range(2):
            with pytest.raises(openai.RateLimitError) as raised:
                sim.client.responses.create(model=MODEL, input="Hello")
            assert raised.value.code == "rate_limit_exceeded"
        assert sim.client.responses.create(model=MODEL, input="Hello").status == "completed"
        assert faults(sim) == {
            "fail_count": 0,
            "fail_status": 429,
            "latency": 0.0,
            "received": 3,
        }


def test_faults_are_armed_at_run_time_and_a_failed_call_stores_nothing():
    with running_simulator() as sim:
        armed = sim.post("/sim/responses/faults", {"fail_count": 1, "fail_status": 503})
        assert armed.json()["fail_count"] == 1

        with pytest.raises(openai.InternalServerError) as raised:
            sim.client.responses.create(model=MODEL, input="Hello")

        assert raised.value.status_code == 503 and raised.value.type == "server_error"
        assert sim.state.responses == {}
        assert sim.client.responses.create(model=MODEL, input="Hello").status == "completed"


def test_bad_fault_settings_are_refused():
    with running_simulator() as sim:
        for body in ({"fail_count": -1}, {"fail_status": 418}, {"latency": "slow"}, {"fail_count": True}):
            response = sim.post("/sim/responses/faults", body)
            assert response.status_code == 400, body
        assert faults(sim)["fail_count"] == 0
    with pytest.raises(ValueError):
        SimulatorConfig(responses_fail_status=418)
    assert parse_args(["--responses-fail-count", "3", "--responses-latency", "0.5"]).responses_fail_count == 3
