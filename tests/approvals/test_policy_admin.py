"""The policy admin: rules edited in the admin become policy versions (with audit rows), refused
changes save nothing, the dry run page replays a draft, and the server page shows what OpenAI
receives with the secrets masked."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import escape

from approvals import policy, services
from approvals.models import ApprovalRequest, AuditKind, McpServer, McpTool, PolicyRule, PolicyVersion
from audit.models import AuditEvent

AUTH_SECRET = "sk-AUTH-SECRET-9f8e7d"
HEADER_SECRET = "HEADER-SECRET-1a2b3c"

POLICY = """
rules:
  - label: no-doors
    tool: unlock_door
    outcome: deny
    reason: Doors are opened by the front desk in person.
  - label: refunds
    server: hotel
    tool: refund_*
    outcome: ask
    approvers: [front-desk]
    deadline_seconds: 60
    on_deadline: escalate
    escalations:
      - approvers: managers
        quorum: 2
        deadline_seconds: 120
        on_deadline: deny
"""

ADD_URL = reverse("admin:approvals_policyrule_add")
LIST_URL = reverse("admin:approvals_policyrule_changelist")
DRY_RUN_URL = reverse("admin:approvals_policyrule_dry_run")


@pytest.fixture
def groups(db) -> dict[str, Group]:
    return {name: Group.objects.create(name=name) for name in ("front-desk", "managers")}


@pytest.fixture
def server(db) -> McpServer:
    server, _ = services.register_mcp_server(
        label="hotel",
        url="https://mcp.hotel.example/mcp",
        authorization=AUTH_SECRET,
        headers={"X-Api-Key": HEADER_SECRET},
    )
    return server


@pytest.fixture
def root_client(client, admin_user, groups, server):
    client.force_login(admin_user)
    return client


def rule_form(steps: list[dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
    """The POST of the rule's change form, with its escalation steps' inline formset."""
    data: dict[str, Any] = {
        "position": "10",
        "label": "refunds",
        "description": "",
        "enabled": "on",
        "server_label": "hotel",
        "tool_pattern": "refund_*",
        "condition": "",
        "outcome": "ask",
        "reason": "",
        "quorum": "1",
        "deadline_seconds": "",
        "on_deadline": "deny",
        "grant_scopes": "session",
        "grant_max_minutes": "60",
    }
    data.update(overrides)
    steps = steps or []
    data.update(
        {
            "escalations-TOTAL_FORMS": str(len(steps)),
            "escalations-INITIAL_FORMS": str(sum(1 for s in steps if s.get("id"))),
            "escalations-MIN_NUM_FORMS": "0",
            "escalations-MAX_NUM_FORMS": "1000",
        }
    )
    for index, step in enumerate(steps):
        for key, value in {"position": str(index + 1), "quorum": "1", "deadline_seconds": "", **step}.items():
            data[f"escalations-{index}-{key}"] = value
    return {key: value for key, value in data.items() if value is not None}


def versions() -> list[tuple[int, str, list[str]]]:
    return list(PolicyVersion.objects.order_by("number").values_list("number", "source", "changes"))


def policy_audit() -> list[dict[str, Any]]:
    return [e.payload for e in AuditEvent.objects.filter(kind=AuditKind.POLICY_CHANGED).order_by("seq")]


def html(response) -> str:
    return response.content.decode()


# Rules -------------------------------------------------------------------------------------


def test_adding_a_rule_publishes_a_version_with_an_audit_row(root_client, groups, admin_user):
    response = root_client.post(
        ADD_URL,
        rule_form(
            groups=[groups["front-desk"].pk],
            deadline_seconds="60",
            on_deadline="escalate",
            steps=[
                {"groups": [groups["managers"].pk], "quorum": "2", "deadline_seconds": "120", "on_deadline": "deny"}
            ],
        ),
    )

    assert response.status_code == 302
    [(number, source, changes)] = versions()
    assert (number, source) == (1, "admin: added rule refunds")
    assert len(changes) == 1 and changes[0].startswith("added rule refunds")
    rule = policy.current().rules[0]
    assert rule.steps == (
        policy.Step(("front-desk",), 1, 60, "escalate"),
        policy.Step(("managers",), 2, 120, "deny"),
    )
    [payload] = policy_audit()
    assert payload == {"version": 1, "source": "admin: added rule refunds", "changes": changes}
    assert AuditEvent.objects.get(kind=AuditKind.POLICY_CHANGED).actor == admin_user


def test_changing_a_rule_publishes_what_changed(root_client):
    services.import_policies(POLICY, by=None, source="test")
    rule = PolicyRule.objects.get(label="no-doors")

    response = root_client.post(
        reverse("admin:approvals_policyrule_change", args=[rule.pk]),
        rule_form(
            position=str(rule.position),
            label="no-doors",
            server_label="",
            tool_pattern="unlock_door",
            condition='session.room == "1204"',
            outcome="deny",
            reason="Doors are opened by the front desk in person.",
        ),
    )

    assert response.status_code == 302
    number, source, changes = versions()[-1]
    assert (number, source) == (2, "admin: changed rule no-doors")
    assert changes == ['rule no-doors: when null → "session.room == \\"1204\\""']
    assert policy_audit()[-1]["changes"] == changes
    assert PolicyRule.objects.get(label="refunds").escalations.count() == 1  # the other rule is untouched


def test_saving_without_a_change_makes_no_version(root_client):
    services.import_policies(POLICY, by=None, source="test")
    rule = PolicyRule.objects.get(label="no-doors")

    response = root_client.post(
        reverse("admin:approvals_policyrule_change", args=[rule.pk]),
        rule_form(
            position=str(rule.position),
            label="no-doors",
            server_label="",
            tool_pattern="unlock_door",
            outcome="deny",
            reason=rule.reason,
        ),
        follow=True,
    )

    assert "The policy did not change" in html(response)
    assert [n for n, *_ in versions()] == [1]


def test_deleting_a_rule_publishes_a_version(root_client):
    services.import_policies(POLICY, by=None, source="test")
    rule = PolicyRule.objects.get(label="no-doors")

    response = root_client.post(reverse("admin:approvals_policyrule_delete", args=[rule.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert versions()[-1] == (2, "admin: deleted rule no-doors", ["removed rule no-doors"])
    assert policy_audit()[-1]["changes"] == ["removed rule no-doors"]
    assert [r.label for r in policy.current().rules] == ["refunds"]


def test_deleting_several_rules_publishes_one_version(root_client):
    services.import_policies(POLICY, by=None, source="test")

    response = root_client.post(
        LIST_URL,
        {
            "action": "delete_selected",
            "_selected_action": list(PolicyRule.objects.values_list("pk", flat=True)),
            "post": "yes",
        },
    )

    assert response.status_code == 302
    assert versions()[-1] == (
        2,
        "admin: deleted rules no-doors, refunds",
        ["removed rule no-doors", "removed rule refunds"],
    )
    assert not PolicyRule.objects.exists()


def test_reordering_in_the_list_publishes_one_version(root_client):
    services.import_policies(POLICY, by=None, source="test")
    doors, refunds = PolicyRule.objects.order_by("position")
    data = {
        "form-TOTAL_FORMS": "2",
        "form-INITIAL_FORMS": "2",
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
        "form-0-id": str(doors.pk),
        "form-0-position": "30",
        "form-0-enabled": "on",
        "form-1-id": str(refunds.pk),
        "form-1-position": "5",
        "_save": "Save",
    }

    response = root_client.post(LIST_URL, data)

    assert response.status_code == 302
    assert len(versions()) == 2
    _number, source, changes = versions()[-1]
    assert source.startswith("admin: rule list")
    assert "rule refunds: enabled null → false" in changes
    assert "order: refunds, no-doors" in changes
    assert [(r.label, r.enabled) for r in policy.current().rules] == [("refunds", False), ("no-doors", True)]


def test_an_invalid_condition_is_refused_with_its_line_and_column(root_client):
    response = root_client.post(ADD_URL, rule_form(condition="args.amount > 100 &&\n  bogus.x == 1"))

    assert response.status_code == 200
    page = html(response)
    assert "Line 2, column 3: unknown name" in page
    assert "bogus.x == 1\n      ^" in page  # the caret under the place, newlines kept
    assert "white-space: pre-wrap" in page
    assert not PolicyRule.objects.exists()
    assert not PolicyVersion.objects.exists()


def test_a_syntax_error_in_a_condition_names_its_position(root_client):
    response = root_client.post(ADD_URL, rule_form(condition="args.amount >"))

    assert response.status_code == 200
    assert "Line 1, column 14: Syntax error" in html(response)
    assert not PolicyRule.objects.exists()


def test_escalate_without_a_next_step_is_refused(root_client):
    response = root_client.post(ADD_URL, rule_form(on_deadline="escalate"))

    assert response.status_code == 200
    assert "Escalate needs a next step" in html(response)
    assert not PolicyRule.objects.exists()
    assert not PolicyVersion.objects.exists()


def test_steps_after_a_final_deadline_are_refused(root_client, groups):
    pk = groups["managers"].pk
    response = root_client.post(
        ADD_URL,
        rule_form(
            on_deadline="escalate",
            steps=[
                {"groups": [pk], "on_deadline": "approve"},
                {"groups": [pk], "on_deadline": "deny"},
            ],
        ),
    )

    assert response.status_code == 200
    assert "Escalation step 1 ends with approve: the steps after it are never reached" in html(response)
    assert not PolicyRule.objects.exists()


def test_an_allow_rule_may_not_name_approvers(root_client, groups):
    response = root_client.post(ADD_URL, rule_form(outcome="allow", groups=[groups["managers"].pk]))

    assert response.status_code == 200
    assert "Who may decide applies to outcome ask only" in html(response)
    assert not PolicyRule.objects.exists()


def test_the_whole_policy_is_checked_before_saving(root_client):
    services.import_policies(POLICY, by=None, source="test")
    # The registry lost a server that a rule names: the set is no longer valid as a whole.
    PolicyRule.objects.filter(label="no-doors").update(server_label="gone")

    response = root_client.post(ADD_URL, rule_form(label="spa", tool_pattern="book_spa", position="50"))

    assert response.status_code == 200
    assert "rules[0] (no-doors).server: no MCP server is registered as &#x27;gone&#x27;" in html(response)
    assert not PolicyRule.objects.filter(label="spa").exists()
    assert len(versions()) == 1


def test_a_refused_publish_rolls_the_save_back(root_client, monkeypatch):
    # A race: the form's check passed, then publish_policy refused the rows as a whole.
    def refuse(**kwargs: Any) -> None:
        raise policy.PolicyError(["rules[0] (refunds).approvers: there is no group named 'gone'"])

    monkeypatch.setattr(services, "publish_policy", refuse)

    response = root_client.post(ADD_URL, rule_form(), follow=True)

    page = html(response)
    assert "Nothing was saved" in page
    assert "there is no group named &#x27;gone&#x27;" in page
    assert "was added successfully" not in page
    assert not PolicyRule.objects.exists()


def test_the_rule_list_says_each_rule_in_plain_words_and_the_default(root_client, settings):
    settings.APPROVAL_TIMEOUT_SECONDS = 45
    services.import_policies(POLICY, by=None, source="test")

    page = html(root_client.get(LIST_URL))

    assert "deny at once: Doors are opened by the front desk in person." in page
    assert (
        "ask front-desk within 60 s, then escalate to 2 distinct approvers from managers within 120 s, then deny"
        in page
    )
    assert "ask any staff member within 45 s (APPROVAL_TIMEOUT_SECONDS), then deny" in page
    assert DRY_RUN_URL in page
    assert "policy version 1" in page


def test_a_catch_all_last_rule_replaces_the_default(root_client):
    services.import_policies(POLICY + "  - label: everything-else\n    outcome: deny\n", by=None, source="test")

    page = html(root_client.get(LIST_URL))

    assert "never reached: rule everything-else matches every call" in page
    assert "APPROVAL_TIMEOUT_SECONDS), then deny" not in page


def test_policy_versions_show_who_what_and_the_document(root_client, admin_user):
    services.import_policies(POLICY, by=admin_user, source="import policy.yaml")
    services.import_policies(POLICY.replace("deadline_seconds: 60", "deadline_seconds: 90"), by=None, source="edit")
    version = PolicyVersion.objects.get(number=2)

    listing = html(root_client.get(reverse("admin:approvals_policyversion_changelist")))
    detail = html(root_client.get(reverse("admin:approvals_policyversion_change", args=[version.pk])))

    assert "import policy.yaml" in listing and "root" in listing
    assert "rule refunds: deadline_seconds 60 → 90" in detail
    assert "deadline_seconds: 90" in detail and "format: 1" in detail
    assert root_client.post(reverse("admin:approvals_policyversion_add"), {}).status_code == 403


def test_the_rule_admin_is_closed_to_staff_without_the_permission(client, alice, server):
    client.force_login(alice)

    assert client.get(LIST_URL).status_code == 403
    assert client.get(DRY_RUN_URL).status_code == 403
    assert client.post(DRY_RUN_URL, {"draft": "rules: []", "days": "7", "_apply": "1"}).status_code == 403
    assert not PolicyVersion.objects.exists()


def test_changing_rules_without_deleting_them_does_not_allow_applying_a_draft(client, alice, server):
    alice.user_permissions.add(Permission.objects.get(codename="change_policyrule"))
    client.force_login(alice)

    assert client.get(DRY_RUN_URL).status_code == 200
    assert client.post(DRY_RUN_URL, {"draft": "rules: []", "days": "7", "_apply": "1"}).status_code == 403
    assert not PolicyVersion.objects.exists()


def test_the_rule_permissions_are_enough_to_edit_its_escalation_steps(client, alice, groups, server):
    alice.user_permissions.add(*Permission.objects.filter(codename__in=["add_policyrule", "change_policyrule"]))
    client.force_login(alice)

    response = client.post(
        ADD_URL,
        rule_form(on_deadline="escalate", steps=[{"groups": [groups["managers"].pk], "on_deadline": "deny"}]),
    )

    assert response.status_code == 302
    assert PolicyRule.objects.get().escalations.count() == 1
    assert PolicyVersion.objects.get().created_by == alice


# Dry run -----------------------------------------------------------------------------------

DRAFT = """
rules:
  - label: small-refunds
    server: hotel
    tool: refund_*
    when: args.amount < 200 && session.room == "1204"
    outcome: allow
