"""Text agent runs on the Responses API (DESIGN.md flow 1, "Responses"; REALTIME_PROTOCOL.md
section 9). Every change of a ResponsesRun goes through this module.

A run is `queued`, then `running` while a Responses API call is in flight, `waiting` while
approval requests of its output are pending, and ends `completed` or `failed`. An approval
request in a run's output becomes an ordinary ApprovalRequest (approvals.services.open_request):
staff, policy or the deadline decide it like any other, and the run resumes with
`previous_response_id` and one `mcp_approval_response` per answer.

Who drives a run, and what survives a crash:

- A step is claimed with one conditional UPDATE that also takes a lease (a random token and an
  expiry): queued → running, waiting-with-nothing-pending → running, or running whose lease has
  expired → running (a worker died, or a retry is due). Of two tasks, or a task and the sweep,
  one wins. While the call is out a heartbeat thread renews the lease; every later write of the
  step is conditional on the token, so a worker that lost its lease (frozen past it) can neither
  send nor record anything.
- The step's request is stored on the run before it leaves (`step_input`), with the time it
  left (`step_sent_at`). A transient failure that OpenAI answered (429, 5xx) or a connection
  that never opened proves that nothing was processed: the step is retried with backoff, the
  same input, from a countdown task (and the sweep, should that task be lost). A 400 and the
  like fail the run with OpenAI's message.
- When a step may have reached OpenAI without us seeing the answer (a read timeout, a dropped
  connection, a worker killed mid-call): the first step is sent again (no approval answer
  rides on it, and an approval request exists only once its response is recorded, so nothing
  is duplicated here); a resumption is not, because the approved tool may already have run:
  approval answers are sent at most once, and such a run fails saying so.
- The response is kept on the run as soon as it arrives (`step_response`: a worker that dies
  now leaves it to the next one to record, instead of a call to make again), then recorded in
  one transaction with the approval requests it opens (unique on the upstream id), the tool calls
  it reports and the outbox marks of the answers it carried (audit SENT): a step is recorded
  once.

What triggers a step: the task queued when the run starts; a decision or expiry of one of its
requests (`on_decision`, hooked up in apps.py: nobody holds a socket for a Responses session, so
the relay nudge of a decision goes nowhere); the retry countdown after a transient error; and
the beat sweep (`tasks.sweep_runs`, every second), which heals all of them. Steps are queued by
task name (`queue_step`): tasks.py imports this module, not the reverse.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import httpx
import openai
from celery import current_app
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from approvals import services
from approvals.models import ApprovalRequest, AuditKind, ClientToken, ConversationLine, RealtimeSession
from realtime_bridge import calls, client, items
from realtime_bridge.models import ResponsesRun

log = logging.getLogger(__name__)

State = ResponsesRun.State
# A run that asks for approvals over and over is stopped rather than looping forever.
MAX_STEPS = 12
# A step taken up this many times (transient errors, dead workers) fails the run.
MAX_ATTEMPTS = 6
# Backoff between attempts: 1, 2, 4, 8 … seconds, at most a minute (or what Retry-After says).
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
# A Responses call runs the approved MCP tools before it answers: give it time.
REQUEST_TIMEOUT_SECONDS = 120.0
# A queued run whose task was lost is re-queued by the sweep after this long.
REQUEUE_AFTER = timedelta(seconds=30)
MAX_INPUT_CHARS = 20_000
# The Celery task that takes a step (realtime_bridge/tasks.py registers it under this name).
ADVANCE_RUN_TASK = "realtime_bridge.tasks.advance_run"
# Audit kinds that answer a request: a waiting run may be able to resume.
DECISION_KINDS = frozenset({AuditKind.DECIDED, AuditKind.EXPIRED})


def openai_client() -> openai.OpenAI:
    # No SDK retries: the SDK would also retry a timed-out resumption, sending the approval
    # answers twice. This module decides what may be retried (module docstring).
    return client.openai_client(max_retries=0, timeout=REQUEST_TIMEOUT_SECONDS)


def lease_seconds() -> float:
    return float(max(1, settings.RUN_LEASE_SECONDS))


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
    model = model or settings.OPENAI_RESPONSES_MODEL
    if token is not None:
        label, metadata = token.label, dict(token.metadata or {})
    else:
        label, metadata = services.user_label(user), {"started_by": user.get_username()}
    with transaction.atomic():
        session = services.open_session(
            kind=RealtimeSession.Kind.RESPONSES,
            label=label,
            metadata=metadata,
            client_token=token,
            model=model,
            # Whoever started the run never decides its requests (duties do not mix).
            started_by=user if token is None else None,
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
        transaction.on_commit(partial(queue_step, pk), robust=True)
    return run


# --- Leases -----------------------------------------------------------------------------------


def _claim(pk: int, *, now: datetime) -> str | None:
    """Take the run's next step if it can be taken now; returns the lease token, or None."""
    token = secrets.token_hex(16)
    held = {
        "state": State.RUNNING,
        "lease_token": token,
        "lease_expires_at": now + timedelta(seconds=lease_seconds()),
        "updated_at": now,
    }
    if ResponsesRun.objects.filter(pk=pk, state=State.QUEUED).update(**held):
        return token
    if ResponsesRun.objects.ready_to_resume().filter(pk=pk).update(**held):
        return token
    # Its worker died, or its retry is due: taken up again, and counted.
    if ResponsesRun.objects.lease_expired(now).filter(pk=pk).update(**held, attempts=F("attempts") + 1):
        return token
    return None


