"""The policy engine (approvals/policy.py): CEL conditions, the document, routing, compiling the
rules into the `mcp` tool entries OpenAI receives, and the dry run."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import cel
import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from approvals import policy, services
from approvals.models import McpServer, McpTool
from approvals.policy import ALLOW, ASK, DENY, Call, ConditionError, Policy, PolicyError

SERVERS = {"hotel", "spa"}
GROUPS = {"managers", "front-desk", "general-managers", "owners"}


def rules(*raw: dict, servers=SERVERS, groups=GROUPS) -> list[policy.Rule]:
    return policy.parse_document({"format": 1, "rules": list(raw)}, servers=servers, groups=groups)


def call(tool: str = "refund_minibar_charge", server: str = "hotel", args: object = None, **kw) -> Call:
    arguments = kw.pop("arguments", json.dumps(args if args is not None else {"amount": 20}))
    return Call(server_label=server, tool_name=tool, arguments=arguments, **kw)


REFUNDS = (
    {"label": "small-refunds", "server": "hotel", "tool": "refund_*", "when": "args.amount <= 50", "outcome": "allow"},
    {
        "label": "large-refunds",
        "server": "hotel",
        "tool": "refund_*",
        "when": 'args.amount > 100.0 && session.room.startsWith("12")',
        "outcome": "ask",
        "approvers": ["managers"],
        "quorum": 2,
        "deadline_seconds": 120,
        "on_deadline": "escalate",
        "escalations": [{"approvers": "general-managers", "deadline_seconds": 60, "on_deadline": "deny"}],
    },
    {"label": "no-doors", "tool": "unlock_door", "outcome": "deny", "reason": "Doors are opened by the front desk."},
    {"label": "lookups", "server": "hotel", "tool": "lookup_*", "outcome": "allow"},
)


# CEL ---------------------------------------------------------------------------------------------


def test_the_issue_example_compiles_and_reads_args_and_session_metadata():
    program = policy.compile_condition('args.amount > 100.0 && session.room.startsWith("12")')
    context = policy.call_context(call(args={"amount": 200}, metadata={"room": "1204"}))
    # JSON integers compare with a double literal: the engine does heterogeneous numbers.
    assert program.execute(context) is True
    assert program.execute(policy.call_context(call(args={"amount": 200}, metadata={"room": "904"}))) is False


@pytest.mark.parametrize(
    ("source", "line", "column", "words"),
    [
        ("args.amount >", 1, 14, "Syntax error"),
        ("args.amount > 100.0 &&& x", 1, 23, "Syntax error"),
        ("args.amount > 1 &&\n  sesion.room == '12'", 2, 3, "unknown name 'sesion'"),
        ("args.amount > 1 && lower(args.name) == 'x'", 1, 20, "unknown function 'lower'"),
    ],
)
def test_an_invalid_condition_is_refused_with_the_position_of_the_error(source, line, column, words):
    with pytest.raises(ConditionError) as caught:
        policy.compile_condition(source)
    error = caught.value
    assert (error.line, error.column) == (line, column)
    assert str(error).startswith(f"Line {line}, column {column}: ")
    assert words in str(error)
    # The place is shown under the line it is on.
    text_line = source.splitlines()[line - 1]
    assert f"\n    {text_line}\n    {' ' * (column - 1)}^" in str(error)


def test_macros_may_bind_their_own_variables():
    program = policy.compile_condition("args.items.exists(i, i.price > 10.0) && args.items.all(x, x.qty > 0)")
    ctx = policy.call_context(call(args={"items": [{"price": 12, "qty": 1}]}))
    assert program.execute(ctx) is True


@pytest.mark.parametrize("name", sorted(policy.CEL_FUNCTIONS))
def test_every_allowed_function_really_exists_in_the_engine(name):
    # Calling with no or wrong arguments may fail, but never with "Undefined ... function".
    now = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    samples = {
        "size": 'size("ab")',
        "contains": '"ab".contains("a")',
        "startsWith": '"ab".startsWith("a")',
        "endsWith": '"ab".endsWith("b")',
        "matches": '"ab".matches("^a")',
        "int": 'int("5")',
        "uint": "uint(5)",
        "double": "double(5)",
        "string": "string(5)",
        "bytes": 'bytes("a")',
        "timestamp": 'timestamp("2020-01-01T00:00:00Z")',
        "duration": 'duration("1h")',
        "type": "type(1)",
        "dyn": "dyn(1)",
    }
    source = samples.get(name, f"now.{name}()")
    cel.evaluate(source, {"now": now})
    policy.compile_condition(source)


def test_time_is_the_local_time_of_the_hotel(settings):
    settings.TIME_ZONE = "Europe/Rome"
    at = datetime(2026, 11, 22, 22, 30, tzinfo=UTC)  # 23:30 in Rome, a Sunday
    ctx = policy.call_context(call(at=at))
    assert ctx["time"] == {"hour": 23, "minute": 30, "weekday": 7, "day": "sunday", "date": "2026-11-22"}
    assert policy.compile_condition("time.hour >= 22 || time.hour < 6").execute(ctx) is True


# The document ------------------------------------------------------------------------------------


def test_a_document_lists_every_problem_with_where_it_is():
    with pytest.raises(PolicyError) as caught:
        rules(
            {"label": "a", "tool": "x", "outcome": "maybe"},
            {"label": "a", "tool": "x", "outcome": "allow", "approvers": ["managers"]},
            {"label": "b", "server": "nowhere", "outcome": "ask", "approvers": ["ghosts"], "quorum": 0},
            {"label": "c", "outcome": "ask", "on_deadline": "escalate"},
            {"label": "d", "outcome": "ask", "on_deadline": "deny", "escalations": [{"approvers": "managers"}]},
            {"label": "e", "outcome": "deny", "when": "args.x >", "colour": "red"},
        )
    errors = caught.value.errors
    assert "rules[0] (a).outcome: one of allow, deny, ask" in errors
    assert "rules[1] (a).label: used by an earlier rule too" in errors
    assert "rules[1] (a): approvers, quorum, deadline, escalations and requires apply to outcome ask only" in errors
    assert "rules[2] (b).server: no MCP server is registered as 'nowhere'" in errors
    assert "rules[2] (b).approvers: there is no group named 'ghosts'" in errors
    assert "rules[2] (b).quorum: a whole number from 1 to 20" in errors
    assert "rules[3] (c).on_deadline: escalate needs a next step under escalations" in errors
    assert "rules[4] (d).on_deadline: the steps after it are never reached (set it to escalate)" in errors
    assert "rules[5] (e): unknown key(s) colour" in errors
    assert any(e.startswith("rules[5] (e).when: Line 1, column 9: Syntax error") for e in errors)


def test_a_document_round_trips_through_yaml():
    parsed = rules(*REFUNDS)
    text = policy.dump_yaml(policy.document(parsed))
    again = policy.parse_document(policy.load_yaml(text), servers=SERVERS, groups=GROUPS)
    assert policy.document(again) == policy.document(parsed)
    assert again[1].steps == (
        policy.Step(("managers",), 2, 120, "escalate"),
        policy.Step(("general-managers",), 1, 60, "deny"),
    )


def test_malformed_yaml_names_line_and_column():
    with pytest.raises(PolicyError) as caught:
        policy.load_yaml("rules:\n  - label: a\n    tool: [unclosed\n")
    assert caught.value.errors[0].startswith("not valid YAML: line 4, column 1")


def test_diff_says_what_changed_in_words():
    old = policy.document(rules(*REFUNDS))
    changed = [dict(r) for r in REFUNDS[1:]]
    changed[0]["quorum"] = 3
    changed.append({"label": "spa", "server": "spa", "outcome": "allow"})
    new = policy.document(rules(*changed))
    assert policy.diff(old, new) == [
        'added rule spa: {"label": "spa", "outcome": "allow", "server": "spa", "tool": "*"}',
        "removed rule small-refunds",
        "rule large-refunds: quorum 2 → 3",
    ]


# Routing -----------------------------------------------------------------------------------------

NOTHING_REQUIRED = {"confirm": False, "reason_on_approve": False, "reason_on_deny": False, "step_up": False}


def test_first_match_wins_and_the_default_asks_any_staff(settings):
    settings.APPROVAL_TIMEOUT_SECONDS = 45
    p = Policy(rules(*REFUNDS), 7)
    small = p.route(call(args={"amount": 20}))
    assert (small.outcome, small.rule, small.version) == (ALLOW, "small-refunds", 7)
    large = p.route(call(args={"amount": 200}, metadata={"room": "1204"}))
    assert (large.outcome, large.rule) == (ASK, "large-refunds")
    assert large.plan() == {
        "stages": [
            {"groups": ["managers"], "quorum": 2, "deadline_seconds": 120, "on_deadline": "escalate"},
            {"groups": ["general-managers"], "quorum": 1, "deadline_seconds": 60, "on_deadline": "deny"},
        ],
        "requires": NOTHING_REQUIRED,
        "grants": {"scopes": ["session"], "max_minutes": 60},
    }
    # 200 in room 904: neither refund rule matches; no other rule names the tool: the default.
    default = p.route(call(args={"amount": 200}, metadata={"room": "904"}))
    assert (default.outcome, default.rule) == (ASK, "")
    assert default.plan() == {
        "stages": [{"groups": [], "quorum": 1, "deadline_seconds": 45, "on_deadline": "deny"}],
        "requires": NOTHING_REQUIRED,
        "grants": {"scopes": ["session"], "max_minutes": 60},
    }
    door = p.route(call("unlock_door", server="spa"))
    assert (door.outcome, door.rule, door.reason) == (DENY, "no-doors", "Doors are opened by the front desk.")


def test_no_policy_at_all_asks_every_tool():
    routing = Policy([], None).route(call("anything"))
    assert (routing.outcome, routing.rule, routing.version) == (ASK, "", None)


def test_a_condition_that_cannot_be_evaluated_asks_a_person_and_does_not_fall_through():
    p = Policy(
        rules(
            {"label": "by-amount", "tool": "refund_*", "when": "args.amount < 50", "outcome": "deny"},
            {"label": "anything-else", "tool": "*", "outcome": "allow"},
        ),
        3,
    )
    # No amount at all: the deny rule cannot say; the allow rule after it must not decide either.
    routing = p.route(call(args={"booking_id": "B1"}))
    assert (routing.outcome, routing.rule) == (ASK, "by-amount")
    assert "could not be evaluated" in routing.note
    garbled = p.route(call(arguments="{not json"))
    assert garbled.outcome == ASK
    not_bool = Policy(rules({"label": "n", "tool": "*", "when": "args.amount", "outcome": "allow"}), 1)
    assert not_bool.route(call(args={"amount": 5})).outcome == ASK


def test_disabled_rules_are_skipped():
    p = Policy(rules({"label": "off", "tool": "*", "outcome": "allow", "enabled": False}), 1)
    assert p.route(call()).outcome == ASK


def test_a_drifted_tool_falls_back_to_asking_and_its_deadline_never_approves():
    p = Policy(
        rules(
            {"label": "lookups", "tool": "lookup_*", "outcome": "allow"},
            {"label": "late", "tool": "late_checkout", "outcome": "ask", "on_deadline": "approve"},
        ),
        1,
    )
    assert p.route(call("lookup_booking")).outcome == ALLOW
    drifted = p.route(call("lookup_booking"), drifted=True)
    assert (drifted.outcome, drifted.rule) == (ASK, "lookups") and "definition changed" in drifted.note
    assert p.route(call("late_checkout")).steps[0].on_deadline == "approve"
    assert p.route(call("late_checkout"), drifted=True).steps[0].on_deadline == "deny"


# Compiling into what OpenAI receives -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "tool", "expected"),
    [
        ([{"label": "r", "tool": "lookup_*", "outcome": "allow"}], "lookup_booking", ALLOW),
        ([{"label": "r", "tool": "unlock_door", "outcome": "deny"}], "unlock_door", DENY),
        ([{"label": "r", "tool": "*", "when": "args.amount < 5", "outcome": "allow"}], "lookup_booking", ASK),
        (
            [
                {"label": "c", "tool": "*", "when": "args.amount > 5", "outcome": "deny"},
                {"label": "r", "tool": "*", "outcome": "deny"},
            ],
            "x",
            DENY,
        ),
        (
            [
                {"label": "c", "tool": "*", "when": "args.amount > 5", "outcome": "deny"},
                {"label": "r", "tool": "*", "outcome": "allow"},
            ],
            "x",
            ASK,
        ),
        ([{"label": "r", "server": "spa", "tool": "*", "outcome": "allow"}], "lookup_booking", ASK),
        ([], "lookup_booking", ASK),
    ],
)
def test_static_outcome_is_allow_or_deny_only_when_every_call_is(raw, tool, expected):
    assert Policy(rules(*raw), 1).static_outcome("hotel", tool) == expected


@pytest.fixture
def hotel(db):
    server, _ = services.register_mcp_server(
        label="hotel", url="http://127.0.0.1:9/mcp", authorization="tok-secret", headers={"X-API-Key": "k-secret"}
    )
    now = timezone.now()
    for name in ("lookup_booking", "refund_minibar_charge", "unlock_door", "order_room_service"):
        McpTool.objects.create(server=server, name=name, definition={"name": name}, definition_hash=name)
    McpTool.objects.create(server=server, name="old_tool", definition={}, definition_hash="o", removed_at=now)
    return server


def test_compiled_entry_never_asks_for_allowed_tools_and_leaves_out_denied_ones(hotel):
    p = Policy(rules(*REFUNDS), 1)
    entry = policy.compile_entry(hotel, p, hotel.tools.all())
    assert entry["require_approval"] == {"never": {"tool_names": ["lookup_booking"]}}
    assert entry["allowed_tools"] == ["lookup_booking", "order_room_service", "refund_minibar_charge"]
    assert (entry["authorization"], entry["headers"]) == ("tok-secret", {"X-API-Key": "k-secret"})
    shown = json.dumps(policy.masked(entry))
    assert "tok-secret" not in shown and "k-secret" not in shown and "X-API-Key" in shown


def test_a_drifted_tool_is_not_compiled_into_never(hotel):
    McpTool.objects.filter(server=hotel, name="lookup_booking").update(drifted_at=timezone.now())
    entry = policy.compile_entry(hotel, Policy(rules(*REFUNDS), 1), hotel.tools.all())
    assert entry["require_approval"] == "always"


def test_with_no_policy_every_tool_asks_and_all_are_allowed(hotel):
    (entry,) = policy.upstream_tools()
    assert entry["require_approval"] == "always" and "allowed_tools" not in entry


def test_upstream_tools_use_the_latest_version(hotel):
    Group.objects.create(name="managers")
    services.import_policies(
        "rules:\n  - {label: lookups, server: hotel, tool: 'lookup_*', outcome: allow}\n", by=None, source="test"
    )
    (entry,) = policy.upstream_tools()
    assert entry["require_approval"] == {"never": {"tool_names": ["lookup_booking"]}}
    McpServer.objects.filter(pk=hotel.pk).update(enabled=False)
    assert policy.upstream_tools() == []
