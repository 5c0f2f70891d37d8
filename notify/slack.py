"""Slack: each routed request in its group's channel with Approve and Deny buttons, the buttons'
answers decided through approvals.services, and the message kept up to date with the outcome.

Reference: https://api.slack.com/authentication/verifying-requests-from-slack
Reference: https://api.slack.com/reference/interaction-payloads/block-actions
Reference: https://api.slack.com/methods/chat.postMessage (chat.update, chat.postEphemeral, users.info)
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction

from approvals import services as approvals_services
from approvals.models import ApprovalRequest
from notify import services
from notify.models import SlackChannel, SlackLink, SlackMessage

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# Slack's own limit: a request signed longer ago than this may be a replay.
MAX_AGE_SECONDS = 300
API_TIMEOUT_SECONDS = 10
APPROVE = "approve"
DENY = "deny"


class SignatureError(Exception):
    """The body is not signed with the app's signing secret (answer 401)."""


class StaleRequest(Exception):
    """The timestamp is missing, malformed or more than five minutes off (answer 400)."""


class SlackError(Exception):
    """Slack answered ok: false (a setting to fix, not worth retrying)."""


class SlackUnavailable(Exception):
    """Slack could not be reached or asked to slow down: worth retrying."""


def enabled() -> bool:
    return bool(settings.SLACK_BOT_TOKEN)


def verify(*, body: bytes, timestamp: str, signature: str, now: float) -> None:
    """Check Slack's v0 signature (HMAC-SHA256 of "v0:{timestamp}:{body}" with the signing
    secret) and that the timestamp is within five minutes of `now`. Raises StaleRequest or
    SignatureError."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise StaleRequest("No valid X-Slack-Request-Timestamp.") from None
    if abs(now - sent_at) > MAX_AGE_SECONDS:
        raise StaleRequest("The request is more than five minutes old.")
    secret = settings.SLACK_SIGNING_SECRET
    expected = "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    if not secret or not hmac.compare_digest(expected, signature):
        raise SignatureError("The signature does not match.")


def api(method: str, *, form: bool = False, **fields: Any) -> dict[str, Any]:
    """Call a Web API method with the bot token. Raises SlackUnavailable (retry) or SlackError."""
    url = f"{settings.SLACK_API_URL}/{method}"
    headers = {"Authorization": f"Bearer {settings.SLACK_BOT_TOKEN}"}
    try:
        # users.info takes form fields only; the chat methods take JSON.
        if form:
            response = httpx.post(url, data=fields, headers=headers, timeout=API_TIMEOUT_SECONDS)
        else:
            response = httpx.post(url, json=fields, headers=headers, timeout=API_TIMEOUT_SECONDS)
    except httpx.HTTPError as e:
        raise SlackUnavailable(f"{method}: {e}") from e
    if response.status_code == 429 or response.status_code >= 500:
        raise SlackUnavailable(f"{method}: HTTP {response.status_code}")
    data: dict[str, Any] = response.json()
    if not data.get("ok"):
        raise SlackError(f"{method}: {data.get('error', 'unknown error')}")
    return data


# Messages ------------------------------------------------------------------------------------


def channels_for(req: ApprovalRequest) -> list[str]:
    """The channels of the groups the request's current step names (or the "any staff" one)."""
    groups = req.audience_groups
    rows = SlackChannel.objects.filter(group__name__in=groups) if groups else SlackChannel.objects.filter(group=None)
    return sorted(set(rows.values_list("channel_id", flat=True)))


def _state(req: ApprovalRequest, channel: str, current: list[str]) -> str:
    if req.status == ApprovalRequest.Status.PENDING:
        return "pending" if channel in current else f"escalated:{req.stage}"
    return req.status


def _outcome(req: ApprovalRequest) -> str:
    Status = ApprovalRequest.Status
    if req.status == Status.PENDING:
        return f"Escalated to {' or '.join(req.audience_groups) or 'staff'}."
    if req.status == Status.APPROVED:
        return f"Approved by {req.decided_by_label}."
    if req.status == Status.DENIED:
        return f"Denied by {req.decided_by_label}."
    if req.status == Status.EXPIRED:
        return f"Expired: {req.reason}"
    return f"Cancelled: {req.reason}"


def blocks(req: ApprovalRequest, *, state: str, mentions: str = "") -> list[dict[str, Any]]:
    """Block Kit for a request: what is asked and by whom, then either the buttons (pending in
    this channel) or the outcome."""
    session = req.session
    link = f"{settings.SITE_URL}/?request={req.pk}"
    facts = f"*{req.tool_title}* on {req.server_title}\nAsked by {session.label}"
    if req.rule_label:
        facts += f" · rule {req.rule_label}"
    out: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": facts}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"```{req.arguments[:500]}```"}},
    ]
    if state == "pending":
        elements: list[dict[str, Any]] = []
        if services.quick_actions_allowed(req):
            elements = [
                {"type": "button", "action_id": APPROVE, "style": "primary", "value": str(req.pk),
                 "text": {"type": "plain_text", "text": "Approve"}},
                {"type": "button", "action_id": DENY, "style": "danger", "value": str(req.pk),
                 "text": {"type": "plain_text", "text": "Deny"}},
            ]  # fmt: skip
        elements.append({"type": "button", "text": {"type": "plain_text", "text": "Open"}, "url": link})
        out.append({"type": "actions", "block_id": f"request-{req.pk}", "elements": elements})
        if mentions:
            out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": mentions}]})
    else:
        out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _outcome(req)}]})
    return out


