"""Celery adapters (house rule 7): ids in, one call, nothing else. Every network call of
notifications (push services, SMTP, Slack) runs here, never in a web request.

Email and Slack posts are idempotent by their marker rows (EmailSent, SlackMessage), so
acks_late may redeliver them. A redelivered push shows again at most once: the browser replaces
a notification with the same tag.
"""

from __future__ import annotations

from smtplib import SMTPException

from celery import shared_task

from notify import mail, push, slack

# Worth retrying with backoff: the server may be back in a minute.
SMTP_DOWN = (SMTPException, OSError)
SLACK_DOWN = (slack.SlackUnavailable,)


@shared_task(acks_late=True, ignore_result=True)
def push_request(request_id: int, kind: str) -> None:
    push.send_request_push(request_id, kind=kind)


@shared_task(
    acks_late=True, ignore_result=True, autoretry_for=(SMTPException, OSError), retry_backoff=True, max_retries=5
)
def email_reminder(request_id: int, stage: int, kind: str) -> None:
    mail.ensure_reminder(request_id, stage=stage, kind=kind)


@shared_task(
    acks_late=True, ignore_result=True, autoretry_for=(slack.SlackUnavailable,), retry_backoff=True, max_retries=5
)
def slack_post(request_id: int) -> None:
    slack.post_request(request_id)


@shared_task(
    acks_late=True, ignore_result=True, autoretry_for=(slack.SlackUnavailable,), retry_backoff=True, max_retries=5
)
def slack_update(request_id: int) -> None:
    slack.update_messages(request_id)


@shared_task(
    acks_late=True, ignore_result=True, autoretry_for=(slack.SlackUnavailable,), retry_backoff=True, max_retries=5
)
def slack_tell(channel: str, user: str, text: str) -> None:
    slack.tell(channel=channel, user=user, text=text)


@shared_task(ignore_result=True, autoretry_for=SLACK_DOWN, retry_backoff=True, max_retries=5)
def slack_link_then_act(
    slack_user_id: str, team_id: str, channel_id: str, request_id: int, approve: bool, link_url: str
) -> None:
    # Not acks_late: a redelivery after the decision would decide nothing (the service refuses
    # a decided request) but tell the person it was refused.
    action = slack.Action(slack_user_id, team_id, channel_id, request_id, approve)
    refusal = slack.link_then_act(action, link_url=link_url)
    if refusal:
        slack.tell(channel=channel_id, user=slack_user_id, text=refusal)
