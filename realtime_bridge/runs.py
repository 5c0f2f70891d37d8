"""Text agent runs on the Responses API (DESIGN.md flow 1, "Responses"; REALTIME_PROTOCOL.md
section 9). Every change of a ResponsesRun goes through this module.

A run is `queued`, then `running` while a Responses API call is in flight, `waiting` while
approval requests of its output are pending, and ends `completed` or `failed`. Each step is
claimed with one conditional UPDATE (queued → running, or waiting-with-nothing-pending →
running), so a task delivered twice, or a sweep racing the task, advances a run once.

An approval request in a run's output becomes an ordinary ApprovalRequest
(approvals.services.open_request): staff, policy or the deadline decide it like any other.
Nobody holds a socket for a Responses session, so the relay nudge that a decision sends goes
nowhere; the beat sweep (`tasks.sweep_runs`, every second) finds the waiting runs whose
requests are all decided and resumes them with `previous_response_id` and the
`mcp_approval_response` items.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import Any

import openai
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from approvals import services
from approvals.models import ApprovalRequest, ClientToken, ConversationLine, RealtimeSession
from realtime_bridge import calls
from realtime_bridge.models import ResponsesRun

log = logging.getLogger(__name__)

State = ResponsesRun.State
# A run that asks for approvals over and over is stopped rather than looping forever.
MAX_STEPS = 12
# A queued run whose task was lost is re-queued by the sweep after this long.
REQUEUE_AFTER = timedelta(seconds=30)
MAX_INPUT_CHARS = 20_000


def start_run(
    *,
    input: str,
    instructions: str = "",
    model: str = "",
    token: ClientToken | None = None,
    user: Any = None,
) -> ResponsesRun:
    """Open a Responses session and queue its first step (the task goes after commit).
    The session is named by the client token, or by the staff member who started it."""
    from realtime_bridge import tasks

    model = model or settings.OPENAI_RESPONSES_MODEL
    if token is not None:
        label, metadata = token.label, dict(token.metadata or {})
    else:
        label, metadata = services.user_label(user), {"started_by": user.get_username()}
    with transaction.atomic():
        session = services.open_session(
            kind=RealtimeSession.Kind.RESPONSES, label=label, metadata=metadata, client_token=token, model=model
        )
        run = ResponsesRun.objects.create(
            session=session,
            client_token=token,
            created_by=user if token is None else None,
            model=model,
            instructions=instructions,
            input=input,
        )
        services.add_conversation_line(session=session, role=ConversationLine.Role.USER, text=input)
        pk = run.pk
        transaction.on_commit(lambda: tasks.advance_run.delay(pk), robust=True)
    return run


def _claim(pk: int) -> bool:
    now = timezone.now()
    if ResponsesRun.objects.filter(pk=pk, state=State.QUEUED).update(state=State.RUNNING, updated_at=now):
        return True
    return bool(ResponsesRun.objects.ready_to_resume().filter(pk=pk).update(state=State.RUNNING, updated_at=now))


def _approval_responses(session_id: int) -> tuple[list[dict[str, Any]], list[ApprovalRequest]]:
    answered = list(ApprovalRequest.objects.unsent_decisions().filter(session_id=session_id))
    items = []
    for req in answered:
        item: dict[str, Any] = {
            "type": "mcp_approval_response",
            "approval_request_id": req.upstream_id,
            "approve": bool(req.approve),
        }
        if req.reason:
            item["reason"] = req.reason
        items.append(item)
    return items, answered


def advance(pk: int) -> ResponsesRun | None:
    """Take one step of the run if it can take one now: the first request, or the resumption
    once its approvals are decided. Idempotent (the claim); returns None when there was
    nothing to do. Side effects: approval requests opened, decisions marked sent, the tool
    calls that ran recorded on their requests, conversation lines."""
    if not _claim(pk):
        return None
    run = ResponsesRun.objects.select_related("session").get(pk=pk)
    kwargs: dict[str, Any] = {"model": run.model, "tools": calls.tools_for(), "store": True}
    if run.instructions:
        kwargs["instructions"] = run.instructions
    answered: list[ApprovalRequest] = []
    if run.previous_response_id:
        items, answered = _approval_responses(run.session_id)
        if not items:
            return _fail(run, "The run was waiting for approvals that can no longer be answered.")
        kwargs.update(previous_response_id=run.previous_response_id, input=items)
    else:
        kwargs["input"] = run.input
    if run.steps >= MAX_STEPS:
        return _fail(run, f"Stopped after {MAX_STEPS} steps.")
    try:
        response = calls.openai_client().responses.create(**kwargs)
    except openai.APIError as exc:
        log.warning("run %s: Responses API call failed: %s", pk, exc)
        return _fail(run, f"The Responses API call failed: {exc}")
    # The answers are with OpenAI now: the outbox marks say so (and audit SENT).
    for req in answered:
        services.mark_decision_sent(req)
    return _record(run, response)


def _record(run: ResponsesRun, response: Any) -> ResponsesRun:
    session = run.session
    output = [item.model_dump(mode="json", exclude_none=True) for item in response.output]
    waiting = False
    with transaction.atomic():
        for item in output:
            kind = item.get("type")
            if kind == "mcp_approval_request":
                services.open_request(
                    session=session,
                    upstream_id=item["id"],
                    server_label=item.get("server_label", ""),
                    tool_name=item.get("name", ""),
                    arguments=item.get("arguments", ""),
                    raw_item=item,
                )
                waiting = True
            elif kind == "mcp_call" and item.get("approval_request_id"):
                services.record_mcp_call(session=session, item=item)
            elif kind == "message" and item.get("role") == "assistant":
                text = " ".join(
                    part.get("text", "") for part in item.get("content") or [] if part.get("type") == "output_text"
                ).strip()
                if text:
                    services.add_conversation_line(
                        session=session, role=ConversationLine.Role.ASSISTANT, text=text, item_id=item.get("id", "")
                    )
        now = timezone.now()
        fields: dict[str, Any] = {
            "previous_response_id": response.id,
            "output": output,
            "steps": run.steps + 1,
            "updated_at": now,
        }
        if waiting:
            fields["state"] = State.WAITING
        else:
            fields.update(state=State.COMPLETED, output_text=response.output_text or "", finished_at=now)
        ResponsesRun.objects.filter(pk=run.pk, state=State.RUNNING).update(**fields)
        if not waiting:
            services.close_session(session, code=None, reason="The run completed.")
            transaction.on_commit(partial(calls.announce_session, session.pk), robust=True)
    run.refresh_from_db()
    return run


def _fail(run: ResponsesRun, message: str) -> ResponsesRun:
    now = timezone.now()
    with transaction.atomic():
        ResponsesRun.objects.filter(pk=run.pk, state=State.RUNNING).update(
            state=State.FAILED, error=message[:2000], updated_at=now, finished_at=now
        )
        services.close_session(run.session, code=None, reason=message[:200])
    run.refresh_from_db()
    return run


def runs_to_advance(*, now: Any) -> list[int]:
    """For the sweep: waiting runs whose approvals are all decided, and queued runs whose
    first task seems lost."""
    ready = ResponsesRun.objects.ready_to_resume().values_list("pk", flat=True)
    stale = ResponsesRun.objects.filter(state=State.QUEUED, updated_at__lt=now - REQUEUE_AFTER).values_list(
        "pk", flat=True
    )
    return list(ready) + list(stale)
