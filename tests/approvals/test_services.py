from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.utils import timezone

from approvals import services
from approvals.models import ApprovalRequest, AuditKind, ClientToken, ConversationLine, McpServer, RealtimeSession
from approvals.services import TransitionError
from audit.models import AuditEvent
from tests.approvals.conftest import ARGUMENTS, approval_item

Status = ApprovalRequest.Status
Kind = AuditKind


def kinds(req: ApprovalRequest) -> list[str]:
    return list(AuditEvent.objects.filter(request=req).values_list("kind", flat=True))


def approved(req: ApprovalRequest, by) -> ApprovalRequest:
    return services.decide(req, approve=True, by=by)


def denied(req: ApprovalRequest, by) -> ApprovalRequest:
    return services.decide(req, approve=False, by=by, reason="Not without the guest's card")


def expired(req: ApprovalRequest, by) -> ApprovalRequest:
    result = services.expire_request(req.pk, now=req.deadline)
    assert result is not None
    return result


def cancelled(req: ApprovalRequest, by) -> ApprovalRequest:
    [result] = services.close_session(req.session, code=1000, reason="Guest hung up")
    return result


CLOSERS = {"approved": approved, "denied": denied, "expired": expired, "cancelled": cancelled}


# open_session / close_session --------------------------------------------------------------


def test_open_session_records_the_session_and_an_audit_event(db):
    session = services.open_session(
        kind="sideband", label="Call +351…", metadata={"line": "front desk"}, model="gpt-realtime", call_id="rtc_1"
    )

    assert session.status == RealtimeSession.Status.OPEN
    assert (session.kind, session.label, session.metadata) == ("sideband", "Call +351…", {"line": "front desk"})
    event = AuditEvent.objects.get(session=session)
    assert event.kind == Kind.SESSION_OPENED
    assert event.payload["call_id"] == "rtc_1"


def test_open_session_marks_the_client_token_as_used(db):
    token, _ = services.issue_token(label="Room 1204", metadata={"room": "1204"})
    assert token.last_used_at is None

    session = services.open_session(kind="relay", label=token.label, metadata=token.metadata, client_token=token)

    token.refresh_from_db()
    assert token.last_used_at == session.opened_at
    assert session.client_token == token


def test_open_session_rejects_an_unknown_kind(db):
    with pytest.raises(ValueError, match="kind"):
        services.open_session(kind="carrier-pigeon", label="x", metadata={})
    assert not RealtimeSession.objects.exists()


def test_close_session_cancels_pending_requests(session, make_request, effects, django_capture_on_commit_callbacks):
    first, second = make_request(), make_request()

    with django_capture_on_commit_callbacks(execute=True):
        result = services.close_session(session, code=1006, reason="Guest hung up")

    assert {r.pk for r in result} == {first.pk, second.pk}
    for req in result:
        assert req.status == Status.CANCELLED
        assert req.decided_by_label == "session ended"
        assert req.reason == "Guest hung up"
        assert req.decided_at is not None
        assert kinds(req) == [Kind.REQUESTED, Kind.POLICY_ROUTED, Kind.CANCELLED]
    assert (session.status, session.close_code) == (RealtimeSession.Status.CLOSED, 1006)
    assert AuditEvent.objects.get(kind=Kind.SESSION_CLOSED).payload == {"code": 1006, "reason": "Guest hung up"}
    assert sorted(effects.dashboard) == sorted([first.pk, second.pk])
    # Nothing goes upstream for a cancelled request: its socket is gone.
    assert effects.relay == []


def test_close_session_leaves_decided_requests_alone(session, make_request, alice):
    decided = services.decide(make_request(), approve=True, by=alice)
    pending = make_request()

    result = services.close_session(session, code=1000, reason="")

    assert [r.pk for r in result] == [pending.pk]
    decided.refresh_from_db()
    assert decided.status == Status.APPROVED
    assert result[0].reason == services.DEFAULT_CANCEL_REASON


def test_close_session_is_idempotent(session, make_request):
    make_request()
    services.close_session(session, code=1000, reason="bye")
    closed_at = session.closed_at

    assert services.close_session(session, code=4000, reason="again") == []

    session.refresh_from_db()
    assert (session.closed_at, session.close_code) == (closed_at, 1000)
    assert AuditEvent.objects.filter(kind=Kind.SESSION_CLOSED).count() == 1
    assert AuditEvent.objects.filter(kind=Kind.CANCELLED).count() == 1