def _mine(pk: int, token: str) -> Any:
    """The run, as long as this lease still holds it (every write of a step goes through it)."""
    return ResponsesRun.objects.filter(pk=pk, state=State.RUNNING, lease_token=token)


def renew_lease(pk: int, token: str) -> bool:
    """The heartbeat: push the lease forward. False when it is not ours any more."""
    until = timezone.now() + timedelta(seconds=lease_seconds())
    return bool(_mine(pk, token).update(lease_expires_at=until))


class _Heartbeat:
    """Renews the lease every third of it while a call is out (a thread: the call blocks)."""

    def __init__(self, pk: int, token: str) -> None:
        self.pk, self.token = pk, token
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"run-{pk}-heartbeat", daemon=True)

    def _run(self) -> None:
        try:
            while not self.stop.wait(lease_seconds() / 3):
                try:
                    if not renew_lease(self.pk, self.token):
                        return  # taken over: the step's own writes will find out
                except Exception:
                    log.exception("run %s: lease not renewed", self.pk)
                    close_old_connections()
        finally:
            connection.close()  # this thread's own connection

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


class _LeaseLost(Exception):
    """Another worker holds the run now; this one must not write anything more."""


# --- Steps ------------------------------------------------------------------------------------


def advance(pk: int, *, now: datetime | None = None) -> ResponsesRun | None:
    """Take one step of the run if it can take one now: the first request, a resumption once
    its approvals are decided, or a step whose worker died or whose retry is due. Idempotent
    (the claim); returns None when there was nothing to do. Side effects: approval requests
    opened, decisions marked sent, tool calls recorded on their requests, conversation lines;
    after a transient error, a retry task."""
    token = _claim(pk, now=now or timezone.now())
    if token is None:
        return None
    try:
        return _step(pk, token)
    except _LeaseLost:
        log.warning("run %s: lease lost to another worker; leaving the step to it", pk)
        return None


def _step(pk: int, token: str) -> ResponsesRun:
    run = ResponsesRun.objects.select_related("session").get(pk=pk)
    if run.step_response is not None:
        # The response came back, and its worker died before recording it.
        return _record(run, token, run.step_response)
    if run.attempts > MAX_ATTEMPTS:
        return _fail(run, token, f"Gave up after {MAX_ATTEMPTS} attempts. {run.error}".strip())
    if run.step_input is None:
        if run.steps >= MAX_STEPS:
            return _fail(run, token, f"Stopped after {MAX_STEPS} steps.")
        if run.previous_response_id:
            items = _approval_responses(run.session_id)
            if not items:
                return _fail(run, token, "The run was waiting for approvals that can no longer be answered.")
            step_input: Any = items
        else:
            step_input = run.input
        if not _mine(pk, token).update(step_input=step_input, step_sent_at=None):
            raise _LeaseLost
        run.step_input, run.step_sent_at = step_input, None
    elif run.step_sent_at is not None and _answers(run.step_input):
        # A resumption that may have reached OpenAI while nobody was there to see the answer.
        return _fail(run, token, _unknown_message(f"the worker stopped during the call (sent {run.step_sent_at})"))

    kwargs: dict[str, Any] = {
        "model": run.model,
        "tools": calls.tools_for(session=run.session),
        "store": True,
        "input": run.step_input,
    }
    if run.instructions:
        kwargs["instructions"] = run.instructions
    if run.previous_response_id:
        kwargs["previous_response_id"] = run.previous_response_id
    # The fence: a worker that lost its lease finds out here, before anything leaves.
    if not _mine(pk, token).update(step_sent_at=timezone.now()):
        raise _LeaseLost
    try:
        with _Heartbeat(pk, token):
            response = openai_client().responses.create(**kwargs)
    except openai.APIError as exc:
        return _handle_error(run, token, exc)
    data = {
        "id": response.id,
        "output": [item.model_dump(mode="json", exclude_none=True) for item in response.output],
        "output_text": response.output_text or "",
    }
    if not _mine(pk, token).update(step_response=data):
        raise _LeaseLost
    return _record(run, token, data)