"""


def test_the_dry_run_page_starts_from_the_current_policy(root_client):
    services.import_policies(POLICY, by=None, source="test")

    page = html(root_client.get(DRY_RUN_URL))

    assert "label: no-doors" in page and "on_deadline: escalate" in page
    assert 'name="days" value="7"' in page
    assert re.search(r'<input type="checkbox" name="only_changed"[^>]* checked', page)


def test_the_dry_run_shows_the_requests_the_draft_decides_differently(root_client, make_request):
    refund = make_request(name="refund_minibar_charge", arguments='{"amount": 120}')
    spa = make_request(name="book_spa", arguments='{"time": "10:00"}')

    response = root_client.post(DRY_RUN_URL, {"draft": DRAFT, "days": "7", "only_changed": "on", "_dry_run": "1"})

    page = html(response)
    assert "1 of 2 requests</strong>" in page
    assert '<tr class="changed">' in page
    assert "allow at once (rule small-refunds)" in page
    assert "ask any staff (the default)" in page
    assert "refund_minibar_charge" in page and "book_spa" not in page  # only the changed one
    assert (refund.status, spa.status) == ("pending", "pending")
    assert not PolicyVersion.objects.exists()  # a dry run changes nothing

    everything = html(root_client.post(DRY_RUN_URL, {"draft": DRAFT, "days": "7", "_dry_run": "1"}))

    assert "book_spa" in everything and '<tr class="same">' in everything


def test_the_dry_run_only_replays_the_chosen_days(root_client, make_request):
    req = make_request(name="refund_minibar_charge", arguments='{"amount": 120}')
    ApprovalRequest.objects.filter(pk=req.pk).update(created_at=req.created_at - timedelta(days=3))

    page = html(root_client.post(DRY_RUN_URL, {"draft": DRAFT, "days": "2", "_dry_run": "1"}))

    assert "0 of 0 requests</strong>" in page


def test_a_malformed_draft_shows_the_yaml_error_with_its_position(root_client):
    services.import_policies(POLICY, by=None, source="test")

    response = root_client.post(
        DRY_RUN_URL, {"draft": "rules:\n  - label: a\n   outcome: [", "days": "7", "_dry_run": "1"}
    )

    page = html(response)
    assert "not valid YAML: line 3, column 4" in page
    assert "Nothing was changed" in page
    assert len(versions()) == 1


def test_an_invalid_condition_in_a_draft_is_shown_with_its_position(root_client):
    draft = DRAFT.replace("args.amount < 200", "args.amount <")

    page = html(root_client.post(DRY_RUN_URL, {"draft": draft, "days": "7", "_apply": "1"}))

    assert "rules[0] (small-refunds).when: Line 1, column 15: Syntax error" in page
    assert not PolicyVersion.objects.exists()
    assert not PolicyRule.objects.exists()


def test_applying_a_draft_makes_a_version_and_goes_to_the_rule_list(root_client, admin_user):
    services.import_policies(POLICY, by=None, source="test")

    response = root_client.post(
        DRY_RUN_URL, {"draft": DRAFT, "days": "7", "base_version": "1", "_apply": "1"}, follow=True
    )

    assert response.redirect_chain == [(LIST_URL, 302)]
    assert "Applied the draft as" in html(response) and "policy version 2" in html(response)
    version = PolicyVersion.objects.get(number=2)
    assert (version.source, version.created_by) == ("admin dry run", admin_user)
    assert list(PolicyRule.objects.values_list("label", flat=True)) == ["small-refunds"]
    assert policy_audit()[-1]["source"] == "admin dry run"


def test_applying_a_draft_of_an_older_version_asks_again(root_client):
    services.import_policies(POLICY, by=None, source="test")
    services.import_policies(POLICY.replace("60", "90"), by=None, source="someone else")

    page = html(root_client.post(DRY_RUN_URL, {"draft": DRAFT, "days": "7", "base_version": "1", "_apply": "1"}))

    assert "The policy changed since this draft was loaded" in page
    assert 'name="base_version" value="2"' in page
    assert len(versions()) == 2

    response = root_client.post(DRY_RUN_URL, {"draft": DRAFT, "days": "7", "base_version": "2", "_apply": "1"})

    assert response.status_code == 302
    assert len(versions()) == 3


# The server page ---------------------------------------------------------------------------


def test_the_server_page_shows_the_compiled_entry_with_secrets_masked(root_client, server):
    for name in ("refund_minibar_charge", "unlock_door", "book_spa"):
        McpTool.objects.create(server=server, name=name, definition={"name": name}, definition_hash=name)
    services.import_policies(POLICY + "  - label: spa\n    tool: book_spa\n    outcome: allow\n", by=None, source="t")

    page = html(root_client.get(reverse("admin:approvals_mcpserver_change", args=[server.pk])))

    assert AUTH_SECRET not in page and HEADER_SECRET not in page
    entry = policy.masked(policy.compile_entry(server, policy.current(), server.tools.all()))
    assert entry["allowed_tools"] == ["book_spa", "refund_minibar_charge"]
    assert entry["require_approval"] == {"never": {"tool_names": ["book_spa"]}}
    assert entry["headers"] == {"X-Api-Key": "••••••••"}
    assert escape(json.dumps(entry, indent=2, ensure_ascii=False)) in page
    assert "tools missing from <code>allowed_tools</code> are always denied" in page


def test_a_server_named_by_rules_cannot_be_deleted(admin_client):
    server, _ = services.register_mcp_server(label="spa", url="https://spa.example/mcp")
    services.import_policies("rules:\n  - {label: spa-all, server: spa, outcome: allow}\n", by=None, source="t")
    with pytest.raises(ValidationError, match="spa-all"):
        services.delete_mcp_server(server, by=None)
    page = admin_client.get(f"/admin/approvals/mcpserver/{server.pk}/delete/", follow=True)
    assert "change or delete them before deleting the server" in page.content.decode()
    assert McpServer.objects.filter(pk=server.pk).exists()


def test_a_rule_says_what_a_decision_needs_in_the_admin(root_client):
    response = root_client.post(ADD_URL, rule_form(require_confirm="on", require_step_up="on"))

    assert response.status_code == 302
    (rule,) = policy.current().rules
    assert rule.requires == policy.Requires(confirm=True, step_up=True)
    [(_number, _source, changes)] = versions()
    assert '"requires": {"confirm": true, "step_up": true}' in changes[0]
    assert "requires a confirmation, a passkey step-up" in html(root_client.get("/admin/approvals/policyrule/"))


def test_an_allow_rule_may_not_require_anything_of_a_decision(root_client):
    response = root_client.post(ADD_URL, rule_form(outcome="allow", require_reason_on_deny="on"))

    assert response.status_code == 200
    assert "What a decision needs applies to outcome ask only" in html(response)
    assert not PolicyRule.objects.exists()
