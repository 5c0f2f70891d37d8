"""Fixtures for notifications: a hotel with a front desk and managers, a policy that routes
door requests to the front desk and escalates them to managers, the three stand-ins (push
service, SMTP server, Slack) configured, and Celery tasks run in the test's thread.

The after-commit hooks of approvals/events.py fire the receivers where they exist; where they
do not yet, `hooks` calls the receivers itself after the same commit, so the tests read the same
either way.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth.models import Group

from approvals import events, services
from approvals import tasks as approval_tasks
from approvals.models import ApprovalRequest, RealtimeSession
from notify import push, receivers
from notify import tasks as notify_tasks
from notify.models import SlackChannel
from tests.plugins.push_service import PushServiceStandIn, push_service  # noqa: F401 - fixture
from tests.plugins.slack_api import SIGNING_SECRET, TOKEN, SlackStandIn, slack_api  # noqa: F401 - fixture
from tests.plugins.smtp_server import SmtpStandIn, smtp_server  # noqa: F401 - fixture

POLICY = """
rules:
  - label: doors
    tool: unlock_door
    outcome: ask
    approvers: [front-desk]
    deadline_seconds: 60
    on_deadline: escalate
    escalations:
      - approvers: managers
        deadline_seconds: 40
        on_deadline: deny
"""

VAPID_PUBLIC, VAPID_PRIVATE = push.new_key_pair()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def channels(settings, push_service: PushServiceStandIn, smtp_server: SmtpStandIn, slack_api: SlackStandIn) -> None:  # noqa: F811
    """Every channel on, each pointed at its stand-in."""
    settings.VAPID_PUBLIC_KEY, settings.VAPID_PRIVATE_KEY = VAPID_PUBLIC, VAPID_PRIVATE
    settings.VAPID_SUBJECT = "mailto:it@hotel.example"
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = smtp_server.host, smtp_server.port
    settings.EMAIL_USE_TLS = False
    settings.DEFAULT_FROM_EMAIL = "countersign@hotel.example"
    settings.SLACK_BOT_TOKEN, settings.SLACK_SIGNING_SECRET = TOKEN, SIGNING_SECRET
    settings.SLACK_API_URL = slack_api.url
    settings.SITE_URL = "https://countersign.hotel.example"


@dataclass
class Queued:
    """Tasks handed to Celery: run at once (as a worker would) unless given a countdown, then
    kept here for the test to run when it wants ("the half-deadline has come")."""

    later: list[tuple[Any, tuple[Any, ...], float]] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)

    def run_later(self, name: str) -> None:
        due = [entry for entry in self.later if entry[0].name.endswith(name)]
        self.later = [entry for entry in self.later if entry not in due]
        for task, args, _ in due:
            task.run(*args)


@pytest.fixture(autouse=True)
def queued(monkeypatch: pytest.MonkeyPatch) -> Queued:
    record = Queued()
    # The deadline task of approvals is not this app's business: recorded, never sent.
    monkeypatch.setattr(approval_tasks.expire_request, "apply_async", lambda args, countdown: None)
    for name in ("push_request", "email_reminder", "slack_post", "slack_update", "slack_tell", "slack_link_then_act"):
        task = getattr(notify_tasks, name)

        def apply_async(args: tuple[Any, ...], countdown: float | None = None, *, _task: Any = task) -> None:
            if countdown:
                record.later.append((_task, args, countdown))
            else:
                record.ran.append(_task.name)
                _task.run(*args)

        monkeypatch.setattr(task, "apply_async", apply_async)
    return record


@pytest.fixture
def groups(db: None) -> dict[str, Group]:
    return {name: Group.objects.create(name=name) for name in ("front-desk", "managers")}


@pytest.fixture
def people(groups, django_user_model, password):
    def staff(username: str, group: str | None, **extra: Any):
        user = django_user_model.objects.create_user(
            username, f"{username}@hotel.example", password, is_staff=True, first_name=username.title(), **extra
        )
        if group:
            user.groups.add(groups[group])
        return user

    root = staff("root", None, is_superuser=True)
    services.register_mcp_server(label="hotel", url="https://mcp.hotel.example/mcp")
    services.import_policies(POLICY, by=root, source="test")
    return {
        "fred": staff("fred", "front-desk"),
        "fay": staff("fay", "front-desk"),
        "mia": staff("mia", "managers"),
        "root": root,
    }


@pytest.fixture
def session(db: None) -> RealtimeSession:
    return services.open_session(kind="relay", label="Room 1204", metadata={"room": "1204", "guest": "Ms Rossi"})


def _has(hook: str) -> bool:
    return getattr(events, hook, None) is not None


@dataclass
class Hooks:
    capture: Callable[..., Any]
    session: RealtimeSession
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def open(self, tool: str = "unlock_door", arguments: str = '{"room": "1204"}') -> ApprovalRequest:
        """A request opened through the service, its after-commit work done."""
        upstream_id = f"mcpr_{next(self.counter)}"
        item = {"type": "mcp_approval_request", "id": upstream_id, "server_label": "hotel", "name": tool,
                "arguments": arguments}  # fmt: skip
        with self.capture(execute=True):
            req, _ = services.open_request(
                session=self.session, upstream_id=upstream_id, server_label="hotel", tool_name=tool,
                arguments=arguments, raw_item=item,
            )  # fmt: skip
        if not _has("request_opened"):
            receivers.on_request_opened(request_id=req.pk)
        return req

    def escalate(self, req: ApprovalRequest) -> ApprovalRequest:
        with self.capture(execute=True):
            escalated = services.expire_request(req.pk, now=req.deadline)
        assert escalated is not None and escalated.status == ApprovalRequest.Status.PENDING
        if not _has("request_escalated"):
            receivers.on_request_escalated(request_id=req.pk)
        return escalated

    def decided(self, run: Callable[[], Any], request_id: int) -> Any:
        """Run something that decides request `request_id`, then its after-commit work."""
        with self.capture(execute=True):
            result = run()
        if not _has("decision_committed"):
            receivers.on_decision_committed(request_id=request_id)
        return result


@pytest.fixture
def hooks(people, session, django_capture_on_commit_callbacks) -> Hooks:
    return Hooks(capture=django_capture_on_commit_callbacks, session=session)


@pytest.fixture
def slack_channels(groups: dict[str, Group]) -> dict[str, SlackChannel]:
    return {
        "front-desk": SlackChannel.objects.create(group=groups["front-desk"], channel_id="C-FRONT"),
        "managers": SlackChannel.objects.create(group=groups["managers"], channel_id="C-MGR"),
    }
