"""The holding line and the spoken outcome (issue 14, realtime_bridge/holding.py).

The relay runs in-process on the real ASGI app; upstream is the scripted fake of conftest.py (which
records every frame the relay sends, so "never during an active response" can be counted), or
the simulator as a real process with the hotel's MCP server, whose record of every
response.create (GET /sim/response_creates) shows exactly what the model was told."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone

from approvals import services
from approvals.models import ApprovalRequest, ClientToken, RealtimeSession
from realtime_bridge import holding
from tests.realtime_bridge.conftest import RelayClient, db, open_relay

pytestmark = pytest.mark.django_db(transaction=True)

APPROVAL_ITEM = {
    "id": "mcpr_hold1",
    "type": "mcp_approval_request",
    "server_label": "hotel",
    "name": "unlock_door",
    "arguments": '{"room":"1204"}',
}
POLICY = """
rules:
  - label: doors-need-the-night-manager
    description: Internal policy text, never for guests.
    tool: unlock_door
    outcome: ask
    deadline_seconds: 300
"""


def _holding_creates(upstream) -> list[dict[str, Any]]:
    return [e for e in upstream.of_type("response.create") if (e.get("response") or {}).get("tool_choice") == "none"]


async def _voice(upstream, relay, modalities=("audio",)) -> None:
    await upstream.send(
        {"type": "session.updated", "event_id": "e_v", "session": {"type": "realtime", "output_modalities": modalities}}
    )
    await relay.recv_until("session.updated")


async def _ask(upstream, relay, item_id: str = "mcpr_hold1") -> ApprovalRequest:
    await upstream.send(
        {"type": "conversation.item.done", "event_id": f"ev_{item_id}", "item": APPROVAL_ITEM | {"id": item_id}}
    )
    await relay.recv_until("conversation.item.done")
    for _ in range(100):
        req = await db(ApprovalRequest.objects.filter(upstream_id=item_id).first)
        if req:
            return req
        await asyncio.sleep(0.05)
    raise AssertionError("no approval request was opened")


async def _quiet(seconds: float = 0.4) -> None:
    # Waiting for something NOT to be sent: the relay has had this long to send it.
    await asyncio.sleep(seconds)


# --- What is said ------------------------------------------------------------------------------


def test_it_says_a_wait_in_plain_words():
    assert holding.wait_words(20) == "less than a minute"
    assert holding.wait_words(70) == "about a minute"
    assert holding.wait_words(150) == "about 2 minutes"
    assert holding.wait_words(3 * 3600) == "about 3 hours"


@pytest.fixture
def make_request(client_token):
    """Requests of one relay session opened with the Room 1204 token, as the relay opens them."""
    token, _plaintext = client_token
    session = services.open_session(
        kind=RealtimeSession.Kind.RELAY, label=token.label, metadata=token.metadata, client_token=token
    )
    counter = iter(range(1, 1000))

    def make(*, name: str = "unlock_door", arguments: str = '{"room":"1204"}') -> ApprovalRequest:
        upstream_id = f"mcpr_{next(counter)}"
        item = APPROVAL_ITEM | {"id": upstream_id, "name": name, "arguments": arguments}
        req, _ = services.open_request(
            session=session,
            upstream_id=upstream_id,
            server_label="hotel",
            tool_name=name,
            arguments=arguments,
            raw_item=item,
        )
        return req

    return make


def test_it_says_how_long_a_rules_decisions_usually_take_and_something_sane_without_history(alice, make_request):
    services.import_policies(POLICY, by=None, source="t")
    assert holding.typical_wait_seconds("doors-need-the-night-manager") is None
    assert "as soon as they answer" in holding.holding_sentence(None)
    now = timezone.now()
    for minutes in (1, 3, 30):
        req = make_request()
        services.decide(req, approve=True, by=alice)
        ApprovalRequest.objects.filter(pk=req.pk).update(created_at=now - timedelta(minutes=minutes), decided_at=now)
    expired = make_request()  # the deadline is not a person deciding: not counted
    ApprovalRequest.objects.filter(pk=expired.pk).update(deadline=now - timedelta(seconds=1))
    services.expire_overdue(now=now)
    ApprovalRequest.objects.filter(pk=expired.pk).update(created_at=now - timedelta(hours=5), decided_at=now)
    other = make_request(name="get_room_status", arguments="{}")  # another rule's: not counted
    services.decide(other, approve=True, by=alice)
    ApprovalRequest.objects.filter(pk=other.pk).update(created_at=now - timedelta(hours=5), decided_at=now)
    # The median, not the mean: one slow night does not make every guest wait longer.
    assert holding.typical_wait_seconds("doors-need-the-night-manager") == 180
    assert "usually takes about 3 minutes" in holding.holding_sentence(180)
    req = make_request()
    assert "usually takes about 3 minutes" in (holding.line_for(req.session_id, req.upstream_id) or "")


def test_the_line_is_off_when_the_rule_or_the_client_token_says_so(make_request, client_token):
    services.import_policies(POLICY, by=None, source="t")
    req = make_request()
    assert "checking your request now" in (holding.line_for(req.session_id, req.upstream_id) or "")
    ClientToken.objects.filter(pk=client_token[0].pk).update(holding_line=False)
    assert holding.line_for(req.session_id, req.upstream_id) is None
    ClientToken.objects.filter(pk=client_token[0].pk).update(holding_line=True)
    services.import_policies(POLICY + "    holding_line: false\n", by=None, source="t")
    quiet = make_request()
    assert quiet.plan["holding_line"] is False
    assert holding.line_for(quiet.session_id, quiet.upstream_id) is None
    assert holding.line_for(req.session_id, req.upstream_id) is not None  # frozen when it opened


def test_a_request_a_rule_decided_at_once_has_no_holding_line(make_request):
    services.import_policies("rules:\n  - {label: no-doors, tool: unlock_door, outcome: deny}\n", by=None, source="t")
    req = make_request()
    assert req.status == "denied"
    assert holding.line_for(req.session_id, req.upstream_id) is None
    # Nor does the rule's label reach the model with the denial: a plain sentence does.
    assert req.reason == "The hotel's rules do not allow this." and "no-doors" not in req.reason


def test_a_rules_holding_line_goes_through_the_policy_document_and_back():
    from approvals import policy

    rules = policy.parse_document(
        {"format": 1, "rules": [{"label": "a", "outcome": "ask", "holding_line": False}]}, check_names=False
    )
    assert rules[0].holding_line is False
    assert policy.document(rules)["rules"][0]["holding_line"] is False
    assert "holding_line" not in policy.document([policy.Rule(label="b", outcome="ask")])["rules"][0]


# --- When it is said (the relay, against the scripted upstream) ---------------------------------


async def test_the_holding_line_is_said_once_while_the_request_waits(relay, upstream, alice):
    await _voice(upstream, relay)
    req = await _ask(upstream, relay)
    (line,) = await upstream.wait_for(lambda e: e.get("type") == "response.create")
    instructions = line["response"]["instructions"]
    assert "checking your request now" in instructions and "as soon as they answer" in instructions
    assert line["response"]["tool_choice"] == "none"
    # Its response comes and goes; the same request (seen again) never gets a second line.
    await upstream.send({"type": "response.created", "event_id": "e1", "response": {"id": "resp_h"}})
    await upstream.send({"type": "response.done", "event_id": "e2", "response": {"id": "resp_h"}})
    await upstream.send({"type": "conversation.item.done", "event_id": "e3", "item": APPROVAL_ITEM})
    await relay.recv_until("response.done")
    await _quiet()
    assert len(upstream.of_type("response.create")) == 1
    # The wait ends: the guest hears the outcome, and the line is not said again.
    await db(services.decide, req, approve=False, by=alice, guest_note="Please come to the front desk.")
    await upstream.wait_for(lambda e: e.get("type") == "response.create" and "front desk" in str(e))
    assert len(_holding_creates(upstream)) == 1


async def test_the_holding_line_waits_for_the_active_response_to_end(relay, upstream):
    await _voice(upstream, relay)
    await upstream.send({"type": "response.created", "event_id": "e1", "response": {"id": "resp_1"}})
    await _ask(upstream, relay)
    await _quiet()
    assert upstream.of_type("response.create") == []  # resp_1 is active
    await upstream.send({"type": "response.done", "event_id": "e2", "response": {"id": "resp_1"}})
    (line,) = await upstream.wait_for(lambda e: e.get("type") == "response.create")
    assert "checking your request now" in line["response"]["instructions"]


async def test_a_refused_holding_line_is_sent_again_after_the_response_that_was_active(relay, upstream):
    await _voice(upstream, relay)
    await _ask(upstream, relay)
    (line,) = await upstream.wait_for(lambda e: e.get("type") == "response.create")
    # The guest spoke at the same moment: upstream refuses ours (section 5.5).
    await upstream.send({"type": "response.created", "event_id": "e1", "response": {"id": "resp_g"}})
    await upstream.send(
        {
            "type": "error",
            "event_id": "e2",
            "error": {
                "type": "invalid_request_error",
                "code": "conversation_already_has_active_response",
                "message": "Conversation already has an active response in progress: resp_g.",
                "event_id": line["event_id"],
            },
        }
    )
    await relay.recv_until("error")
    await _quiet()
    assert len(upstream.of_type("response.create")) == 1
    await upstream.send({"type": "response.done", "event_id": "e3", "response": {"id": "resp_g"}})
    await upstream.wait_for(lambda e: e.get("type") == "response.create" and e["event_id"] != line["event_id"])
    assert len(_holding_creates(upstream)) == 2  # the same line, once heard


async def test_a_request_answered_before_the_active_response_ends_gets_no_holding_line(relay, upstream, alice):
    await _voice(upstream, relay)
    await upstream.send({"type": "response.created", "event_id": "e1", "response": {"id": "resp_1"}})
    req = await _ask(upstream, relay)
    await db(services.decide, req, approve=False, by=alice)
    await upstream.wait_for(lambda e: e.get("type") == "conversation.item.create")
    await upstream.send({"type": "response.done", "event_id": "e2", "response": {"id": "resp_1"}})
    (follow_up,) = await upstream.wait_for(lambda e: e.get("type") == "response.create")
    # The follow-up, with the plain sentence: no holding line before or after it.
    assert holding.DENIED_SENTENCE in follow_up["response"]["instructions"]
    await _quiet()
    assert _holding_creates(upstream) == []


async def test_a_text_session_gets_no_holding_line(relay, upstream):
    await _voice(upstream, relay, modalities=("text",))
    await _ask(upstream, relay)
    await _quiet()
    assert upstream.of_type("response.create") == []


async def test_a_client_token_with_the_line_off_gets_none(upstream, client_token):
    token, plaintext = client_token
    await db(ClientToken.objects.filter(pk=token.pk).update, holding_line=False)
    comm, connected, _ = await open_relay(plaintext)
    assert connected
    relay = RelayClient(comm)
    await relay.recv_until("session.created")
    await _voice(upstream, relay)
    await _ask(upstream, relay)
    await _quiet()
    assert upstream.of_type("response.create") == []
    await comm.disconnect()


# --- What the model is told (the simulator, a real process) --------------------------------------


@pytest.fixture
def hotel(simulator, hotel_mcp, settings, db):
    settings.OPENAI_BASE_URL = simulator.base_url
    settings.OPENAI_API_KEY = simulator.api_key
    services.register_mcp_server(label="hotel", url=hotel_mcp.mcp_url, headers=dict(hotel_mcp.headers))
    services.import_policies(POLICY, by=None, source="t")
    return hotel_mcp


def _sim(simulator, what: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"http://127.0.0.1:{simulator.port}/sim/{what}", headers={"Authorization": f"Bearer {simulator.api_key}"}
    )
    response.raise_for_status()
    return list(response.json()["data"])


async def _guest_asks(relay: RelayClient) -> ApprovalRequest:
    await relay.recv_until("mcp_list_tools.completed", timeout=20)
    text = 'call hotel unlock_door {"room": "1204"}'
    await relay.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
        }
    )
    await relay.send({"type": "response.create"})
    for _ in range(200):
        req = await db(ApprovalRequest.objects.filter(tool_name="unlock_door").select_related("session").first)
        if req:
            return req
        await asyncio.sleep(0.05)
    raise AssertionError("no approval request was opened")


async def _transcripts_until(relay: RelayClient, needle: str, timeout: float = 20) -> str:
    """What the guest heard (the transcripts of the model's audio), up to the first with `needle`."""
    heard = []
    async with asyncio.timeout(timeout):
        while True:
            event = await relay.recv(timeout)
            if event["type"] == "response.output_audio_transcript.done":
                heard.append(event["transcript"])
                if needle in event["transcript"]:
                    return " | ".join(heard)


async def test_the_guest_hears_the_holding_line_then_the_note_and_the_model_never_sees_internal_text(
    hotel, simulator, client_token, alice
):
    comm, connected, _ = await open_relay(client_token[1])
    assert connected
    relay = RelayClient(comm)
    req = await _guest_asks(relay)
    heard = await _transcripts_until(relay, "checking your request now")
    assert "as soon as they answer" in heard
    session = await db(RealtimeSession.objects.get, pk=req.session_id)
    await db(
        services.decide,
        req,
        approve=True,
        by=alice,
        guest_note="Welcome back, the door is open now.",
        internal_note="ID checked against the booking; guest was rude to the night porter.",
    )
    heard = await _transcripts_until(relay, "Welcome back")
    assert heard.startswith("All done.")  # the tool ran, then the model said the note
    await comm.disconnect()

    told = [c for c in _sim(simulator, "response_creates") if c["session_id"] == session.upstream_session_id]
    instructions = [c["instructions"] or "" for c in told]
    assert not any(c["while_active"] for c in told)  # never while a response was active
    assert sum("checking your request now" in i for i in instructions) == 1
    assert any("Welcome back, the door is open now." in i for i in instructions)
    answers = [a for a in _sim(simulator, "approvals") if a["approval_request_id"] == req.upstream_id]
    assert [a["reason"] for a in answers] == ["Welcome back, the door is open now."]
    everything = repr(told) + repr(answers)
    for secret in ("ID checked", "rude", "doors-need-the-night-manager", "Internal policy text"):
        assert secret not in everything


async def test_without_a_note_the_guest_hears_a_plain_sentence(hotel, simulator, client_token, alice):
    comm, connected, _ = await open_relay(client_token[1])
    assert connected
    relay = RelayClient(comm)
    req = await _guest_asks(relay)
    await _transcripts_until(relay, "checking your request now")
    await db(services.decide, req, approve=False, by=alice, internal_note="Not on the booking.")
    heard = await _transcripts_until(relay, holding.DENIED_SENTENCE)
    assert "Not on the booking" not in heard
    await comm.disconnect()
    session = await db(RealtimeSession.objects.get, pk=req.session_id)
    told = [c for c in _sim(simulator, "response_creates") if c["session_id"] == session.upstream_session_id]
    assert "Not on the booking" not in repr(told) and "doors-need-the-night-manager" not in repr(told)


async def test_a_refused_follow_up_is_sent_again_with_the_same_words(relay, upstream, alice):
    await _voice(upstream, relay, modalities=("text",))  # no holding line in the way
    req = await _ask(upstream, relay)
    await db(services.decide, req, approve=False, by=alice, guest_note="Please call the front desk.")
    (first,) = await upstream.wait_for(lambda e: e.get("type") == "response.create")
    assert "Please call the front desk." in first["response"]["instructions"]
    # The guest's own response got there first: ours is refused (its response.created never comes).
    refused = {
        "type": "invalid_request_error",
        "code": "conversation_already_has_active_response",
        "message": "Conversation already has an active response in progress: resp_g.",
        "event_id": first["event_id"],
    }
    await upstream.send({"type": "error", "event_id": "e2", "error": refused})
    await upstream.send({"type": "response.done", "event_id": "e3", "response": {"id": "resp_g"}})
    await upstream.wait_for(lambda e: e.get("type") == "response.create" and e["event_id"] != first["event_id"])
    second = upstream.of_type("response.create")[-1]
    assert second["response"]["instructions"] == first["response"]["instructions"]