def _mentions(req: ApprovalRequest) -> str:
    people = services.routed_staff(req, channel="slack")
    ids = SlackLink.objects.filter(user__in=people.values("pk")).values_list("slack_user_id", flat=True)
    return " ".join(f"<@{slack_id}>" for slack_id in sorted(ids))


def post_request(request_id: int) -> int:
    """Post a pending request to the channels of its current step's groups, once per channel
    (the SlackMessage row is claimed first, so a repeated task posts nothing twice; a failed
    post removes the claim and raises for the retry). Returns the number of messages posted."""
    req = ApprovalRequest.objects.for_one().filter(pk=request_id).first()
    if req is None or req.status != ApprovalRequest.Status.PENDING or not enabled():
        return 0
    posted = 0
    mentions = _mentions(req)
    for channel in channels_for(req):
        try:
            with transaction.atomic():
                message = SlackMessage.objects.create(request=req, channel=channel, shown="pending")
        except IntegrityError:
            continue
        try:
            data = api(
                "chat.postMessage",
                channel=channel,
                text=f"Approval needed: {req.tool_title} for {req.session.label}",
                blocks=blocks(req, state="pending", mentions=mentions),
            )
        except Exception:
            message.delete()
            raise
        SlackMessage.objects.filter(pk=message.pk).update(ts=data["ts"])
        posted += 1
    return posted


def update_messages(request_id: int) -> int:
    """Bring every message of the request up to date: the outcome and who decided, or
    "escalated" in the channels of earlier steps. A message already showing the current state
    is left alone, so a repeated task calls Slack for nothing. Returns the messages updated."""
    req = ApprovalRequest.objects.for_one().filter(pk=request_id).first()
    if req is None or not enabled():
        return 0
    current = channels_for(req)
    updated = 0
    for message in SlackMessage.objects.filter(request=req).exclude(ts=""):
        state = _state(req, message.channel, current)
        if state == message.shown:
            continue
        api(
            "chat.update",
            channel=message.channel,
            ts=message.ts,
            text=_outcome(req),
            blocks=blocks(req, state=state),
        )
        SlackMessage.objects.filter(pk=message.pk).update(shown=state)
        updated += 1
    return updated


# Interactions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """A button press: who (Slack ids), on which request, which answer, in which channel."""

    slack_user_id: str
    team_id: str
    channel_id: str
    request_id: int
    approve: bool


def parse_action(payload: dict[str, Any]) -> Action | None:
    """The Approve/Deny press in a block_actions payload; None for anything else."""
    if payload.get("type") != "block_actions":
        return None
    for action in payload.get("actions") or []:
        if action.get("action_id") in (APPROVE, DENY) and str(action.get("value", "")).isdigit():
            return Action(
                slack_user_id=str((payload.get("user") or {}).get("id", "")),
                team_id=str((payload.get("team") or {}).get("id", "")),
                channel_id=str((payload.get("channel") or {}).get("id", "")),
                request_id=int(action["value"]),
                approve=action["action_id"] == APPROVE,
            )
    return None


def parse_body(form_payload: str) -> dict[str, Any]:
    data = json.loads(form_payload)
    if not isinstance(data, dict):
        raise ValueError("payload is not an object")
    return data


def act(action: Action, user: User) -> str | None:
    """Decide as `user` through approvals.services.decide, with its checks. Returns what to
    tell the person (ephemerally) when it was refused, None when it was decided or counted."""
    req = ApprovalRequest.objects.filter(pk=action.request_id).first()
    if req is None:
        return "There is no such request."
    if req.status == ApprovalRequest.Status.PENDING and not services.quick_actions_allowed(req):
        return f"This request needs more than a button: decide it in Countersign, {settings.SITE_URL}/?request={req.pk}"
    try:
        approvals_services.decide(req, approve=action.approve, by=user, reason="")
    except (PermissionDenied, approvals_services.TransitionError, ValueError) as e:
        return str(e)
    return None


def link_then_act(action: Action, *, link_url: str) -> str | None:
    """For a Slack user not linked yet: link them to the one staff member with the email
    address Slack has for them (users.info), then act; else say how to link. Returns what to
    tell the person, None when decided. Raises SlackUnavailable/SlackError from users.info."""
    info = api("users.info", form=True, user=action.slack_user_id)
    email = str(((info.get("user") or {}).get("profile") or {}).get("email") or "")
    person = services.staff_by_email(email)
    if person is not None and services.link_slack(
        person, slack_user_id=action.slack_user_id, team_id=action.team_id, how=SlackLink.How.EMAIL
    ):
        return act(action, person)
    return (
        "Your Slack account is not linked to a Countersign staff account, so this press decided nothing. "
        f"Log in to Countersign and open {link_url} to link it."
    )


def tell(*, channel: str, user: str, text: str) -> None:
    """An ephemeral message only `user` sees in `channel`."""
    api("chat.postEphemeral", channel=channel, user=user, text=text)
