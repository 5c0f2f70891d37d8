"""Responses API runs that meet transient errors, dead workers and lost answers: retried with
backoff, taken over once their lease expires, and never sending an approval answer twice.
Steps run directly (runs.advance, as the Celery task does) against the simulator's
/v1/responses, whose faults are armed per test (POST /sim/responses/faults), and the demo hotel
MCP server (real processes)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from unittest import mock

import httpx
import openai
import pytest
from django.utils import timezone

from approvals import services
from approvals.models import ApprovalRequest
from audit.models import AuditEvent
from realtime_bridge import runs, tasks
from realtime_bridge.models import ResponsesRun

UNLOCK = 'call hotel unlock_door {"room": "1204", "reason": "Guest locked out"}'


class Faults:
    """The simulator's Responses API faults (docs/simulator_http.md)."""

    def __init__(self, simulator: Any) -> None:
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{simulator.port}",
            headers={"Authorization": f"Bearer {simulator.api_key}"},
            timeout=10,
        )

    def arm(self, **faults: Any) -> dict[str, Any]:
        response = self.http.post("/sim/responses/faults", json=faults)
        assert response.status_code == 200, response.text
        return response.json()

    def received(self) -> int:
        return self.http.get("/sim/responses/faults").json()["received"]


@pytest.fixture
def faults(simulator):
    f = Faults(simulator)
    yield f
    f.arm(fail_count=0, fail_status=500, latency=0)  # the simulator process is shared


@pytest.fixture
def hotel(simulator, hotel_mcp, settings, db):
    settings.OPENAI_BASE_URL = simulator.base_url
    settings.OPENAI_API_KEY = simulator.api_key
    services.register_mcp_server(label="hotel", url=hotel_mcp.mcp_url, headers=dict(hotel_mcp.headers))
    return hotel_mcp


@pytest.fixture
def token(db):
    return services.issue_token(label="Concierge chat", metadata={"channel": "web chat"})[0]


@pytest.fixture
def impatient_client(simulator, monkeypatch):
    """The runs' OpenAI client, with a timeout short enough to miss a slow answer."""
    client = openai.OpenAI(api_key=simulator.api_key, base_url=simulator.base_url, max_retries=0, timeout=0.3)
    monkeypatch.setattr(runs, "openai_client", lambda: client)


def later(seconds: float) -> Any:
    return timezone.now() + timedelta(seconds=seconds)


def after_the_lease() -> Any:
    return later(runs.lease_seconds() + 1)


def waiting_run(token: Any) -> ResponsesRun:
    run = runs.advance(runs.start_run(input=UNLOCK, token=token).pk)
    assert run is not None and run.state == "waiting"
    return run


def kinds(run: ResponsesRun | None, kind: str) -> int:
    return AuditEvent.objects.filter(session_id=run.session_id, kind=kind).count()


# --- Transient errors -------------------------------------------------------------------------


def test_a_first_call_that_meets_a_503_is_retried_with_backoff_and_the_run_completes(
    hotel, token, faults, alice, django_capture_on_commit_callbacks
):
    faults.arm(fail_count=1, fail_status=503)
    run: ResponsesRun | None = runs.start_run(input=UNLOCK, token=token)

    with mock.patch.object(tasks.advance_run, "apply_async") as retry, django_capture_on_commit_callbacks(execute=True):
        run = runs.advance(run.pk)

    assert run.state == "running" and "OpenAI answered 503" in run.error and "retry 1 of 6" in run.error
    assert run.lease_token == "" and run.step_sent_at is None  # released, and known not to have arrived
    ((args, kwargs),) = retry.call_args_list
    assert args == ((run.pk,),) and 0.9 <= kwargs["countdown"] <= 1.2
    assert runs.advance(run.pk) is None  # not before the retry is due
    assert run.pk in runs.runs_to_advance(now=later(2))

    run = runs.advance(run.pk, now=later(2))

    assert run.state == "waiting" and run.error == "" and run.attempts == 0 and run.steps == 1
    (req,) = ApprovalRequest.objects.filter(session=run.session)
    services.decide(req, approve=True, by=alice)
    run = runs.advance(run.pk)
    assert run.state == "completed" and run.output_text.startswith("All done.")
    assert hotel.state()["rooms"]["1204"]["door_locked"] is False