# open_request ------------------------------------------------------------------------------


def test_open_request_queues_a_pending_request_with_a_deadline(session, settings):
    settings.APPROVAL_TIMEOUT_SECONDS = 45
    item = approval_item("mcpr_1")

    req, created = services.open_request(
        session=session,
        upstream_id="mcpr_1",
        server_label="hotel",
        tool_name="refund_minibar_charge",
        arguments=ARGUMENTS,
        raw_item=item,
    )

    assert created
    assert req.status == Status.PENDING
    assert req.deadline - req.created_at == timedelta(seconds=45)
    assert (req.tool_name, req.server_label, req.arguments) == ("refund_minibar_charge", "hotel", ARGUMENTS)
    assert req.mcp_server is None
    event, routed = AuditEvent.objects.filter(request=req).order_by("seq")
    assert (event.kind, event.session_id, event.payload["item"]) == (Kind.REQUESTED, session.pk, item)
    # No policy configured: the built-in default asks any staff member, and says so.
    assert (routed.kind, routed.payload["outcome"], routed.payload["rule"]) == (Kind.POLICY_ROUTED, "ask", None)


def test_open_request_links_the_registered_mcp_server(session, make_request):
    server, _ = services.register_mcp_server(label="hotel", url="https://mcp.hotel.example/mcp")

    assert make_request().mcp_server == server


def test_open_request_is_idempotent_on_session_and_upstream_id(session, make_request):
    first = make_request(upstream_id="mcpr_same")

    again, created = services.open_request(
        session=session,
        upstream_id="mcpr_same",
        server_label="hotel",
        tool_name="refund_minibar_charge",
        arguments=ARGUMENTS,
        raw_item=approval_item("mcpr_same"),
    )

    assert not created
    assert again.pk == first.pk
    assert ApprovalRequest.objects.count() == 1
    assert kinds(first) == [Kind.REQUESTED, Kind.POLICY_ROUTED]


def test_open_request_with_the_same_upstream_id_in_another_session_is_a_new_request(session, make_request):
    other = services.open_session(kind="relay", label="Room 7", metadata={})

    a = make_request(upstream_id="mcpr_1")
    b = make_request(upstream_id="mcpr_1", session=other)

    assert a.pk != b.pk


def test_open_request_that_loses_an_insert_race_returns_the_winner(session, monkeypatch, effects, scheduled):
    # Another process inserts the same request between our "already there?" check and our
    # insert: the unique constraint catches it and the winner's row comes back.
    real_filter = McpServer.objects.filter

    def rival_inserts(*args, **kwargs):
        ApprovalRequest.objects.create(
            session=session,
            upstream_id="mcpr_race",
            server_label="hotel",
            tool_name="t",
            arguments="{}",
            deadline=timezone.now(),
        )
        return real_filter(*args, **kwargs)

    monkeypatch.setattr(McpServer.objects, "filter", rival_inserts)
    with transaction.atomic():  # the caller's own transaction must survive the lost race
        req, created = services.open_request(
            session=session,
            upstream_id="mcpr_race",
            server_label="hotel",
            tool_name="t",
            arguments="{}",
            raw_item={},
        )
        assert ApprovalRequest.objects.count() == 1

    assert not created
    assert req.upstream_id == "mcpr_race"
    assert not AuditEvent.objects.filter(kind=Kind.REQUESTED).exists()


def test_open_request_effects_run_after_commit(
    make_request, effects, scheduled, settings, django_capture_on_commit_callbacks
):
    settings.APPROVAL_TIMEOUT_SECONDS = 60

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        req = make_request()
    assert (effects.dashboard, scheduled.calls) == ([], [])

    for callback in callbacks:
        callback()
    assert effects.dashboard == [req.pk]
    [(args, countdown)] = scheduled.calls
    assert args == (req.pk,)
    assert 59 < countdown <= 60 + services.EXPIRY_SLACK_SECONDS


def test_open_request_sends_nothing_when_the_transaction_rolls_back(
    make_request, effects, django_capture_on_commit_callbacks
):
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        make_request()
        raise RuntimeError("the caller failed")

    assert callbacks == []
    assert effects.dashboard == []
    assert not ApprovalRequest.objects.exists()


