"""Responses API runs, step by step (runs.advance called directly, as the Celery task does),
against the simulator's /v1/responses and the demo hotel MCP server (real processes)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from approvals import services
from approvals.models import ApprovalRequest
from audit.models import AuditEvent
from realtime_bridge import runs
from realtime_bridge.models import ResponsesRun

UNLOCK = 'call hotel unlock_door {"room": "1204", "reason": "Guest locked out"}'


@pytest.fixture
def hotel(simulator, hotel_mcp, settings, db):
    settings.OPENAI_BASE_URL = simulator.base_url
    settings.OPENAI_API_KEY = simulator.api_key
    services.register_mcp_server(label="hotel", url=hotel_mcp.mcp_url, headers=dict(hotel_mcp.headers))
    return hotel_mcp


@pytest.fixture
def token(db):
    return services.issue_token(label="Concierge chat", metadata={"channel": "web chat"})[0]


def test_a_run_pauses_on_an_approval_request_and_resumes_once_approved(hotel, token, alice):
    run: ResponsesRun | None = runs.start_run(input=UNLOCK, token=token)
    assert run.state == "queued" and run.session.kind == "responses"

    run = runs.advance(run.pk)

    assert run.state == "waiting"
    req = ApprovalRequest.objects.get(session=run.session)
    assert (req.tool_name, req.status, req.session.label) == ("unlock_door", "pending", "Concierge chat")
    assert runs.advance(run.pk) is None  # nothing to do while it is pending
    assert runs.runs_to_advance(now=timezone.now()) == []

    services.decide(req, approve=True, by=alice, reason="ID checked")
    assert runs.runs_to_advance(now=timezone.now()) == [run.pk]
    run = runs.advance(run.pk)

    assert run.state == "completed" and run.output_text.startswith("All done.")
    assert hotel.state()["rooms"]["1204"]["door_locked"] is False
    req.refresh_from_db()
    assert req.decision_sent_at is not None and req.call_recorded_at is not None
    assert AuditEvent.objects.filter(request=req, kind="sent").count() == 1
    assert runs.advance(run.pk) is None  # a late or repeated task does nothing
    assert [line.role for line in run.session.lines.all()] == ["user", "assistant"]


def test_a_run_whose_request_expires_resumes_with_a_denial(hotel, token):
    run = runs.advance(runs.start_run(input=UNLOCK, token=token).pk)
    req = ApprovalRequest.objects.get(session=run.session)

    services.expire_request(req.pk, now=req.deadline + timedelta(seconds=1))
    run = runs.advance(run.pk)

    assert run.state == "completed" and "won't run unlock_door" in run.output_text
    assert hotel.state()["rooms"]["1204"]["door_locked"] is True


def test_a_run_without_tools_completes_in_one_step(hotel, alice):
    run = runs.advance(runs.start_run(input="What is the wifi password", user=alice).pk)
    assert run.state == "completed" and "What is the wifi password" in run.output_text
    assert run.session.label == "Alice" and run.session.status == "closed"


def test_a_run_fails_when_the_responses_api_refuses_it(hotel, token):
    run: ResponsesRun | None = runs.start_run(input="Hello", token=token, model="no-such-model-at-all")
    ResponsesRun.objects.filter(pk=run.pk).update(model="")  # the API answers 400: model missing
    run = runs.advance(run.pk)
    assert run.state == "failed" and "model" in run.error
    assert run.session.status == "closed"


def test_a_queued_run_whose_task_was_lost_is_picked_up_by_the_sweep(db, token):
    run = runs.start_run(input="Hello", token=token)
    assert runs.runs_to_advance(now=timezone.now()) == []
    assert runs.runs_to_advance(now=timezone.now() + runs.REQUEUE_AFTER + timedelta(seconds=1)) == [run.pk]


def test_a_run_follows_the_policy_allowed_tools_run_without_asking_and_are_recorded(hotel, token):
    server = services.register_mcp_server(label="hotel", url=hotel.mcp_url, headers=dict(hotel.headers))[0]
    assert services.probe_mcp_server(server, by=None).ok  # the registry learns the tools
    services.import_policies(
        "rules:\n  - {label: status, server: hotel, tool: get_room_status, outcome: allow}\n"
        "  - {label: no-doors, server: hotel, tool: unlock_door, outcome: deny, reason: At the desk only.}\n",
        by=None,
        source="test",
    )
    # Compiled `never`: the Responses API runs the tool with no approval request at all.
    run = runs.advance(runs.start_run(input='call hotel get_room_status {"room": "1204"}', token=token).pk)
    assert run.state == "completed"
    (req,) = ApprovalRequest.objects.filter(session=run.session)
    assert (req.tool_name, req.status, req.rule_label) == ("get_room_status", "approved", "status")
    assert req.call_recorded_at is not None and req.call_output
    # Always denied: left out of allowed_tools, so the model cannot even ask for it.
    run = runs.advance(runs.start_run(input=UNLOCK, token=token).pk)
    assert run.state == "completed" and not ApprovalRequest.objects.filter(session=run.session).exists()
    assert hotel.state()["rooms"]["1204"]["door_locked"] is True