def test_a_rate_limited_resumption_is_sent_again_and_its_decision_marked_sent_once(hotel, token, faults, alice):
    run: ResponsesRun | None = waiting_run(token)
    req = ApprovalRequest.objects.get(session=run.session)
    services.decide(req, approve=True, by=alice)
    faults.arm(fail_count=1, fail_status=429)

    run = runs.advance(run.pk)

    assert run.state == "running" and "429" in run.error
    req.refresh_from_db()
    assert req.decision_sent_at is None and kinds(run, "sent") == 0  # OpenAI did not take it
    assert hotel.state()["rooms"]["1204"]["door_locked"] is True

    run = runs.advance(run.pk, now=later(5))

    assert run.state == "completed" and hotel.state()["rooms"]["1204"]["door_locked"] is False
    req.refresh_from_db()
    assert req.decision_sent_at is not None and req.call_recorded_at is not None
    assert kinds(run, "sent") == 1


def test_a_run_gives_up_after_too_many_transient_errors(hotel, token, faults):
    faults.arm(fail_count=runs.MAX_ATTEMPTS + 1, fail_status=500)
    run: ResponsesRun | None = runs.start_run(input="Hello", token=token)

    for attempt in range(runs.MAX_ATTEMPTS + 1):
        run = runs.advance(run.pk, now=later(attempt * 100))

    assert run.state == "failed" and run.error.startswith(f"Gave up after {runs.MAX_ATTEMPTS} attempts")
    assert "500" in run.error and run.session.status == "closed"
    assert runs.advance(run.pk, now=later(10_000)) is None


def test_a_first_call_whose_answer_never_came_is_sent_again_without_a_second_approval_request(
    hotel, token, faults, impatient_client
):
    faults.arm(latency=1)
    before = faults.received()
    run = runs.advance(runs.start_run(input=UNLOCK, token=token).pk)

    # The answer may be on its way (the simulator does answer, a second later, into the void).
    assert run.state == "running" and "APITimeoutError" in run.error and run.step_sent_at is not None
    faults.arm(latency=0)
    run = runs.advance(run.pk, now=later(2))

    assert run.state == "waiting" and faults.received() == before + 2
    assert ApprovalRequest.objects.filter(session=run.session).count() == 1
    assert kinds(run, "requested") == 1


# --- Dead workers -----------------------------------------------------------------------------


def die_mid_call(run: ResponsesRun | None, *, step_input: Any, response: dict[str, Any] | None = None) -> str:
    """What a worker leaves behind when it is killed during (or right after) its call."""
    token = runs._claim(run.pk, now=timezone.now())
    assert token is not None
    ResponsesRun.objects.filter(pk=run.pk).update(
        step_input=step_input, step_sent_at=timezone.now(), step_response=response
    )
    return token


def test_a_run_whose_worker_died_during_the_first_call_is_taken_over_once_its_lease_expires(hotel, token, faults):
    run: ResponsesRun | None = runs.start_run(input=UNLOCK, token=token)
    die_mid_call(run, step_input=UNLOCK)

    assert runs.advance(run.pk) is None  # the lease still holds it
    assert run.pk not in runs.runs_to_advance(now=timezone.now())
    assert run.pk in runs.runs_to_advance(now=after_the_lease())
    run = runs.advance(run.pk, now=after_the_lease())

    assert run.state == "waiting" and run.attempts == 0 and run.lease_token == ""
    assert ApprovalRequest.objects.filter(session=run.session).count() == 1
    assert runs.advance(run.pk, now=after_the_lease()) is None


