from __future__ import annotations

import pytest
from django.urls import reverse

from approvals import services
from approvals.admin import MASK
from approvals.models import AuditKind, ClientToken, McpServer
from audit.models import AuditEvent

AUTH_SECRET = "sk-AUTH-SECRET-9f8e7d"
HEADER_SECRET = "HEADER-SECRET-1a2b3c"


@pytest.fixture
def server(db) -> McpServer:
    server, _ = services.register_mcp_server(
        label="hotel",
        url="https://mcp.hotel.example/mcp",
        authorization=AUTH_SECRET,
        headers={"X-Api-Key": HEADER_SECRET},
    )
    return server


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def change_form_data(server: McpServer, **overrides: str) -> dict[str, str]:
    data = {
        "label": server.label,
        "url": server.url,
        "transport": server.transport,
        "require_approval": server.require_approval,
        "description": server.description,
        "enabled": "on",
        "authorization": "",
        "headers": f"X-Api-Key: {MASK}",
    }
    data.update(overrides)
    return data


def test_mcp_server_secrets_never_appear_in_the_admin(admin_client, server):
    pages = [
        admin_client.get(reverse("admin:approvals_mcpserver_changelist")),
        admin_client.get(reverse("admin:approvals_mcpserver_change", args=[server.pk])),
        admin_client.get(reverse("admin:approvals_mcpserver_history", args=[server.pk])),
    ]

    for response in pages:
        assert response.status_code == 200
        html = response.content.decode()
        assert AUTH_SECRET not in html
        assert HEADER_SECRET not in html
    assert "X-Api-Key" in pages[1].content.decode()  # names are shown, values masked


def test_blank_authorization_and_masked_headers_keep_their_values(admin_client, server):
    response = admin_client.post(
        reverse("admin:approvals_mcpserver_change", args=[server.pk]),
        change_form_data(server, description="Front office"),
    )

    assert response.status_code == 302
    server.refresh_from_db()
    assert (server.description, server.authorization, server.headers) == (
        "Front office",
        AUTH_SECRET,
        {"X-Api-Key": HEADER_SECRET},
    )


def test_new_values_replace_and_removed_lines_delete(admin_client, server):
    response = admin_client.post(
        reverse("admin:approvals_mcpserver_change", args=[server.pk]),
        change_form_data(server, authorization="new-token", headers="X-Property: lisbon"),
    )

    assert response.status_code == 302
    server.refresh_from_db()
    assert (server.authorization, server.headers) == ("new-token", {"X-Property": "lisbon"})


def test_clear_authorization_removes_it(admin_client, server):
    admin_client.post(
        reverse("admin:approvals_mcpserver_change", args=[server.pk]),
        change_form_data(server, clear_authorization="on"),
    )

    server.refresh_from_db()
    assert server.authorization == ""


@pytest.mark.parametrize(
    ("headers", "error"),
    [(f"X-New: {MASK}", "type a value for the new header X-New"), ("no colon here", "valid header name")],
)
def test_bad_header_lines_are_refused_without_showing_secrets(admin_client, server, headers, error):
    response = admin_client.post(
        reverse("admin:approvals_mcpserver_change", args=[server.pk]),
        change_form_data(server, headers=headers),
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert error in html
    assert AUTH_SECRET not in html and HEADER_SECRET not in html
    server.refresh_from_db()
    assert server.headers == {"X-Api-Key": HEADER_SECRET}


def test_client_token_admin_never_shows_the_hash(admin_client, db):
    token, plaintext = services.issue_token(label="Room 1204", metadata={"room": "1204"})

    for url in [
        reverse("admin:approvals_clienttoken_changelist"),
        reverse("admin:approvals_clienttoken_change", args=[token.pk]),
    ]:
        html = admin_client.get(url).content.decode()
        assert "Room 1204" in html and token.prefix in html
        assert token.token_hash not in html
        assert plaintext not in html


def test_client_tokens_are_not_added_or_deleted_in_the_admin(admin_client, db):
    token, _ = services.issue_token(label="Room 1204", metadata={})

    assert admin_client.get(reverse("admin:approvals_clienttoken_add")).status_code == 403
    assert admin_client.get(reverse("admin:approvals_clienttoken_delete", args=[token.pk])).status_code == 403


def test_revoke_action_goes_through_the_service(admin_client, admin_user, db):
    token, plaintext = services.issue_token(label="Room 1204", metadata={})
    already, _ = services.issue_token(label="Room 7", metadata={})
    services.revoke_token(already, by=None)

    response = admin_client.post(
        reverse("admin:approvals_clienttoken_changelist"),
        {"action": "revoke", "_selected_action": [token.pk, already.pk]},
        follow=True,
    )

    html = response.content.decode()
    assert "Revoked 1 token(s)." in html
    assert "1 token(s) were already revoked." in html
    assert ClientToken.objects.for_plaintext(plaintext) is None
    revoked = AuditEvent.objects.filter(kind=AuditKind.TOKEN_REVOKED).order_by("pk")
    assert [(e.payload["token_id"], e.actor) for e in revoked] == [(already.pk, None), (token.pk, admin_user)]


def test_approval_records_are_read_only_in_the_admin(admin_client, make_request, alice, server):
    req = services.decide(make_request(), approve=True, by=alice)
    event = AuditEvent.objects.filter(request=req).first()

    records = [("approvals", "approvalrequest", req.pk), ("audit", "auditevent", event.pk)]
    records.append(("approvals", "realtimesession", req.session_id))
    for app, name, pk in records:
        change = reverse(f"admin:{app}_{name}_change", args=[pk])
        page = admin_client.get(change)
        assert page.status_code == 200
        assert 'name="_save"' not in page.content.decode()  # no Save button: a view, not a form
        assert admin_client.post(change, {}).status_code == 403
        assert admin_client.get(reverse(f"admin:{app}_{name}_add")).status_code == 403
        assert admin_client.get(reverse(f"admin:{app}_{name}_delete", args=[pk])).status_code == 403
        html = admin_client.get(reverse(f"admin:{app}_{name}_changelist")).content.decode()
        assert AUTH_SECRET not in html and HEADER_SECRET not in html
    req.refresh_from_db()
    assert req.status == "approved"


def test_the_admin_is_closed_to_non_staff(client, charlie):
    client.force_login(charlie)

    response = client.get(reverse("admin:approvals_mcpserver_changelist"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
