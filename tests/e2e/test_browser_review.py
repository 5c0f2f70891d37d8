"""A compliance reviewer in a real Chromium against Daphne and a Celery worker: searches, opens a
case, reads its full timeline, and downloads an evidence bundle that verifies offline."""

from __future__ import annotations

import base64
import threading
import zipfile

import pytest

from approvals import services
from approvals.models import ApprovalRequest
from compliance.verify_bundle import verify
from tests.e2e import test_browser_approval as approval_e2e

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
# The browser (skip locally / fail in CI without Chromium) and the async-unsafe switch, shared.
browser = approval_e2e.browser
_orm_beside_playwright = approval_e2e._orm_beside_playwright

KEY = base64.b64encode(b"\x05" * 32).decode()


@pytest.fixture
def rita(django_user_model, password):
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.get_or_create(name="compliance")
    group.permissions.add(*Permission.objects.filter(content_type__app_label="compliance"))
    user = django_user_model.objects.create_user("rita", "rita@example.org", password, first_name="Rita")
    user.groups.add(group)
    return user


def a_decided_case(alice):
    session = services.open_session(kind="relay", label="Room 1204", metadata={"room": "1204"})
    services.add_conversation_line(session=session, role="user", text="Please unlock 1204 for my wife")
    item = {"type": "mcp_approval_request", "id": "mcpr_e2e", "server_label": "hotel", "name": "unlock_door"}
    item["arguments"] = '{"room": "1204"}'
    req, _ = services.open_request(
        session=session,
        upstream_id="mcpr_e2e",
        server_label="hotel",
        tool_name="unlock_door",
        arguments=item["arguments"],
        raw_item=item,
    )
    services.decide(req, approve=True, by=alice, reason="ID checked at the desk")
    services.mark_decision_sent(req)
    services.record_mcp_call(
        session=session,
        item={"id": "mcp_1", "approval_request_id": "mcpr_e2e", "arguments": '{"room": "1204"}', "output": "Unlocked"},
    )
    # Another case the search must leave out.
    other, _ = services.open_request(
        session=session,
        upstream_id="mcpr_other",
        server_label="hotel",
        tool_name="set_lights",
        arguments="{}",
        raw_item={},
    )
    services.decide(other, approve=True, by=alice)
    return req


def test_a_reviewer_searches_opens_a_case_and_exports_evidence_that_verifies(
    stack,
    browser,
    alice,
    rita,
    password,
    tmp_path,
    settings,
):
    settings.AUDIT_SIGNING_KEY = KEY
    env = {"AUDIT_SIGNING_KEY": KEY, "AUDIT_EXPORT_DIR": str(tmp_path / "exports")}
    web = stack.web(**env)
    stack.worker(**env)
    # In a thread of its own: the services' after-commit broadcasts use async_to_sync, which
    # refuses to run in this thread beside Playwright's event loop.
    made: list[ApprovalRequest] = []
    maker = threading.Thread(target=lambda: made.append(a_decided_case(alice)))
    maker.start()
    maker.join(30)
    (req,) = made

    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page.goto(f"{web.url}/review/")
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{web.url}/review/")

    page.fill("input[name=meta]", "room=1204")
    page.select_option("select[name=decision]", "approved")
    page.fill("input[name=tool]", "unlock_door")
    page.click("#search button[type=submit]")
    page.get_by_text("1 request", exact=True).wait_for(timeout=10000)
    page.click(f"a[href='/review/requests/{req.pk}/']")

    page.locator("#timeline").wait_for(timeout=10000)
    kinds = page.locator("#timeline li").evaluate_all("items => items.map(i => i.dataset.kind)")
    assert kinds == ["session_opened", "requested", "policy_routed", "notified", "decided", "sent", "mcp_call"]
    timeline = page.locator("#timeline").inner_text()
    assert "by Alice" in timeline
    assert "Audit chain: intact." in page.locator("#chain-status").inner_text()
    assert "exactly the arguments that were approved" in page.content()
    assert "Please unlock 1204 for my wife" in page.locator(".case-convo").inner_text()

    page.go_back()
    page.click("button[data-action=export]")
    download_link = page.locator("a[data-action=download]")
    download_link.wait_for(state="visible", timeout=30000)
    digest = page.locator(".export-sha code").inner_text()
    with page.expect_download() as info:
        download_link.click()
    path = tmp_path / "bundle.zip"
    info.value.save_as(path)
    assert verify(str(path), sha256=digest).startswith("OK: 6 audit rows of 1 requests")
    with zipfile.ZipFile(path) as z:
        assert b"unlock_door" in z.read("rows.jsonl") and b"set_lights" not in z.read("rows.jsonl")
    page.close()