def test_a_response_that_came_back_before_the_worker_died_is_recorded_not_asked_for_again(hotel, token, faults):
    run: ResponsesRun | None = runs.start_run(input=UNLOCK, token=token)
    response = runs.openai_client().responses.create(model=run.model, input=UNLOCK, tools=runs.calls.tools_for())  # type: ignore[arg-type]  # plain mcp dicts
    kept = {"id": response.id, "output": [i.model_dump(mode="json") for i in response.output], "output_text": ""}
    die_mid_call(run, step_input=UNLOCK, response=kept)
    before = faults.received()

    run = runs.advance(run.pk, now=after_the_lease())

    assert run.state == "waiting" and run.previous_response_id == response.id
    assert faults.received() == before
    (req,) = ApprovalRequest.objects.filter(session=run.session)
    assert req.upstream_id == response.output[-1].id


def test_a_resumption_whose_worker_died_mid_call_fails_rather_than_answer_twice(hotel, token, faults, alice):
    run: ResponsesRun | None = waiting_run(token)
    req = ApprovalRequest.objects.get(session=run.session)
    services.decide(req, approve=True, by=alice)
    die_mid_call(run, step_input=runs._approval_responses(run.session_id))
    before = faults.received()

    run = runs.advance(run.pk, now=after_the_lease())

    assert run.state == "failed" and "not sent twice" in run.error
    assert faults.received() == before and run.session.status == "closed"
    req.refresh_from_db()
    assert req.decision_sent_at is None and kinds(run, "sent") == 0


def test_a_resumption_whose_answer_timed_out_is_not_sent_again_though_the_tool_may_have_run(
    hotel, token, faults, alice, impatient_client
):
    run: ResponsesRun | None = waiting_run(token)
    services.decide(ApprovalRequest.objects.get(session=run.session), approve=True, by=alice)
    faults.arm(latency=1)
    before = faults.received()

    run = runs.advance(run.pk)

    assert run.state == "failed" and "APITimeoutError" in run.error and "not sent twice" in run.error
    # It did reach "OpenAI", which ran the tool after all: sending it again would run it twice.
    deadline = time.monotonic() + 10
    while hotel.state()["rooms"]["1204"]["door_locked"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hotel.state()["rooms"]["1204"]["door_locked"] is False
    assert faults.received() == before + 1


def test_a_lease_is_renewed_only_by_its_holder(hotel, token):
    run = runs.start_run(input=UNLOCK, token=token)
    first = die_mid_call(run, step_input=UNLOCK)

    assert runs.renew_lease(run.pk, first) and not runs.renew_lease(run.pk, "someone-else")
    runs.advance(run.pk, now=after_the_lease())  # taken over

    assert not runs.renew_lease(run.pk, first)


# --- Triggers ---------------------------------------------------------------------------------


def test_deciding_a_request_of_a_waiting_run_queues_its_next_step_after_commit(
    hotel, token, alice, django_capture_on_commit_callbacks
):
    run = waiting_run(token)
    req = ApprovalRequest.objects.get(session=run.session)

    with mock.patch.object(tasks.advance_run, "delay") as delay, django_capture_on_commit_callbacks(execute=True):
        services.decide(req, approve=False, by=alice, reason="Not the guest")

    delay.assert_called_once_with(run.pk)


def test_an_expired_request_of_a_waiting_run_queues_its_next_step_after_commit(
    hotel, token, django_capture_on_commit_callbacks
):
    run = waiting_run(token)
    req = ApprovalRequest.objects.get(session=run.session)

    with mock.patch.object(tasks.advance_run, "delay") as delay, django_capture_on_commit_callbacks(execute=True):
        services.expire_request(req.pk, now=req.deadline + timedelta(seconds=1))

    delay.assert_called_once_with(run.pk)


def test_the_sweep_queues_runs_whose_worker_died(hotel, token):
    run = runs.start_run(input=UNLOCK, token=token)
    ResponsesRun.objects.filter(pk=run.pk).update(state="running", lease_expires_at=None)  # from before leases

    with mock.patch.object(tasks.advance_run, "delay") as delay:
        tasks.sweep_runs()

    delay.assert_called_once_with(run.pk)