# decide ------------------------------------------------------------------------------------


def test_approve_records_reviewer_and_audit_event(make_request, alice):
    req = make_request()

    req = services.decide(req, approve=True, by=alice)

    assert req.status == Status.APPROVED
    assert (req.decided_by, req.decided_by_label, req.reason) == (alice, "Alice", "")
    assert req.decided_at is not None
    assert req.approve is True
    event = AuditEvent.objects.get(request=req, kind=Kind.DECIDED)
    expected = {"approve": True, "reason": "", "stage": 0}
    assert (event.actor, event.actor_label, event.payload) == (alice, "Alice", expected)


def test_deny_records_the_reason_without_surrounding_space(make_request, bob):
    req = services.decide(make_request(), approve=False, by=bob, reason="  Ask the guest to come to the desk. ")

    assert req.status == Status.DENIED
    assert req.reason == "Ask the guest to come to the desk."
    assert req.approve is False
    assert AuditEvent.objects.get(request=req, kind=Kind.DECIDED).payload["approve"] is False


def test_decide_nudges_the_relay_then_the_dashboards_after_commit(
    make_request, alice, effects, django_capture_on_commit_callbacks
):
    req = make_request()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.decide(req, approve=True, by=alice)
    assert effects.order == []

    for callback in callbacks:
        callback()
    assert effects.relay == [(req.session_id, req.pk)]
    assert effects.dashboard == [req.pk]
    assert effects.order == ["relay", "dashboard"]


@pytest.mark.parametrize("closer", CLOSERS.values(), ids=CLOSERS.keys())
@pytest.mark.parametrize("approve", [True, False], ids=["approve", "deny"])
def test_decide_on_a_closed_request_raises_and_changes_nothing(make_request, alice, bob, closer, approve):
    req = make_request()
    closed = closer(req, alice)
    audit_before = kinds(req)

    with pytest.raises(TransitionError) as excinfo:
        services.decide(req, approve=approve, by=bob, reason="late")

    assert excinfo.value.request is not None
    assert excinfo.value.request.status == closed.status
    req.refresh_from_db()
    assert (req.status, req.decided_by_label, req.reason) == (closed.status, closed.decided_by_label, closed.reason)
    assert kinds(req) == audit_before


@pytest.mark.parametrize(
    ("closer", "message"),
    [
        (approved, "This request was already approved by Alice."),
        (denied, "This request was already denied by Alice."),
        (
            expired,
            "This request has expired: Nobody from the staff could confirm this in time (waited 1 min), "
            "so it was not done.",
        ),
        (cancelled, "This request was cancelled because the session ended (Guest hung up)"),
    ],
)
def test_transition_error_says_what_the_request_is_now(make_request, alice, bob, closer, message):
    req = make_request()
    closer(req, alice)

    with pytest.raises(TransitionError) as excinfo:
        services.decide(req, approve=True, by=bob)

    assert str(excinfo.value) == message


def test_second_of_two_racing_decisions_raises(make_request, alice, bob, effects, django_capture_on_commit_callbacks):
    req = make_request()
    # Both staff loaded the pending request before either clicked.
    alices_copy = ApprovalRequest.objects.get(pk=req.pk)
    bobs_copy = ApprovalRequest.objects.get(pk=req.pk)

    with django_capture_on_commit_callbacks(execute=True):
        services.decide(alices_copy, approve=True, by=alice)
        with pytest.raises(TransitionError, match="already approved by Alice"):
            services.decide(bobs_copy, approve=False, by=bob)

    req.refresh_from_db()
    assert (req.status, req.decided_by) == (Status.APPROVED, alice)
    assert kinds(req) == [Kind.REQUESTED, Kind.POLICY_ROUTED, Kind.DECIDED]
    assert effects.relay == [(req.session_id, req.pk)]  # one answer goes upstream, not two


def test_decide_after_the_deadline_expires_the_request_and_raises(make_request, alice, settings, effects):
    settings.APPROVAL_TIMEOUT_SECONDS = 0  # the deadline is already behind us
    req = make_request()

    with pytest.raises(TransitionError, match="expired"):
        services.decide(req, approve=True, by=alice)

    req.refresh_from_db()
    assert (req.status, req.decided_by_label, req.decided_by) == (Status.EXPIRED, "deadline", None)
    assert kinds(req) == [Kind.REQUESTED, Kind.POLICY_ROUTED, Kind.EXPIRED]


