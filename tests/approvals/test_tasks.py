from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from approvals import services, tasks
from approvals.models import ApprovalRequest, AuditKind
from audit.models import AuditEvent
from config.celery import app

Status = ApprovalRequest.Status


def test_expire_request_task_denies_an_overdue_request(make_request, settings):
    settings.APPROVAL_TIMEOUT_SECONDS = 0
    req = make_request()

    tasks.expire_request(req.pk)

    req.refresh_from_db()
    assert (req.status, req.decided_by_label) == (Status.EXPIRED, "deadline")
    assert req.reason.startswith("Nobody from the staff could confirm this in time (waited ")


def test_expire_request_task_before_the_deadline_is_a_no_op(make_request):
    req = make_request()

    tasks.expire_request(req.pk)

    req.refresh_from_db()
    assert req.status == Status.PENDING


def test_expire_request_task_run_twice_expires_once(make_request, settings):
    settings.APPROVAL_TIMEOUT_SECONDS = 0
    req = make_request()

    tasks.expire_request(req.pk)
    tasks.expire_request(req.pk)  # a redelivered task (acks_late)

    assert AuditEvent.objects.filter(request=req, kind=AuditKind.EXPIRED).count() == 1


def test_sweep_overdue_expires_what_a_lost_task_missed(make_request, settings):
    settings.APPROVAL_TIMEOUT_SECONDS = 0
    lost = make_request()
    settings.APPROVAL_TIMEOUT_SECONDS = 60
    waiting = make_request()

    tasks.sweep_overdue()

    lost.refresh_from_db()
    waiting.refresh_from_db()
    assert lost.status == Status.EXPIRED
    assert waiting.status == Status.PENDING


def test_open_request_schedules_the_deadline_task_after_commit(
    make_request, scheduled, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        req = make_request()

    [(args, countdown)] = scheduled.calls
    assert args == (req.pk,)
    assert abs((timezone.now() + timedelta(seconds=countdown)) - req.deadline) < timedelta(seconds=1)


def test_beat_sweeps_overdue_requests_every_two_seconds():
    entry = settings.CELERY_BEAT_SCHEDULE["approvals-sweep-overdue"]

    assert entry["task"] == tasks.sweep_overdue.name == "approvals.tasks.sweep_overdue"
    assert entry["schedule"] == 2.0
    assert "approvals.tasks.sweep_overdue" in app.tasks
    assert tasks.expire_request.acks_late and tasks.sweep_overdue.acks_late


def test_the_services_schedule_the_deadline_task_by_its_registered_name():
    assert tasks.expire_request.name == services.EXPIRE_REQUEST_TASK
    assert app.tasks[services.EXPIRE_REQUEST_TASK] == tasks.expire_request  # the task the tests patch