def _approval_responses(session_id: int) -> list[dict[str, Any]]:
    items = []
    for req in ApprovalRequest.objects.unsent_decisions().filter(session_id=session_id):
        item: dict[str, Any] = {
            "type": "mcp_approval_response",
            "approval_request_id": req.upstream_id,
            "approve": bool(req.approve),
        }
        if req.reason:
            item["reason"] = req.reason
        items.append(item)
    return items


def _answers(step_input: Any) -> list[str]:
    """The approval request ids a step's input answers (none for the first step)."""
    if not isinstance(step_input, list):
        return []
    return [str(i["approval_request_id"]) for i in step_input if i.get("type") == "mcp_approval_response"]


def _unknown_message(why: str) -> str:
    return (
        f"The approval answers may have reached OpenAI, but no response came back ({why}). They are not sent "
        "twice, because an approved tool may already have run: check the tool's side before starting again."
    )


# --- Errors and retries -------------------------------------------------------------------------


def _not_delivered(exc: openai.APIError) -> bool:
    """True when OpenAI surely did not process the request: it answered 429 or 5xx (a failed
    request, which OpenAI's docs and the SDK retry), or the connection never opened."""
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    if isinstance(exc, openai.APIConnectionError):
        return isinstance(exc.__cause__, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    return False


def _transient(exc: openai.APIError) -> bool:
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 429:
            return getattr(exc, "code", None) != "insufficient_quota"  # out of credit: no retry helps
        return exc.status_code >= 500 or exc.status_code in (408, 409)
    return isinstance(exc, openai.APIConnectionError)  # APITimeoutError included


def backoff_seconds(attempts: int, exc: openai.APIError | None = None) -> float:
    """1, 2, 4 … seconds (±10 %), at most BACKOFF_MAX_SECONDS; OpenAI's Retry-After wins."""
    if isinstance(exc, openai.APIStatusError):
        try:
            return min(BACKOFF_MAX_SECONDS, max(0.0, float(exc.response.headers.get("retry-after", ""))))
        except ValueError:
            pass
    delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2**attempts)
    return delay * random.uniform(0.9, 1.1)


def _describe(exc: openai.APIError) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"OpenAI answered {exc.status_code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _handle_error(run: ResponsesRun, token: str, exc: openai.APIError) -> ResponsesRun:
    log.warning("run %s: Responses API call failed: %s", run.pk, exc)
    if not _transient(exc):
        return _fail(run, token, f"The Responses API call failed: {_describe(exc)}")
    delivered_maybe = not _not_delivered(exc)
    if delivered_maybe and _answers(run.step_input):
        return _fail(run, token, _unknown_message(_describe(exc)))
    if run.attempts >= MAX_ATTEMPTS:
        return _fail(run, token, f"Gave up after {MAX_ATTEMPTS} attempts. {_describe(exc)}")
    return _retry_later(run, token, exc, sent=delivered_maybe)


def _retry_later(run: ResponsesRun, token: str, exc: openai.APIError, *, sent: bool) -> ResponsesRun:
    """Let go of the run until the retry is due: the lease expires then, and the countdown task
    (or the sweep) takes it up again with the same input."""
    delay = backoff_seconds(run.attempts, exc)
    fields: dict[str, Any] = {
        "lease_token": "",
        "lease_expires_at": timezone.now() + timedelta(seconds=delay),
        "error": f"{_describe(exc)} (retry {run.attempts + 1} of {MAX_ATTEMPTS} in {delay:.0f} s)"[:2000],
        "updated_at": timezone.now(),
    }
    if not sent:
        fields["step_sent_at"] = None  # known not to have reached OpenAI
    with transaction.atomic():
        if not _mine(run.pk, token).update(**fields):
            raise _LeaseLost
        pk = run.pk
        # A hair after the lease expires, else the claim would find it still held.
        transaction.on_commit(partial(queue_step, pk, countdown=delay + 0.05), robust=True)
        transaction.on_commit(partial(calls.announce_session, run.session_id), robust=True)
    run.refresh_from_db()
    return run


