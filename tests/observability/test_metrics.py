"""/metrics in one process (the Django test client): who may read it, the states read at scrape,
the counts of Celery's notification tasks, and a Grafana dashboard that only names real metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from prometheus_client import REGISTRY

from approvals import services
from tests.observability.test_e2e import sample

BASE = Path(__file__).resolve().parents[2]

POLICY = """
rules:
  - {label: doors, tool: unlock_door, outcome: ask, approvers: [front-desk, managers], deadline_seconds: 600}
  - {label: refunds, tool: 'refund_*', outcome: ask, approvers: [managers], deadline_seconds: 600}
"""


@pytest.mark.django_db
def test_it_refuses_a_client_outside_the_allowed_networks():
    response = Client(REMOTE_ADDR="10.1.2.3").get("/metrics")
    assert response.status_code == 403
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200


@pytest.mark.django_db
def test_it_lets_the_token_in_from_anywhere_and_nothing_else_when_the_networks_are_empty(settings):
    settings.METRICS_TOKEN = "s3cret-token"
    settings.METRICS_NETWORKS = []
    client = Client(REMOTE_ADDR="10.1.2.3")
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 401
    ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert ok.status_code == 200 and ok["Content-Type"].startswith("text/plain")


@pytest.mark.django_db
def test_it_counts_pending_requests_per_group_and_open_sessions_at_scrape():
    Group.objects.create(name="front-desk")
    Group.objects.create(name="managers")
    services.import_policies(POLICY, by=None, source="test")
    session = services.open_session(kind="relay", label="Room 1204", metadata={"room": "1204"})
    for n, tool in enumerate(["unlock_door", "refund_minibar", "refund_minibar", "wake_up_call"]):
        services.open_request(
            session=session, upstream_id=f"mcpr_{n}", server_label="hotel", tool_name=tool, arguments="{}", raw_item={}
        )
    text = Client().get("/metrics").content.decode()
    assert sample(text, "countersign_pending_requests", group="front-desk") == 1
    assert sample(text, "countersign_pending_requests", group="managers") == 3
    assert sample(text, "countersign_pending_requests", group="*") == 1  # no rule: any staff
    assert sample(text, "countersign_sessions_open", kind="relay") == 1
    assert sample(text, "countersign_sessions_open", kind="sideband") == 0
    assert sample(text, "countersign_outbox_backlog") == 0


@pytest.mark.django_db
def test_a_notification_task_is_counted_by_channel_through_celerys_signals():
    from notify import tasks

    def count() -> float:
        value = REGISTRY.get_sample_value(
            "countersign_notification_deliveries_total", {"channel": "push", "outcome": "done"}
        )
        return value or 0.0

    before = count()
    tasks.push_request.apply(args=(424242, "opened"))  # no such request: the task ends at once
    assert count() == before + 1


def test_the_grafana_dashboard_names_only_metrics_countersign_exports():
    dashboard = json.loads((BASE / "deploy" / "grafana" / "countersign.json").read_text())
    readme = (BASE / "README.md").read_text()
    exported = set(re.findall(r"`(countersign_[a-z_]+)", readme))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {re.sub(r"_(bucket|count|sum)$", "", name) for e in exprs for name in re.findall(r"countersign_[a-z_]+", e)}
    assert used and used <= exported, used - exported
    # Every metric of the README is on the dashboard.
    assert exported <= used, exported - used


@pytest.mark.django_db
def test_the_outbox_counts_only_answers_owed_to_openai_not_those_an_api_caller_has_yet_to_read(alice, settings):
    """A relay session's answer not yet sent is a backlog (a stuck relay); an approval-API or
    gateway client's answer is read when that client asks, so an unread one is not."""
    from observability.health import degraded_reasons

    settings.HEALTH_OUTBOX_MAX = 0
    for n, kind in enumerate(["api", "gateway", "relay"]):
        session = services.open_session(kind=kind, label=f"{kind} caller", metadata={})
        req, _ = services.open_request(
            session=session,
            upstream_id=f"req_{n}",
            server_label="hotel",
            tool_name="wake_up_call",
            arguments="{}",
            raw_item={},
        )
        services.decide(req, approve=True, by=alice, confirmed=True)
        if kind == "gateway":  # the API's and the gateway's unread answers alone: no backlog
            assert degraded_reasons() == []
            assert sample(Client().get("/metrics").content.decode(), "countersign_outbox_backlog") == 0
    assert degraded_reasons() == ["outbox: 1 answers not yet sent upstream (more than 0)"]
    assert sample(Client().get("/metrics").content.decode(), "countersign_outbox_backlog") == 1
