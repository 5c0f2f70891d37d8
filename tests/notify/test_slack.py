"""Slack: routed requests posted with buttons, presses signed as Slack signs them and decided
through approvals.services with its checks, messages updated wherever the decision was made."""

from __future__ import annotations

import time

import pytest

from approvals.models import ApprovalRequest
from notify import slack
from notify.models import SlackLink, SlackMessage
from tests.plugins.slack_api import block_actions, interaction_body, sign

URL = "/notify/slack/interactions"
Status = ApprovalRequest.Status


@pytest.fixture
def posted(hooks, slack_channels, slack_api):
    """A door request, posted to the front desk's channel."""
    return hooks.open()


def press(client, *, user: str, request_id: int, action: str = "approve", **sign_options):
    body = interaction_body(block_actions(user=user, request_id=request_id, action=action))
    headers = sign(body, **sign_options)
    return client.post(
        URL,
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers=headers,
    )


def link(user, slack_id: str) -> SlackLink:
    return SlackLink.objects.create(user=user, slack_user_id=slack_id, how=SlackLink.How.LINK)


def button_values(blocks: list[dict]) -> list[tuple[str, str]]:
    actions = [b for b in blocks if b["type"] == "actions"]
    return [(e.get("action_id", "open"), e.get("value", e.get("url"))) for a in actions for e in a["elements"]]


def test_a_routed_request_is_posted_to_its_groups_channel_with_buttons(posted, slack_api, people):
    link(people["fred"], "U-FRED")
    [call] = slack_api.calls_to("chat.postMessage")
    assert call["channel"] == "C-FRONT"
    assert call["text"] == "Approval needed: Unlock door for Room 1204"
    assert button_values(call["blocks"]) == [
        ("approve", str(posted.pk)),
        ("deny", str(posted.pk)),
        ("open", f"https://countersign.hotel.example/?request={posted.pk}"),
    ]
    message = SlackMessage.objects.get(request=posted)
    assert (message.channel, message.ts, message.shown) == ("C-FRONT", "1700000001.000100", "pending")


def test_a_repeated_post_task_posts_nothing_twice(posted, slack_api):
    assert slack.post_request(posted.pk) == 0
    assert len(slack_api.calls_to("chat.postMessage")) == 1


def test_a_signed_press_by_a_linked_member_approves_and_the_message_says_who(client, hooks, posted, people, slack_api):
    link(people["fred"], "U-FRED")
    response = hooks.decided(lambda: press(client, user="U-FRED", request_id=posted.pk), posted.pk)
    assert response.status_code == 200
    posted.refresh_from_db()
    assert (posted.status, posted.decided_by, posted.reason) == (Status.APPROVED, people["fred"], "")
    [update] = slack_api.calls_to("chat.update")
    assert (update["channel"], update["ts"], update["text"]) == ("C-FRONT", "1700000001.000100", "Approved by Fred.")
    assert button_values(update["blocks"]) == []
    assert slack_api.calls_to("chat.postEphemeral") == []


def test_a_bad_signature_is_refused_and_changes_nothing(client, posted, people, slack_api):
    link(people["fred"], "U-FRED")
    response = press(client, user="U-FRED", request_id=posted.pk, secret="not-the-secret")
    assert response.status_code == 401
    posted.refresh_from_db()
    assert posted.status == Status.PENDING
    assert [name for name, _ in slack_api.calls] == ["chat.postMessage"]


def test_a_stale_timestamp_is_refused_and_changes_nothing(client, posted, people, slack_api):
    link(people["fred"], "U-FRED")
    response = press(client, user="U-FRED", request_id=posted.pk, timestamp=int(time.time()) - 301)
    assert response.status_code == 400
    posted.refresh_from_db()
    assert posted.status == Status.PENDING


def test_an_unlinked_slack_user_with_a_staff_members_email_is_linked_then_decides(
    client, hooks, posted, people, slack_api
):
    slack_api.users["U-FAY"] = "FAY@hotel.example"
    response = hooks.decided(lambda: press(client, user="U-FAY", request_id=posted.pk, action="deny"), posted.pk)
    assert response.status_code == 200
    assert SlackLink.objects.get(slack_user_id="U-FAY").user == people["fay"]
    posted.refresh_from_db()
    assert (posted.status, posted.decided_by) == (Status.DENIED, people["fay"])
    assert slack_api.calls_to("chat.update")[-1]["text"] == "Denied by Fay."


def test_an_unlinked_slack_user_is_refused_and_told_how_to_link(client, posted, slack_api):
    slack_api.users["U-GUEST"] = "someone@elsewhere.example"
    assert press(client, user="U-GUEST", request_id=posted.pk).status_code == 200
    posted.refresh_from_db()
    assert posted.status == Status.PENDING
    assert not SlackLink.objects.exists()
    [told] = slack_api.calls_to("chat.postEphemeral")
    assert (told["channel"], told["user"]) == ("C-FRONT", "U-GUEST")
    assert "https://countersign.hotel.example/notify/slack/link/" in told["text"]


def test_the_link_flow_links_the_logged_in_person(client, posted, people, slack_api):
    slack_api.users["U-GUEST"] = "fred.private@elsewhere.example"
    press(client, user="U-GUEST", request_id=posted.pk)
    url = slack_api.calls_to("chat.postEphemeral")[0]["text"].split("open ")[1].split(" ")[0]
    path = url.removeprefix("https://countersign.hotel.example")
    client.force_login(people["fred"])
    assert b"U-GUEST" in client.get(path).content
    assert client.post(path).status_code == 302
    assert SlackLink.objects.get(slack_user_id="U-GUEST").user == people["fred"]


def test_a_member_of_another_group_gets_the_services_refusal(client, posted, people, slack_api):
    link(people["mia"], "U-MIA")
    assert press(client, user="U-MIA", request_id=posted.pk).status_code == 200
    posted.refresh_from_db()
    assert posted.status == Status.PENDING
    [told] = slack_api.calls_to("chat.postEphemeral")
    assert told["text"] == "Only members of front-desk may decide this request."
    assert slack_api.calls_to("chat.update") == []


def test_a_press_on_a_decided_request_is_told_who_decided(client, hooks, posted, people, slack_api):
    link(people["fred"], "U-FRED")
    link(people["fay"], "U-FAY")
    hooks.decided(lambda: press(client, user="U-FRED", request_id=posted.pk), posted.pk)
    press(client, user="U-FAY", request_id=posted.pk, action="deny")
    [told] = slack_api.calls_to("chat.postEphemeral")
    assert told["text"] == "This request was already approved by Fred."


def test_a_decision_on_the_dashboard_updates_the_slack_message(client, hooks, posted, people, slack_api):
    client.force_login(people["fay"])
    response = hooks.decided(
        lambda: client.post(f"/requests/{posted.pk}/decide/", {"decision": "deny", "reason": "Not in person"}),
        posted.pk,
    )
    assert response.status_code == 200
    [update] = slack_api.calls_to("chat.update")
    assert update["text"] == "Denied by Fay."
    # A repeated update task calls Slack for nothing.
    assert slack.update_messages(posted.pk) == 0


def test_an_escalation_posts_to_the_next_channel_and_marks_the_first(hooks, posted, slack_api):
    hooks.escalate(posted)
    posts = slack_api.calls_to("chat.postMessage")
    assert [p["channel"] for p in posts] == ["C-FRONT", "C-MGR"]
    [update] = slack_api.calls_to("chat.update")
    assert (update["channel"], update["text"]) == ("C-FRONT", "Escalated to managers.")
