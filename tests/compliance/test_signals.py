from __future__ import annotations

import pytest

from audit.models import AuditEvent
from audit.verify import verify_chain

pytestmark = pytest.mark.django_db


def test_logins_and_failed_logins_are_audit_rows(client, alice, password):
    client.post("/accounts/login/", {"username": "alice", "password": "wrong"}, REMOTE_ADDR="10.0.0.7")
    client.post("/accounts/login/", {"username": "alice", "password": password})
    failed, login = AuditEvent.objects.filter(kind__in=["login_failed", "login"]).order_by("seq")
    assert (failed.kind, failed.actor_label, failed.payload["ip"]) == ("login_failed", "alice", "10.0.0.7")
    assert "wrong" not in str(failed.payload)
    assert (login.kind, login.actor) == ("login", alice)
    assert verify_chain(trusted_keys=None).ok


def test_registry_changes_are_audit_rows_without_secrets(db):
    from approvals import services

    server, _ = services.register_mcp_server(label="hotel", url="https://mcp.example.org", authorization="s3cret")
    services.delete_mcp_server(server, by=None)
    saved, deleted = AuditEvent.objects.filter(kind__startswith="server_").order_by("seq")
    assert saved.payload["authorization_set"] is True and "s3cret" not in str(saved.payload)
    assert deleted.kind == "server_deleted" and deleted.payload["label"] == "hotel"
