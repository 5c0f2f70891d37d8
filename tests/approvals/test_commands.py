from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from approvals.models import AuditKind, ClientToken, McpServer
from audit.models import AuditEvent


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_client_token_prints_the_token_last_and_stores_its_hash(db):
    output = run("create_client_token", "--label", "Room 1204", "--meta", "room=1204", "--meta", "floor = 12")

    plaintext = output.strip().splitlines()[-1]
    token = ClientToken.objects.get()
    assert plaintext.startswith("cst_")
    assert ClientToken.objects.for_plaintext(plaintext) == token
    assert (token.label, token.metadata) == ("Room 1204", {"room": "1204", "floor": "12"})
    assert token.token_hash != plaintext
    assert plaintext not in str(list(ClientToken.objects.values()))
    assert AuditEvent.objects.get().kind == AuditKind.TOKEN_ISSUED


def test_create_client_token_reuses_a_token_that_is_still_valid(db):
    first = run("create_client_token", "--label", "Room 1204").strip().splitlines()[-1]

    again = run("create_client_token", "--label", "Room 1204", "--reuse", first)

    assert again.strip().splitlines()[-1] == first and "still valid" in again
    assert ClientToken.objects.count() == 1
    renewed = run("create_client_token", "--label", "Room 1204", "--reuse", "cst_revoked_or_unknown")
    assert renewed.strip().splitlines()[-1] != first and ClientToken.objects.count() == 2


@pytest.mark.parametrize("args", [["--meta", "room"], ["--meta", "=1204"]])
def test_create_client_token_refuses_bad_metadata(db, args):
    with pytest.raises(CommandError, match="NAME=VALUE"):
        run("create_client_token", "--label", "Room 1204", *args)
    assert not ClientToken.objects.exists()


def test_create_client_token_refuses_an_empty_label(db):
    with pytest.raises(CommandError, match="label"):
        run("create_client_token", "--label", "  ")


def test_register_mcp_server_creates_the_server_and_never_prints_secrets(db):
    output = run(
        "register_mcp_server",
        "--label",
        "hotel",
        "--url",
        "https://mcp.hotel.example/mcp",
        "--authorization",
        "AUTH-SECRET-123",
        "--header",
        "X-Api-Key=HEADER-SECRET-456",
        "--require-approval",
        "always",
    )

    server = McpServer.objects.get()
    assert (server.label, server.url, server.require_approval) == ("hotel", "https://mcp.hotel.example/mcp", "always")
    assert (server.authorization, server.headers) == ("AUTH-SECRET-123", {"X-Api-Key": "HEADER-SECRET-456"})
    assert "Registered MCP server 'hotel'" in output
    assert "authorization: set" in output and "headers: X-Api-Key" in output
    assert "AUTH-SECRET-123" not in output
    assert "HEADER-SECRET-456" not in output


def test_register_mcp_server_updates_by_label_and_keeps_what_is_left_out(db):
    run("register_mcp_server", "--label", "hotel", "--url", "https://a.example/mcp", "--authorization", "keep-me")

    output = run(
        "register_mcp_server", "--label", "hotel", "--url", "https://b.example/mcp", "--require-approval", "never"
    )

    server = McpServer.objects.get()
    assert (server.url, server.require_approval, server.authorization) == ("https://b.example/mcp", "never", "keep-me")
    assert output.startswith("Updated MCP server 'hotel'")


def test_register_mcp_server_refuses_an_invalid_url_without_echoing_secrets(db):
    with pytest.raises(CommandError) as excinfo:
        run("register_mcp_server", "--label", "hotel", "--url", "not a url", "--authorization", "AUTH-SECRET-123")

    assert "url" in str(excinfo.value)
    assert "AUTH-SECRET-123" not in str(excinfo.value)
    assert not McpServer.objects.exists()
