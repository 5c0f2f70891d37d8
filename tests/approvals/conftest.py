"""Fixtures for the approvals app: a session, requests made through the real service, and a
recorder of what leaves the process (dashboard events, relay nudges, deadline tasks)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from approvals import events, services, tasks
from approvals.models import ApprovalRequest, RealtimeSession

ARGUMENTS = '{"booking_id": "B42", "amount": 120}'


def approval_item(upstream_id: str, *, name: str = "refund_minibar_charge", arguments: str = ARGUMENTS) -> dict:
    """An mcp_approval_request item as the Realtime API sends it (REALTIME_PROTOCOL.md 7.1)."""
    return {
        "type": "mcp_approval_request",
        "id": upstream_id,
        "server_label": "hotel",
        "name": name,
        "arguments": arguments,
    }


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    # The personas are created with a password; PBKDF2's deliberate slowness would otherwise
    # cost about a second per test and prove nothing here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class Scheduled:
    """Deadline tasks handed to Celery: (args, countdown)."""

    calls: list[tuple[tuple[Any, ...], float]] = field(default_factory=list)


@pytest.fixture(autouse=True)
def scheduled(monkeypatch: pytest.MonkeyPatch) -> Scheduled:
    # No test talks to a broker: the deadline task is recorded instead of sent.
    record = Scheduled()
    monkeypatch.setattr(
        tasks.expire_request, "apply_async", lambda args, countdown: record.calls.append((args, countdown))
    )
    return record


@dataclass
class Effects:
    dashboard: list[int] = field(default_factory=list)
    relay: list[tuple[int, int]] = field(default_factory=list)
    decisions: list[dict[str, Any] | None] = field(default_factory=list)
    session_cards: list[int] = field(default_factory=list)
    order: list[str] = field(default_factory=list)


@pytest.fixture
def effects(monkeypatch: pytest.MonkeyPatch) -> Effects:
    """Records the broadcasts the services register with on_commit, instead of sending them."""
    record = Effects()

    def request_changed(pk: int) -> bool:
        record.dashboard.append(pk)
        record.order.append("dashboard")
        return True

    def relay_decision(*, session_id: int, request_id: int, decision: dict[str, Any] | None = None) -> bool:
        record.relay.append((session_id, request_id))
        record.decisions.append(decision)
        record.order.append("relay")
        return True

    monkeypatch.setattr(events, "request_changed", request_changed)
    monkeypatch.setattr(events, "send_request", lambda req: request_changed(req.pk))
    monkeypatch.setattr(events, "relay_decision", relay_decision)
    monkeypatch.setattr(events, "session_requests_changed", record.session_cards.append)
    return record


@pytest.fixture
def session(db: None) -> RealtimeSession:
    return services.open_session(kind="relay", label="Room 1204", metadata={"room": "1204", "guest": "Ms Rossi"})


@pytest.fixture
def make_request(session: RealtimeSession) -> Callable[..., ApprovalRequest]:
    counter = itertools.count(1)

    def make(**overrides: Any) -> ApprovalRequest:
        upstream_id = overrides.pop("upstream_id", f"mcpr_{next(counter)}")
        item = approval_item(upstream_id, **{k: overrides[k] for k in ("name", "arguments") if k in overrides})
        kwargs: dict[str, Any] = {
            "session": session,
            "upstream_id": upstream_id,
            "server_label": "hotel",
            "tool_name": item["name"],
            "arguments": item["arguments"],
            "raw_item": item,
        }
        overrides.pop("name", None)
        kwargs.update(overrides)
        req, _ = services.open_request(**kwargs)
        return req

    return make
