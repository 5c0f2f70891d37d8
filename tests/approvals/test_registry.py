"""MCP server credentials at rest: ciphertext in the column (read with raw SQL), plaintext only on
the instance and in the upstream `mcp` tool; key rotation; the data migration of plaintext rows;
and a search for the plaintext in every page, log, audit row and export that could show it."""

from __future__ import annotations

import io
import json
import logging
import zipfile

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

import config.settings
from approvals import services
from approvals.models import McpServer
from audit.models import AuditEvent

AUTH_SECRET = "sk-AUTH-PLAINTEXT-4c3b2a"
HEADER_SECRET = "TENANT-PLAINTEXT-8d7e6f"
OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


@pytest.fixture
def keys(settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    return settings


def stored(pk: int) -> tuple[str, str]:
    """The raw column values, as the database holds them."""
    q = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {q('authorization')}, {q('headers')} FROM approvals_mcpserver WHERE id = %s", [pk])
        return cursor.fetchone()


def register(**fields: object) -> McpServer:
    server, _ = services.register_mcp_server(
        label="hotel",
        url="https://mcp.hotel.example/mcp",
        authorization=AUTH_SECRET,
        headers={"X-API-Key": HEADER_SECRET, "X-Tenant-ID": "lisbon", "X-API-Version": "2"},
        **fields,  # type: ignore[arg-type]
    )
    return server


@pytest.mark.django_db
def test_the_columns_hold_ciphertext_and_the_instance_plaintext(keys):
    server = register()

    authorization, headers = stored(server.pk)

    assert AUTH_SECRET not in authorization and HEADER_SECRET not in headers and "X-Tenant-ID" not in headers
    assert Fernet(OLD_KEY).decrypt(authorization.encode()).decode() == AUTH_SECRET
    assert json.loads(Fernet(OLD_KEY).decrypt(headers.encode()))["X-API-Key"] == HEADER_SECRET
    fresh = McpServer.objects.get(pk=server.pk)
    assert fresh.authorization == AUTH_SECRET
    assert fresh.to_tool()["authorization"] == AUTH_SECRET
    assert fresh.to_tool()["headers"] == {"X-API-Key": HEADER_SECRET, "X-Tenant-ID": "lisbon", "X-API-Version": "2"}


@pytest.mark.django_db
def test_empty_secrets_stay_empty_and_need_no_key(keys):
    server, _ = services.register_mcp_server(label="open", url="https://open.example/mcp")

    assert stored(server.pk) == ("", "")
    fresh = McpServer.objects.get(pk=server.pk)
    assert fresh.authorization == "" and fresh.headers == {}
    assert "authorization" not in fresh.to_tool() and "headers" not in fresh.to_tool()


@pytest.mark.django_db
def test_old_data_stays_readable_after_a_new_key_and_rotation_moves_it_to_the_new_key(keys):
    server = register()
    before = stored(server.pk)

    keys.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    assert McpServer.objects.get(pk=server.pk).authorization == AUTH_SECRET
    out = io.StringIO()
    call_command("rotate_field_encryption", stdout=out)

    assert "approvals.McpServer: re-encrypted 1 row(s)" in out.getvalue()
    authorization, headers = stored(server.pk)
    assert (authorization, headers) != before
    assert Fernet(NEW_KEY).decrypt(authorization.encode()).decode() == AUTH_SECRET
    with pytest.raises(InvalidToken):
        Fernet(OLD_KEY).decrypt(headers.encode())
    # The old key can go now.
    keys.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    fresh = McpServer.objects.get(pk=server.pk)
    assert fresh.authorization == AUTH_SECRET and fresh.headers["X-API-Key"] == HEADER_SECRET


@pytest.mark.django_db
def test_a_missing_key_fails_loudly_instead_of_passing_ciphertext_on(keys):
    server = register()

    keys.FIELD_ENCRYPTION_KEYS = [NEW_KEY]

    with pytest.raises(ImproperlyConfigured, match=r"cannot decrypt McpServer\.authorization") as excinfo:
        McpServer.objects.get(pk=server.pk)
    assert OLD_KEY not in str(excinfo.value) and NEW_KEY not in str(excinfo.value)


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_existing_plaintext_rows(keys):
    executor = MigrationExecutor(connection)
    executor.migrate([("approvals", "0005_audit_notified_opened")])
    old_apps = executor.loader.project_state([("approvals", "0005_audit_notified_opened")]).apps
    old = old_apps.get_model("approvals", "McpServer").objects.create(
        label="legacy",
        url="https://legacy.example/mcp",
        authorization=AUTH_SECRET,
        headers={"X-API-Key": HEADER_SECRET},
    )
    old_apps.get_model("approvals", "McpServer").objects.create(label="bare", url="https://bare.example/mcp")
    assert stored(old.pk)[0] == AUTH_SECRET  # the starting point: plaintext at rest

    executor = MigrationExecutor(connection)
    executor.migrate([("approvals", "0006_mcp_registry_encryption_tools")])

    authorization, headers = stored(old.pk)
    assert AUTH_SECRET not in authorization and HEADER_SECRET not in headers
    assert Fernet(OLD_KEY).decrypt(authorization.encode()).decode() == AUTH_SECRET
    # The model as of 0006 (later migrations add columns the current model reads).
    at_0006 = executor.loader.project_state([("approvals", "0006_mcp_registry_encryption_tools")]).apps
    legacy = at_0006.get_model("approvals", "McpServer").objects.get(label="legacy")
    assert legacy.authorization == AUTH_SECRET and legacy.headers == {"X-API-Key": HEADER_SECRET}
    assert at_0006.get_model("approvals", "McpServer").objects.get(label="bare").headers == {}

    # And back: the reverse migration restores plaintext JSON that the old column type accepts.
    executor = MigrationExecutor(connection)
    executor.migrate([("approvals", "0005_audit_notified_opened")])
    assert stored(old.pk)[0] == AUTH_SECRET
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(
        executor.loader.graph.leaf_nodes()
    )  # every app: going back to 0005 undid the apps that depend on it
    assert McpServer.objects.get(label="legacy").authorization == AUTH_SECRET


@pytest.mark.django_db
def test_the_plaintext_never_shows_in_admin_audit_logs_dashboards_or_exports(
    keys, client, admin_user, make_request, effects, caplog, django_capture_on_commit_callbacks, tmp_path
):
    from compliance import exports
    from compliance.bundle import export_path
    from compliance.models import Export

    caplog.set_level(logging.DEBUG)
    keys.AUDIT_EXPORT_DIR = tmp_path / "exports"
    keys.AUDIT_SIGNING_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    server = register(description="Front desk")
    refund = make_request()  # server_label "hotel": linked to the registered server
    assert refund.mcp_server_id == server.pk
    services.decide(refund, approve=True, by=admin_user)
    client.force_login(admin_user)
    urls = [
        reverse("admin:approvals_mcpserver_changelist"),
        reverse("admin:approvals_mcpserver_change", args=[server.pk]),
        reverse("admin:audit_auditevent_changelist"),
        reverse("admin:approvals_approvalrequest_change", args=[refund.pk]),
        reverse("dashboard"),
        reverse("history"),
        reverse("review_search"),
        reverse("review_csv"),
        reverse("review_case", args=[refund.pk]),
    ]
    pages = {url: client.get(url) for url in urls}
    with django_capture_on_commit_callbacks(execute=False):
        export: Export | None = exports.request_export(by=admin_user, query={})
    export = exports.build_export(export.pk)
    with zipfile.ZipFile(export_path(export.file_name)) as z:
        bundle = "".join(z.read(name).decode(errors="replace") for name in z.namelist())
    dump = io.StringIO()
    call_command("dumpdata", "approvals.mcpserver", stdout=dump)

    for url, response in pages.items():
        assert response.status_code == 200, url
        body = (b"".join(response.streaming_content) if response.streaming else response.content).decode()
        assert AUTH_SECRET not in body and HEADER_SECRET not in body, url
    assert "hotel" in bundle and AUTH_SECRET not in bundle and HEADER_SECRET not in bundle
    audit_text = json.dumps([e.payload for e in AuditEvent.objects.all()])
    assert "authorization_set" in audit_text and AUTH_SECRET not in audit_text and HEADER_SECRET not in audit_text
    assert AUTH_SECRET not in dump.getvalue() and HEADER_SECRET not in dump.getvalue()
    # ... and the dump loads back to the same secrets.
    McpServer.objects.filter(pk=server.pk).update(authorization="", headers={})
    fixture = tmp_path / "servers.json"
    fixture.write_text(dump.getvalue())
    call_command("loaddata", str(fixture), verbosity=0)
    reloaded = McpServer.objects.get(pk=server.pk)
    assert reloaded.authorization == AUTH_SECRET and reloaded.headers["X-API-Key"] == HEADER_SECRET
    assert AUTH_SECRET not in caplog.text and HEADER_SECRET not in caplog.text


def test_production_without_keys_refuses_to_start(monkeypatch):
    monkeypatch.delenv("FIELD_ENCRYPTION_KEYS", raising=False)
    monkeypatch.delenv("FIELD_ENCRYPTION_KEYS_FILE", raising=False)
    monkeypatch.setattr(config.settings, "DEBUG", False)
    monkeypatch.setattr(config.settings, "DEMO_MODE", False)
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEYS is required"):
        config.settings._field_encryption_keys()


@pytest.mark.django_db
def test_with_no_key_at_run_time_credentials_are_neither_stored_nor_read(keys):
    # Defence in depth behind the start-up check: should the keys ever be empty, a credential is
    # refused rather than written in the clear or read as ciphertext.
    existing = register()
    keys.FIELD_ENCRYPTION_KEYS = []
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEYS is required"):
        services.register_mcp_server(label="new", url="https://new.example/mcp", authorization=AUTH_SECRET)
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEYS is required"):
        McpServer.objects.get(pk=existing.pk)
    assert not McpServer.objects.filter(label="new").exists()
    # A server without credentials needs no key.
    services.register_mcp_server(label="open", url="https://open.example/mcp")
    assert McpServer.objects.filter(label="open").values_list("url", flat=True).get() == "https://open.example/mcp"


def test_keys_come_newest_first_from_the_environment_or_a_file(monkeypatch, tmp_path):
    monkeypatch.setenv("FIELD_ENCRYPTION_KEYS", f" {NEW_KEY} , {OLD_KEY}")
    assert config.settings._field_encryption_keys() == [NEW_KEY, OLD_KEY]

    (tmp_path / "keys").write_text(f"{NEW_KEY}\n")
    monkeypatch.setenv("FIELD_ENCRYPTION_KEYS_FILE", str(tmp_path / "keys"))
    assert config.settings._field_encryption_keys() == [NEW_KEY]

    monkeypatch.delenv("FIELD_ENCRYPTION_KEYS_FILE")
    monkeypatch.setenv("FIELD_ENCRYPTION_KEYS", f"{NEW_KEY},not-a-key")
    with pytest.raises(ImproperlyConfigured, match="key 2 is not a Fernet key") as excinfo:
        config.settings._field_encryption_keys()
    assert NEW_KEY not in str(excinfo.value)


def test_demo_mode_keeps_one_generated_key_in_var(monkeypatch, tmp_path):
    monkeypatch.delenv("FIELD_ENCRYPTION_KEYS", raising=False)
    monkeypatch.setattr(config.settings, "DEMO_MODE", True)
    monkeypatch.setattr(config.settings, "VAR_DIR", tmp_path / "var")

    first = config.settings._field_encryption_keys()

    assert first == config.settings._field_encryption_keys()
    assert (tmp_path / "var" / "field_encryption_key").read_text() == first[0]
    Fernet(first[0])
