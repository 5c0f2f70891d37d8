"""Email to the routed staff through a real SMTP server: at half the step's deadline when
nobody has taken the request, and when it escalates."""

from __future__ import annotations

import pytest

from approvals import services as approvals_services
from notify import mail, services, tasks


def test_the_half_deadline_reminder_is_scheduled_halfway_through_the_step(hooks, queued):
    hooks.open()
    [(_task, _args, countdown)] = [entry for entry in queued.later if entry[0] is tasks.email_reminder]
    assert 29 <= countdown <= 30  # the doors step lasts 60 s


def test_an_unclaimed_request_is_emailed_to_its_group_at_half_deadline(hooks, queued, smtp_server):
    req = hooks.open()
    queued.run_later("email_reminder")
    messages = smtp_server.wait_for(2)
    assert sorted(m.to[0] for m in messages) == ["fay@hotel.example", "fred@hotel.example"]
    assert all(len(m.to) == 1 for m in messages)  # nobody sees a colleague's address
    assert messages[0].subject == "Still waiting: Unlock door for Room 1204"
    assert f"https://countersign.hotel.example/?request={req.pk}" in messages[0].body
    assert messages[0].mail_from == "countersign@hotel.example"


def test_a_decided_request_is_not_emailed(hooks, people, queued, smtp_server):
    req = hooks.open()
    hooks.decided(lambda: approvals_services.decide(req, approve=True, by=people["fred"]), req.pk)
    queued.run_later("email_reminder")
    assert smtp_server.messages == []


def test_a_redelivered_reminder_emails_nobody_twice(hooks, smtp_server):
    req = hooks.open()
    assert tasks.email_reminder.run(req.pk, 0, mail.HALF_DEADLINE) is None
    tasks.email_reminder.run(req.pk, 0, mail.HALF_DEADLINE)
    assert len(smtp_server.messages) == 2


def test_a_claimed_request_gets_no_reminder(hooks, smtp_server, monkeypatch: pytest.MonkeyPatch):
    req = hooks.open()
    monkeypatch.setattr(mail, "is_claimed", lambda req: True)
    assert mail.ensure_reminder(req.pk, stage=0, kind=mail.HALF_DEADLINE) == 0
    assert smtp_server.messages == []


def test_an_escalation_is_emailed_to_the_next_group_at_once(hooks, smtp_server):
    req = hooks.open()
    hooks.escalate(req)
    [message] = smtp_server.wait_for(1)
    assert (message.to, message.subject) == (["mia@hotel.example"], "Escalated to you: Unlock door for Room 1204")


def test_a_person_who_turned_email_off_is_not_emailed(hooks, people, queued, smtp_server):
    services.set_preferences(people["fay"], push=True, email=False, slack=True)
    hooks.open()
    queued.run_later("email_reminder")
    assert [m.to for m in smtp_server.wait_for(1)] == [["fred@hotel.example"]]


def test_without_an_smtp_host_nothing_is_scheduled(hooks, queued, settings):
    settings.EMAIL_HOST = ""
    hooks.open()
    assert queued.later == []
