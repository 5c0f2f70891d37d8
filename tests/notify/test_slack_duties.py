"""Duties that do not mix, in Slack (issue 13): a press on Approve by a member of `compliance`,
or by the staff member who started the request's session, is refused through the same service
check as the dashboard's. The person is told why (ephemerally), the request stays pending with
no decision in the audit, and the channel's message keeps its buttons."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from approvals import services
from approvals.models import REVIEW_ONLY_GROUP, ApprovalRequest, AuditKind
from audit.models import AuditEvent
from notify.models import SlackLink, SlackMessage
from tests.notify.conftest import Hooks
from tests.plugins.slack_api import block_actions, interaction_body, sign

URL = "/notify/slack/interactions"
Status = ApprovalRequest.Status
REVIEWER_REFUSAL = "Members of compliance review decisions and never make them."
STARTER_REFUSAL = "You started this session: someone else must decide."


def press(client, *, user: str, request_id: int, action: str = "approve"):
    body = interaction_body(block_actions(user=user, request_id=request_id, action=action))
    return client.post(URL, data=body, content_type="application/x-www-form-urlencoded", headers=sign(body))


def link(user, slack_id: str) -> SlackLink:
    return SlackLink.objects.create(user=user, slack_user_id=slack_id, how=SlackLink.How.LINK)


def assert_refused(req: ApprovalRequest, slack_api, *, slack_id: str, reason: str) -> None:
    """Told why, only them; nothing decided or counted; the posted message as it was."""
    [told] = slack_api.calls_to("chat.postEphemeral")
    assert (told["channel"], told["user"], told["text"]) == ("C-FRONT", slack_id, reason)
    fresh = ApprovalRequest.objects.get(pk=req.pk)
    assert (fresh.status, fresh.decided_by_id, fresh.votes) == (Status.PENDING, None, [])
    assert not AuditEvent.objects.filter(request_id=req.pk, kind__in=[AuditKind.DECIDED, AuditKind.VOTED]).exists()
    assert slack_api.calls_to("chat.update") == []
    [message] = SlackMessage.objects.filter(request=req)
    assert (message.channel, message.shown) == ("C-FRONT", "pending")
    [post] = slack_api.calls_to("chat.postMessage")
    assert [e.get("action_id") for b in post["blocks"] if b["type"] == "actions" for e in b["elements"]][:2] == [
        "approve",
        "deny",
    ]


@pytest.fixture
def reviewer(people, groups, django_user_model, password):
    """Rita: staff, in the front desk the door rule routes to, and in compliance."""
    rita = django_user_model.objects.create_user(
        "rita", "rita@hotel.example", password, is_staff=True, first_name="Rita"
    )
    rita.groups.add(groups["front-desk"], Group.objects.get_or_create(name=REVIEW_ONLY_GROUP)[0])
    return rita


@pytest.mark.parametrize("action", ["approve", "deny"])
def test_a_compliance_member_linked_to_slack_is_refused(client, hooks, slack_channels, slack_api, reviewer, action):
    req = hooks.open()
    link(reviewer, "U-RITA")

    response = hooks.decided(lambda: press(client, user="U-RITA", request_id=req.pk, action=action), req.pk)

    assert response.status_code == 200  # Slack is answered at once; the refusal is ephemeral
    assert_refused(req, slack_api, slack_id="U-RITA", reason=REVIEWER_REFUSAL)


def test_a_compliance_member_linked_by_email_on_first_press_is_refused(
    client, hooks, slack_channels, slack_api, reviewer
):
    # Not linked yet: the press links Rita by her email, then goes through the same check.
    req = hooks.open()
    slack_api.users["U-RITA"] = "rita@hotel.example"

    hooks.decided(lambda: press(client, user="U-RITA", request_id=req.pk), req.pk)

    assert SlackLink.objects.get(slack_user_id="U-RITA").user == reviewer
    assert_refused(req, slack_api, slack_id="U-RITA", reason=REVIEWER_REFUSAL)


def test_the_staff_member_who_started_the_session_is_refused_and_a_colleague_decides(
    client, people, slack_channels, slack_api, django_capture_on_commit_callbacks
):
    # Fred (front desk, the door rule's group) started the session, as when he starts a run.
    session = services.open_session(kind="responses", label="Room 1204", metadata={}, started_by=people["fred"])
    started = Hooks(capture=django_capture_on_commit_callbacks, session=session)
    req = started.open()
    link(people["fred"], "U-FRED")

    response = started.decided(lambda: press(client, user="U-FRED", request_id=req.pk), req.pk)

    assert response.status_code == 200
    assert_refused(req, slack_api, slack_id="U-FRED", reason=STARTER_REFUSAL)

    # Fay, of the same group, decides it from the same message; the message then says so.
    link(people["fay"], "U-FAY")
    started.decided(lambda: press(client, user="U-FAY", request_id=req.pk), req.pk)
    fresh = ApprovalRequest.objects.get(pk=req.pk)
    assert (fresh.status, fresh.decided_by) == (Status.APPROVED, people["fay"])
    [update] = slack_api.calls_to("chat.update")
    assert update["text"] == "Approved by Fay."
