"""The gateway's decisions (approvals/services/gateway.py) on the real services and database:
what OpenAI receives in gateway mode, and which tools/call runs, once, or is refused and audited."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from approvals import services
from approvals.models import AuditKind, GatewayCall, GatewayToken, McpServer, RealtimeSession, Scope
from approvals.services import gateway
from audit.models import AuditEvent
from realtime_bridge import handlers
from tests.gateway.conftest import UNLOCK_ARGS, open_session


def caller_of(session: RealtimeSession, server: McpServer) -> gateway.Caller:
    found = gateway.authenticate(services.gateway_token_for(session, server))
    assert found is not None
    return found


def refusals() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(kind=AuditKind.GATEWAY_REFUSED).order_by("pk"))


def test_openai_gets_the_gateway_and_a_session_token_never_the_server_credentials(gw_server, settings):
    settings.GATEWAY_PUBLIC_URL = "https://countersign.example/"
    session = open_session()
    tools, secrets = handlers.registered_tools(session.pk)
    (entry,) = tools
    assert entry["server_url"] == "https://countersign.example/mcp-gateway/hotel/mcp"
    assert entry["authorization"].startswith("csg_") and "headers" not in entry
    assert "hotel-secret" not in str(tools) and "127.0.0.1:9" not in str(tools)
    # The same token in every session.update of the session; the relay redacts it from clients.
    assert handlers.registered_tools(session.pk)[0][0]["authorization"] == entry["authorization"]
    assert secrets == [entry["authorization"]]
    # Only its hash finds it; another session gets another token.
    token = GatewayToken.objects.get(session=session)
    assert token.token_hash == GatewayToken.hash(entry["authorization"])
    assert handlers.registered_tools(open_session().pk)[0][0]["authorization"] != entry["authorization"]
    # Without a session (nothing to bind it to) no token at all: the gateway refuses.
    assert "authorization" not in handlers.registered_tools()[0][0]


def test_an_approved_call_runs_once_then_a_replay_is_refused_and_audited(gw_server, approved):
    session = open_session()
    req = approved(session)
    caller = caller_of(session, gw_server)
    admission = gateway.admit_session_call(caller, gw_server, "unlock_door", {"room": "1204"})
    assert admission.call.request_id == req.pk and admission.call.consumed
    gateway.finish(admission.call, output='{"unlocked": true}', error=None)
    ran = GatewayCall.objects.get(pk=admission.call.pk)
    assert ran.outcome == GatewayCall.Outcome.RAN and ran.output == '{"unlocked": true}'
    assert AuditEvent.objects.filter(kind=AuditKind.GATEWAY_RAN, request_id=req.pk).count() == 1

    with pytest.raises(gateway.GatewayRefusal, match="Replay refused"):
        gateway.admit_session_call(caller, gw_server, "unlock_door", {"room": "1204"})
    (row,) = refusals()
    assert row.request_id == req.pk and row.session_id == session.pk
    assert GatewayCall.objects.filter(request=req, consumed=True).count() == 1


def test_changed_arguments_are_refused_with_what_was_approved(gw_server, approved):
    session = open_session()
    req = approved(session)
    with pytest.raises(gateway.GatewayRefusal, match="differ from the ones staff approved") as exc:
        gateway.admit_session_call(caller_of(session, gw_server), gw_server, "unlock_door", {"room": "1205"})
    assert '{"room":"1204"}' in str(exc.value)
    (row,) = refusals()
    assert row.request_id == req.pk and row.payload["tool"] == "unlock_door"
    # The approval is still unused: the right call runs.
    gateway.admit_session_call(caller_of(session, gw_server), gw_server, "unlock_door", UNLOCK_ARGS)


def test_the_same_arguments_in_another_order_are_the_same_call(gw_server, approved):
    session = open_session()
    approved(session, "unlock_door", {"room": "1204", "reason": "locked out"})
    admission = gateway.admit_session_call(
        caller_of(session, gw_server), gw_server, "unlock_door", {"reason": "locked out", "room": "1204"}
    )
    assert admission.call.consumed


def test_another_sessions_token_finds_no_approval(gw_server, approved):
    guest, other = open_session(), open_session("Room 9")
    approved(guest)
    with pytest.raises(gateway.GatewayRefusal, match="no approval for unlock_door"):
        gateway.admit_session_call(caller_of(other, gw_server), gw_server, "unlock_door", UNLOCK_ARGS)
    (row,) = refusals()
    assert row.session_id == other.pk


def test_a_token_is_refused_after_its_session_ended_after_its_ttl_and_on_another_server(gw_server, approved):
    session = open_session()
    approved(session)
    caller = caller_of(session, gw_server)
    other, _ = services.register_mcp_server(label="spa", url="http://127.0.0.1:9/spa", gateway_mode=True)
    with pytest.raises(gateway.GatewayRefusal, match="belongs to the MCP server 'hotel'"):
        gateway.admit_session_call(caller, other, "unlock_door", UNLOCK_ARGS)

    GatewayToken.objects.filter(session=session).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(gateway.GatewayRefusal, match="expired"):
        gateway.admit_session_call(caller_of(session, gw_server), gw_server, "unlock_door", UNLOCK_ARGS)

    services.close_session(session, code=1000, reason="bye")
    with pytest.raises(gateway.GatewayRefusal, match="session this token was issued for has ended"):
        gateway.admit_session_call(caller_of(session, gw_server), gw_server, "unlock_door", UNLOCK_ARGS)
    assert len(refusals()) == 3
    assert not GatewayCall.objects.filter(consumed=True).exists()


def test_unknown_or_unscoped_tokens_are_nobody(gw_server):
    assert gateway.authenticate("csg_nothing") is None
    assert gateway.authenticate("") is None
    _, realtime_only = services.issue_token(label="Room tablet", metadata={})
    assert gateway.authenticate(realtime_only) is None
    _, scoped = services.issue_token(label="Claude Desktop", metadata={}, scopes=[Scope.MCP_GATEWAY.value])
    found = gateway.authenticate(scoped)
    assert found is not None and found.client_token is not None and found.via == "Claude Desktop"


def test_a_server_that_never_asks_runs_without_a_request_but_a_denying_rule_still_refuses(gw_server):
    services.register_mcp_server(label="hotel", url=gw_server.url, require_approval="never")
    gw_server.refresh_from_db()
    session = open_session()
    admission = gateway.admit_session_call(caller_of(session, gw_server), gw_server, "get_room_status", UNLOCK_ARGS)
    assert admission.call.request_id is None and admission.call.allowed_by == "server set to never ask"
    services.import_policies(
        "rules:\n  - {label: no-doors, server: hotel, tool: unlock_door, outcome: deny, reason: Front desk only.}\n",
        by=None,
        source="test",
    )
    with pytest.raises(gateway.GatewayRefusal, match="no approval"):
        gateway.admit_session_call(caller_of(session, gw_server), gw_server, "unlock_door", UNLOCK_ARGS)
    # tools/list through the gateway hides what the policy always denies.
    assert gateway.listable(gw_server, ["unlock_door", "get_room_status"]) == {"get_room_status"}


def test_a_rule_that_allows_runs_at_once_and_is_recorded(gw_server):
    services.import_policies(
        "rules:\n  - {label: room-status, server: hotel, tool: get_room_status, outcome: allow}\n",
        by=None,
        source="test",
    )
    session = open_session()
    admission = gateway.admit_session_call(caller_of(session, gw_server), gw_server, "get_room_status", UNLOCK_ARGS)
    assert admission.call.allowed_by == "rule room-status"
    gateway.finish(admission.call, output="{}", error=None)
    event = AuditEvent.objects.get(kind=AuditKind.GATEWAY_RAN)
    assert event.session_id == session.pk and event.payload["allowed_by"] == "rule room-status"


@pytest.mark.django_db(transaction=True)
def test_two_calls_racing_for_one_approval_run_it_once(gw_server, approved):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers: the race needs PostgreSQL (CI)")
    session = open_session()
    approved(session)
    results: list[str] = []

    def call() -> None:
        try:
            gateway.admit_session_call(caller_of(session, gw_server), gw_server, "unlock_door", UNLOCK_ARGS)
            results.append("ran")
        except gateway.GatewayRefusal:
            results.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["ran", "refused", "refused", "refused"]


def test_the_case_page_shows_what_the_gateway_ran_and_refused(gw_server, approved, client, django_user_model):
    from django.contrib.auth.models import Group, Permission
    from django.urls import reverse

    session = open_session()
    req = approved(session)
    caller = caller_of(session, gw_server)
    gateway.finish(
        gateway.admit_session_call(caller, gw_server, "unlock_door", UNLOCK_ARGS).call, output="{}", error=None
    )
    with pytest.raises(gateway.GatewayRefusal):
        gateway.admit_session_call(caller, gw_server, "unlock_door", UNLOCK_ARGS)
    group, _ = Group.objects.get_or_create(name="compliance")
    group.permissions.add(*Permission.objects.filter(content_type__app_label="compliance"))
    rita = django_user_model.objects.create_user("rita", "rita@example.org", "pw")
    rita.groups.add(group)
    client.force_login(rita)
    page = client.get(reverse("review_case", args=[req.pk])).content.decode()
    assert "Enforced by the MCP gateway" in page
    assert "once, with exactly the approved arguments" in page and "Replay refused" in page
    assert 'data-kind="gateway_ran"' in page and 'data-kind="gateway_refused"' in page


def test_a_client_call_is_asked_like_any_request_and_cancelled_when_the_client_leaves(gw_server):
    from approvals.models import ApprovalRequest

    _, plaintext = services.issue_token(label="Concierge desktop", metadata={}, scopes=[Scope.MCP_GATEWAY.value])
    caller = gateway.authenticate(plaintext)
    assert caller is not None
    req = gateway.ask(caller, gw_server, "unlock_door", UNLOCK_ARGS)
    assert req.status == "pending" and req.session.kind == RealtimeSession.Kind.GATEWAY
    assert req.session.label == "Concierge desktop" and req.raw_item["via"] == "MCP gateway (Concierge desktop)"
    # The same token's next call lands in the same session.
    assert gateway.ask(caller, gw_server, "unlock_door", {"room": "7"}).session_id == req.session_id
    assert gateway.abandon(req)
    req.refresh_from_db()
    assert req.status == ApprovalRequest.Status.CANCELLED and req.decided_by_label == "MCP gateway"
    assert AuditEvent.objects.filter(request_id=req.pk, kind=AuditKind.CANCELLED, actor_label="MCP gateway").exists()
    assert not gateway.abandon(req)  # only once
    # A late answer is refused with what happened, and nothing is consumed.
    with pytest.raises(gateway.GatewayRefusal, match="cancelled: The MCP client stopped waiting"):
        gateway.admit_decided(caller, gw_server, gateway.current(req), UNLOCK_ARGS)