# --- Recording --------------------------------------------------------------------------------


def _record(run: ResponsesRun, token: str, response: dict[str, Any]) -> ResponsesRun:
    """Record a response (`{"id", "output", "output_text"}`) and end the step."""
    session = run.session
    output = response["output"]
    waiting = any(item.get("type") == "mcp_approval_request" for item in output)
    now = timezone.now()
    fields: dict[str, Any] = {
        "previous_response_id": response["id"],
        "output": output,
        "steps": run.steps + 1,
        "updated_at": now,
        "error": "",
        "attempts": 0,
        "lease_token": "",
        "lease_expires_at": None,
        "step_input": None,
        "step_sent_at": None,
        "step_response": None,
    }
    if waiting:
        fields["state"] = State.WAITING
    else:
        fields.update(state=State.COMPLETED, output_text=response["output_text"], finished_at=now)
    with transaction.atomic():
        # The run row first (the fence, and the lock order: own rows, then the audit chain).
        if not _mine(run.pk, token).update(**fields):
            raise _LeaseLost
        # The answers are with OpenAI now: the outbox marks say so (audit SENT), in the same
        # transaction as the response that proves it.
        answered = _answers(run.step_input)
        for req in ApprovalRequest.objects.filter(session_id=session.pk, upstream_id__in=answered).order_by("pk"):
            services.mark_decision_sent(req)
        for item in output:
            items.record(session, item)
        if not waiting:
            services.close_session(session, code=None, reason="The run completed.")
            transaction.on_commit(partial(calls.announce_session, session.pk), robust=True)
    run.refresh_from_db()
    return run


def _fail(run: ResponsesRun, token: str, message: str) -> ResponsesRun:
    now = timezone.now()
    with transaction.atomic():
        won = _mine(run.pk, token).update(
            state=State.FAILED,
            error=message[:2000],
            updated_at=now,
            finished_at=now,
            lease_token="",
            lease_expires_at=None,
        )
        if not won:
            raise _LeaseLost
        services.close_session(run.session, code=None, reason=message[:200])
        transaction.on_commit(partial(calls.announce_session, run.session_id), robust=True)
    run.refresh_from_db()
    return run


# --- Triggers ---------------------------------------------------------------------------------


def runs_to_advance(*, now: datetime) -> list[int]:
    """For the sweep: waiting runs whose approvals are all decided, running runs whose lease
    has expired (a dead worker, or a retry that is due), and queued runs whose first task
    seems lost."""
    ready = ResponsesRun.objects.ready_to_resume().values_list("pk", flat=True)
    expired = ResponsesRun.objects.lease_expired(now).values_list("pk", flat=True)
    stale = ResponsesRun.objects.filter(state=State.QUEUED, updated_at__lt=now - REQUEUE_AFTER).values_list(
        "pk", flat=True
    )
    return list(ready) + list(expired) + list(stale)


def on_decision(*, kind: str, session_id: int | None) -> None:
    """A request of the session changed (`kind`: its audit kind); if it was answered (decided or
    expired) and the session is a waiting run's, queue the run's next step after commit (at once
    when called outside a transaction), rather than leaving it to the sweep."""
    if kind in DECISION_KINDS and session_id is not None:
        transaction.on_commit(partial(_resume_waiting, session_id), robust=True)


def _resume_waiting(session_id: int) -> None:
    pks = ResponsesRun.objects.ready_to_resume().filter(session_id=session_id).values_list("pk", flat=True)
    for pk in pks:
        queue_step(pk)


def queue_step(pk: int, *, countdown: float | None = None) -> None:
    """Hand the run's next step to Celery (`tasks.advance_run`), now or after `countdown`
    seconds. The task is named, not imported: tasks.py calls this module, so this one must not
    import it back. Where tasks.py is loaded (a worker, or any process that imported it) the
    registered task sends it; elsewhere the message goes by name, which is all the task's own
    `delay` would put on the queue."""
    task = current_app.tasks.get(ADVANCE_RUN_TASK)
    if task is None:
        current_app.send_task(ADVANCE_RUN_TASK, (pk,), countdown=countdown)
    elif countdown is None:
        task.delay(pk)
    else:
        task.apply_async((pk,), countdown=countdown)