def test_decide_by_someone_not_staff_is_refused(make_request, charlie):
    req = make_request()

    with pytest.raises(PermissionDenied):
        services.decide(req, approve=True, by=charlie)

    req.refresh_from_db()
    assert req.status == Status.PENDING


def test_decide_refuses_a_reason_that_is_too_long(make_request, alice):
    req = make_request()

    with pytest.raises(ValueError, match="longer than"):
        services.decide(req, approve=False, by=alice, reason="x" * (services.MAX_REASON_LENGTH + 1))

    req.refresh_from_db()
    assert req.status == Status.PENDING


@pytest.mark.django_db(transaction=True)
def test_two_staff_clicking_at_once_exactly_one_wins(alice, bob, effects):
    session = services.open_session(kind="relay", label="Room 1204", metadata={})
    req, _ = services.open_request(
        session=session, upstream_id="mcpr_1", server_label="hotel", tool_name="t", arguments="{}", raw_item={}
    )
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def click(user, approve):
        try:
            barrier.wait()
            services.decide(ApprovalRequest.objects.get(pk=req.pk), approve=approve, by=user)
            outcomes[user.username] = "won"
        except TransitionError:
            outcomes[user.username] = "told"
        finally:
            connection.close()

    threads = [threading.Thread(target=click, args=(alice, True)), threading.Thread(target=click, args=(bob, False))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert sorted(outcomes.values()) == ["told", "won"]
    req.refresh_from_db()
    winner = "alice" if outcomes["alice"] == "won" else "bob"
    assert req.decided_by.username == winner
    assert AuditEvent.objects.filter(request=req, kind=Kind.DECIDED).count() == 1
    assert len(effects.relay) == 1


# expire_request / expire_overdue ------------------------------------------------------------


def test_expire_request_denies_an_overdue_request_by_deadline(
    make_request, effects, django_capture_on_commit_callbacks
):
    req = make_request()

    with django_capture_on_commit_callbacks(execute=True):
        result = services.expire_request(req.pk, now=req.deadline)

    assert result is not None
    assert result.status == Status.EXPIRED
    assert result.decided_by_label == "deadline"
    assert result.reason == "Nobody from the staff could confirm this in time (waited 1 min), so it was not done."
    assert result.decided_at == req.deadline
    assert result.approve is False  # the denial goes upstream
    assert kinds(req) == [Kind.REQUESTED, Kind.POLICY_ROUTED, Kind.EXPIRED]
    assert effects.order == ["relay", "dashboard"]


def test_expire_request_before_the_deadline_does_nothing(make_request, effects, django_capture_on_commit_callbacks):
    req = make_request()

    with django_capture_on_commit_callbacks(execute=True):
        assert services.expire_request(req.pk, now=req.deadline - timedelta(milliseconds=1)) is None

    req.refresh_from_db()
    assert req.status == Status.PENDING
    assert effects.order == []


def test_expire_request_is_idempotent(make_request, effects, django_capture_on_commit_callbacks):
    req = make_request()
    with django_capture_on_commit_callbacks(execute=True):
        services.expire_request(req.pk, now=req.deadline)
        assert services.expire_request(req.pk, now=req.deadline + timedelta(seconds=5)) is None

    assert kinds(req) == [Kind.REQUESTED, Kind.POLICY_ROUTED, Kind.EXPIRED]
    assert effects.relay == [(req.session_id, req.pk)]


def test_expire_request_leaves_a_decided_request_alone(make_request, alice):
    req = services.decide(make_request(), approve=True, by=alice)

    assert services.expire_request(req.pk, now=req.deadline + timedelta(seconds=1)) is None

    req.refresh_from_db()
    assert req.status == Status.APPROVED


def test_expire_request_of_an_unknown_id_returns_none(db):
    assert services.expire_request(424242) is None


def test_expire_overdue_expires_only_overdue_pending_requests(session, make_request, alice, settings):
    settings.APPROVAL_TIMEOUT_SECONDS = 10
    soon = make_request()
    settings.APPROVAL_TIMEOUT_SECONDS = 60
    later = make_request()
    decided = services.decide(make_request(), approve=False, by=alice)
    settings.APPROVAL_TIMEOUT_SECONDS = 10
    other_soon = make_request()

    result = services.expire_overdue(now=soon.deadline + timedelta(seconds=20))

    assert [r.pk for r in result] == [soon.pk, other_soon.pk]
    assert result[0].reason == "Nobody from the staff could confirm this in time (waited 30 s), so it was not done."
    assert ApprovalRequest.objects.get(pk=later.pk).status == Status.PENDING
    assert ApprovalRequest.objects.get(pk=decided.pk).status == Status.DENIED


def test_expire_overdue_is_idempotent(make_request):
    req = make_request()
    now = req.deadline + timedelta(seconds=1)

    assert len(services.expire_overdue(now=now)) == 1
    assert services.expire_overdue(now=now) == []
    assert kinds(req) == [Kind.REQUESTED, Kind.POLICY_ROUTED, Kind.EXPIRED]


# the outbox ---------------------------------------------------------------------------------


def test_mark_decision_sent_claims_a_decision_exactly_once(make_request, alice):
    req = services.decide(make_request(), approve=False, by=alice, reason="No")
    assert list(ApprovalRequest.objects.unsent_decisions()) == [req]

    assert services.mark_decision_sent(req) is True
    assert req.decision_sent_at is not None
    assert services.mark_decision_sent(ApprovalRequest.objects.get(pk=req.pk)) is False

    assert list(ApprovalRequest.objects.unsent_decisions()) == []
    sent = AuditEvent.objects.get(request=req, kind=Kind.SENT)
    assert sent.payload == {"approve": False, "reason": "No"}


def test_mark_decision_sent_sends_an_expiry_as_a_denial(make_request):
    req = make_request()
    services.expire_request(req.pk, now=req.deadline)

    assert services.mark_decision_sent(req) is True
    assert AuditEvent.objects.get(request=req, kind=Kind.SENT).payload["approve"] is False


@pytest.mark.parametrize("state", ["pending", "cancelled"])
def test_mark_decision_sent_refuses_what_has_no_answer(session, make_request, state):
    req = make_request()
    if state == "cancelled":
        services.close_session(session, code=1000, reason="gone")

    assert services.mark_decision_sent(req) is False
    req.refresh_from_db()
    assert req.decision_sent_at is None
    assert not AuditEvent.objects.filter(kind=Kind.SENT).exists()


def test_unsent_decisions_skip_closed_sessions(session, make_request, alice):
    services.decide(make_request(), approve=True, by=alice)
    session.status = RealtimeSession.Status.CLOSED
    RealtimeSession.objects.filter(pk=session.pk).update(status=RealtimeSession.Status.CLOSED)

    assert not ApprovalRequest.objects.unsent_decisions().exists()


# record_mcp_call ----------------------------------------------------------------------------


def mcp_call(upstream_id: str, **fields) -> dict:
    return {
        "type": "mcp_call",
        "id": "mcp_call_C1",
        "server_label": "hotel",
        "name": "refund_minibar_charge",
        "arguments": ARGUMENTS,
        "approval_request_id": upstream_id,
        "output": None,
        "error": None,
        **fields,
    }


def test_record_mcp_call_keeps_what_ran(session, make_request, alice, effects, django_capture_on_commit_callbacks):
    req = services.decide(make_request(upstream_id="mcpr_1"), approve=True, by=alice)
    item = mcp_call("mcpr_1", output='{"refunded": 120}')

    with django_capture_on_commit_callbacks(execute=True):
        result = services.record_mcp_call(session=session, item=item)

    assert result is not None
    assert result.pk == req.pk
    assert (result.mcp_call_item_id, result.call_arguments) == ("mcp_call_C1", ARGUMENTS)
    assert (result.call_output, result.call_error) == ('{"refunded": 120}', None)
    assert result.call_recorded_at is not None
    assert AuditEvent.objects.get(request=req, kind=Kind.MCP_CALL).payload == {"item": item}
    assert effects.dashboard == [req.pk]


def test_record_mcp_call_keeps_an_error_and_an_empty_output(session, make_request, alice):
    services.decide(make_request(upstream_id="mcpr_1"), approve=True, by=alice)
    error = {"type": "http_error", "code": 502, "message": "Bad gateway"}

    result = services.record_mcp_call(session=session, item=mcp_call("mcpr_1", output="", error=error))

    assert result is not None
    assert (result.call_output, result.call_error) == ("", error)


def test_record_mcp_call_is_recorded_once(session, make_request, alice):
    services.decide(make_request(upstream_id="mcpr_1"), approve=True, by=alice)
    services.record_mcp_call(session=session, item=mcp_call("mcpr_1", output="first"))

    result = services.record_mcp_call(session=session, item=mcp_call("mcpr_1", output="replayed"))

    assert result is not None
    assert result.call_output == "first"
    assert AuditEvent.objects.filter(kind=Kind.MCP_CALL).count() == 1


@pytest.mark.parametrize("upstream_id", ["mcpr_unknown", None, ""])
def test_record_mcp_call_without_a_matching_request_returns_none(session, make_request, upstream_id):
    make_request(upstream_id="mcpr_1")

    assert services.record_mcp_call(session=session, item=mcp_call(upstream_id, output="x")) is None
    assert not AuditEvent.objects.filter(kind=Kind.MCP_CALL).exists()


def test_record_mcp_call_of_another_session_returns_none(make_request):
    make_request(upstream_id="mcpr_1")
    other = services.open_session(kind="relay", label="Room 7", metadata={})

    assert services.record_mcp_call(session=other, item=mcp_call("mcpr_1", output="x")) is None


# conversation -------------------------------------------------------------------------------


def test_add_conversation_line_refreshes_the_sessions_cards_after_commit(
    session, effects, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        line = services.add_conversation_line(
            session=session, role="user", text="Please refund the minibar", item_id="item_U1"
        )

    assert (line.session, line.role, line.text, line.item_id) == (
        session,
        "user",
        "Please refund the minibar",
        "item_U1",
    )
    assert effects.session_cards == [session.pk]


def test_add_conversation_line_rejects_an_unknown_role(session):
    with pytest.raises(ValueError, match="role"):
        services.add_conversation_line(session=session, role="narrator", text="Meanwhile…")
    assert not ConversationLine.objects.exists()


# tokens and servers -------------------------------------------------------------------------


def test_issue_token_stores_only_the_hash(db, alice):
    token, plaintext = services.issue_token(label="Room 1204", metadata={"room": "1204"}, by=alice)

    assert plaintext.startswith("cst_")
    assert token.token_hash == ClientToken.hash(plaintext)
    assert token.prefix == plaintext[:12]
    assert ClientToken.objects.for_plaintext(plaintext) == token
    event = AuditEvent.objects.get(kind=Kind.TOKEN_ISSUED)
    assert (event.actor, event.payload["prefix"]) == (alice, token.prefix)
    assert plaintext not in str(event.payload)
    assert token.token_hash not in str(event.payload)


def test_revoke_token_is_idempotent_and_audited_once(db, alice):
    token, plaintext = services.issue_token(label="Room 1204", metadata={})

    assert services.revoke_token(token, by=alice) is True
    first_revoked_at = token.revoked_at
    assert services.revoke_token(token, by=alice) is False

    assert token.revoked_at == first_revoked_at is not None
    assert ClientToken.objects.for_plaintext(plaintext) is None
    assert AuditEvent.objects.filter(kind=Kind.TOKEN_REVOKED).count() == 1


def test_register_mcp_server_creates_then_updates_by_label(db):
    server, created = services.register_mcp_server(
        label="hotel", url="https://mcp.hotel.example/mcp", authorization="s3cret", headers={"X-Key": "v"}
    )
    assert created

    again, created = services.register_mcp_server(
        label="hotel", url="https://mcp2.hotel.example/mcp", require_approval="never"
    )

    assert not created
    assert again.pk == server.pk
    assert (again.url, again.require_approval) == ("https://mcp2.hotel.example/mcp", "never")
    # Left out on the update: kept.
    assert (again.authorization, again.headers) == ("s3cret", {"X-Key": "v"})


def test_register_mcp_server_validates(db):
    with pytest.raises(ValidationError) as excinfo:
        services.register_mcp_server(label="not a slug!", url="nope", require_approval="sometimes")

    assert set(excinfo.value.message_dict) == {"label", "url", "require_approval"}
    assert not McpServer.objects.exists()
