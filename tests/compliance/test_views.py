from __future__ import annotations

import csv
import io
import logging

import pytest
from django.urls import reverse

from approvals import services
from audit.models import AuditEvent
from compliance import bundle, exports
from compliance.models import Export, LegalHold

pytestmark = pytest.mark.django_db


@pytest.fixture
def case(make_request, alice, effects):
    req = make_request()
    services.decide(req, approve=True, by=alice, reason="Known guest")
    return req


def pages(case, owner=None) -> list[tuple[str, str]]:
    """Every review page; the export on them is `owner`'s (default: the case's decider)."""
    hold = LegalHold.objects.create(request=case, reason="r", placed_by=case.decided_by)
    export = Export.objects.create(
        requested_by=owner or case.decided_by, status=Export.Status.DONE, file_name="nope.zip"
    )
    return [
        ("get", reverse("review_search")),
        ("get", reverse("review_csv")),
        ("get", reverse("review_metrics")),
        ("get", reverse("review_case", args=[case.pk])),
        ("get", reverse("review_export", args=[export.pk])),
        ("get", reverse("review_export_download", args=[export.pk])),
        ("post", reverse("review_export_create")),
        ("post", reverse("review_place_hold", args=[case.pk])),
        ("post", reverse("review_release_hold", args=[hold.pk])),
    ]


def test_anonymous_people_are_sent_to_log_in_on_every_review_page(client, case):
    for method, url in pages(case):
        response = getattr(client, method)(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url


@pytest.mark.parametrize("persona", ["alice", "bob", "charlie"])
def test_staff_and_outsiders_without_the_permission_get_403_on_every_review_page(client, case, persona, request):
    client.force_login(request.getfixturevalue(persona))
    for method, url in pages(case):
        assert getattr(client, method)(url).status_code == 403, (persona, url)


@pytest.mark.parametrize("persona", ["rita", "admin_user"])
def test_reviewers_and_superusers_can_open_every_review_page(client, case, persona, request, monkeypatch):
    monkeypatch.setattr("compliance.tasks.build_export.delay", lambda pk: None)
    user = request.getfixturevalue(persona)
    client.force_login(user)
    for method, url in pages(case, owner=user):
        response = getattr(client, method)(url, {"reason": "Complaint"} if "hold" in url else {})
        # The download of a bundle whose file is missing is a 404; the POSTs redirect.
        expected = {"get": 404 if "download" in url else 200, "post": 302}[method]
        assert response.status_code == expected, (persona, url, response.status_code)


def test_a_reviewer_cannot_decide_and_sees_the_review_link_instead_of_the_queue(client, case, make_request, rita):
    client.force_login(rita)
    pending = make_request()
    response = client.post(reverse("decide", args=[pending.pk]), {"decision": "approve"})
    assert response.status_code == 403
    pending.refresh_from_db()
    assert pending.status == "pending"
    assert client.get(reverse("dashboard"))["Location"] == reverse("review_search")
    assert b'href="/review/"' in client.get(reverse("review_search")).content


def test_staff_without_the_permission_have_no_review_link(client, alice):
    client.force_login(alice)
    assert b'href="/review/"' not in client.get(reverse("dashboard")).content


def test_the_search_filters_by_tool_room_decider_and_text(client, rita, make_request, alice, bob, effects):
    refund = make_request()
    unlock = make_request(name="unlock_door", arguments='{"room": "1204", "reason": "locked out"}')
    services.decide(refund, approve=True, by=alice)
    services.decide(unlock, approve=False, by=bob)
    client.force_login(rita)

    def ids(**params: str) -> list[int]:
        return [r.pk for r in client.get(reverse("review_search"), params).context["page"].object_list]

    assert ids() == [unlock.pk, refund.pk]
    assert ids(tool="unlock_door") == [unlock.pk]
    assert ids(meta="room=1204") == [unlock.pk, refund.pk]
    assert ids(meta="room=999") == []
    assert ids(decided_by=str(alice.pk)) == [refund.pk]
    assert ids(decision="denied") == [unlock.pk]
    assert ids(text="LOCKED OUT") == [unlock.pk]
    assert ids(outcome="none", sort="created_at") == [refund.pk, unlock.pk]
    assert ids(fast="on") == [unlock.pk, refund.pk]  # decided in the same instant as asked
    assert ids(meta="not a pair") == []


def test_the_csv_export_holds_the_searched_rows(client, rita, case, make_request):
    make_request(name="unlock_door")
    client.force_login(rita)
    response = client.get(reverse("review_csv"), {"tool": "refund_minibar_charge"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(r["id"], r["status"], r["decided_by"], r["reason"]) for r in rows] == [
        (str(case.pk), "approved", "Alice", "Known guest")
    ]


def test_the_case_page_flags_arguments_that_differ_from_the_approved_ones(client, rita, case):
    services.record_mcp_call(
        session=case.session,
        item={"id": "c", "approval_request_id": case.upstream_id, "arguments": '{"booking_id": "B42", "amount": 900}'},
    )
    client.force_login(rita)
    html = client.get(reverse("review_case", args=[case.pk])).content.decode()
    assert "MISMATCH" in html and "amount&quot;: 900" in html
    assert "Audit chain: intact." in html
    for kind in ("Session opened", "Requested", "Decided", "Tool call result"):
        assert kind in html


def test_the_case_page_says_when_the_arguments_match(client, rita, case):
    services.record_mcp_call(
        session=case.session,
        item={"id": "c", "approval_request_id": case.upstream_id, "arguments": '{"amount": 120, "booking_id": "B42"}'},
    )
    client.force_login(rita)
    html = client.get(reverse("review_case", args=[case.pk])).content.decode()
    assert "MISMATCH" not in html and "exactly the arguments that were approved" in html


def test_the_case_page_shows_a_row_that_does_not_verify(client, rita, case):
    # Altered below the ORM (the triggers dropped first): the page must say so.
    from tests.audit.tampering import forced

    event = AuditEvent.objects.get(request=case, kind="decided")
    forced("UPDATE approvals_auditevent SET actor_label = 'Bob' WHERE id = %s", [event.pk])
    client.force_login(rita)
    html = client.get(reverse("review_case", args=[case.pk])).content.decode()
    assert "DOES NOT VERIFY" in html and "content does not match" in html


def test_the_case_page_shows_a_forged_payload_behind_a_purge_flag(client, rita, case):
    from django.utils import timezone

    from tests.audit.tampering import forced

    event = AuditEvent.objects.get(request=case, kind="decided")
    forced(
        "UPDATE approvals_auditevent SET payload = %s, payload_purged_at = %s WHERE id = %s",
        ['{"approve": false}', timezone.now(), event.pk],
    )
    client.force_login(rita)
    html = client.get(reverse("review_case", args=[case.pk])).content.decode()
    assert "DOES NOT VERIFY" in html and "it is marked purged, but holds a payload that does not match" in html


def test_the_metrics_page_shows_rates_timings_and_the_rubber_stamps(client, rita, case, make_request, bob):
    services.decide(make_request(name="unlock_door"), approve=False, by=bob)
    client.force_login(rita)
    response = client.get(reverse("review_metrics"))
    m = response.context["m"]
    assert m.total == 2 and m.fast_decisions == 2
    assert {t.name for t in m.by_tool} == {"refund_minibar_charge", "unlock_door"}
    assert {t.name for t in m.by_person} == {"Alice", "Bob"}
    html = response.content.decode()
    assert "<svg" in html and "2 decisions made by a person in under 2 seconds" in html


def test_an_export_is_queued_then_shows_its_progress_and_download(client, rita, case, monkeypatch):
    queued: list[int] = []
    monkeypatch.setattr("compliance.tasks.build_export.delay", queued.append)
    client.force_login(rita)
    response = client.post(reverse("review_export_create"), {"decision": "approved"})
    export = Export.objects.get()
    assert response["Location"] == reverse("review_export", args=[export.pk])
    assert AuditEvent.objects.filter(kind="exported", actor=rita).exists()
    status = client.get(reverse("review_export", args=[export.pk]), {"format": "json"}).json()
    assert status["status"] == "pending" and "download" not in status
    exports.build_export(export.pk)
    status = client.get(reverse("review_export", args=[export.pk]), {"format": "json"}).json()
    assert status["status"] == "done" and status["percent"] == 100
    download = client.get(status["download"])
    assert download.status_code == 200 and b"".join(download.streaming_content)[:2] == b"PK"


def test_placing_and_releasing_a_legal_hold_from_the_case_page(client, rita, case):
    client.force_login(rita)
    client.post(reverse("review_place_hold", args=[case.pk]), {"reason": "Complaint 4711"})
    hold = LegalHold.objects.active().get()
    assert hold.placed_by == rita and hold.reason == "Complaint 4711"
    client.post(reverse("review_release_hold", args=[hold.pk]))
    assert not LegalHold.objects.active().exists()


def test_an_export_is_visible_to_its_reviewer_and_superusers_only(client, rita, admin_user, django_user_model):
    other = django_user_model.objects.create_user("ruth", password="x")
    other.groups.add(*rita.groups.all())
    export = Export.objects.create(requested_by=rita, status=Export.Status.DONE, file_name="nope.zip")
    urls = [reverse("review_export", args=[export.pk]), reverse("review_export_download", args=[export.pk])]

    client.force_login(other)
    assert [client.get(url).status_code for url in urls] == [403, 403]
    assert client.get(urls[0], {"format": "json"}).status_code == 403
    assert client.get(reverse("review_export", args=[export.pk + 1])).status_code == 404

    client.force_login(rita)
    assert client.get(urls[0]).status_code == 200
    client.force_login(admin_user)
    assert client.get(urls[0]).status_code == 200


def test_a_403_logs_one_line_without_a_traceback(client, alice, case, caplog):
    client.force_login(alice)
    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert client.get(reverse("review_case", args=[case.pk])).status_code == 403
        assert client.post(reverse("review_place_hold", args=[case.pk])).status_code == 403
    records = [r for r in caplog.records if r.name == "django.request"]
    assert [r.getMessage() for r in records] == [
        f"Forbidden: {reverse('review_case', args=[case.pk])} (user alice)",
        f"Forbidden: {reverse('review_place_hold', args=[case.pk])} (user alice)",
    ]
    assert all(r.exc_info is None for r in records)


def test_the_case_page_shows_the_internal_note_apart_from_the_guests(client, make_request, alice, rita, effects):
    req = make_request()
    services.decide(req, approve=False, by=alice, guest_note="Please see the front desk", internal_note="No ID shown")
    client.force_login(rita)
    page = client.get(reverse("review_case", args=[req.pk])).content.decode()
    assert "Please see the front desk" in page and "(told to the guest)" in page
    assert "Internal note:</strong> No ID shown" in page


def test_the_search_form_speaks_the_readers_language_and_names_people_by_display_name(client, rita, alice):
    alice.first_name, alice.last_name = "Alice", "Archer"
    alice.save()
    client.force_login(rita)
    page = client.get(reverse("review_search"), HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert "Entschieden von" in page and "Neueste zuerst" in page and "Genehmigt" in page
    assert ">Alice Archer<" in page


# Sharing an export --------------------------------------------------------------------------------


@pytest.fixture
def ruth(django_user_model, compliance_group):
    """Ruth: another compliance reviewer."""
    user = django_user_model.objects.create_user("ruth", password="x", first_name="Ruth")
    user.groups.add(compliance_group)
    return user


@pytest.fixture
def sam(django_user_model, compliance_group):
    """Sam: a third compliance reviewer, whom nobody shares with."""
    user = django_user_model.objects.create_user("sam", password="x", first_name="Sam")
    user.groups.add(compliance_group)
    return user


@pytest.fixture
def ready_export(rita, settings):
    export = Export.objects.create(requested_by=rita, status=Export.Status.DONE, file_name="bundle-1.zip")
    path = bundle.export_path(export.file_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PK zip bytes")
    return export


def share_url(export):
    return reverse("review_export_share", args=[export.pk])


def test_the_creator_shares_an_export_and_the_shared_reviewer_opens_and_downloads_it(
    client, rita, ruth, sam, ready_export, caplog
):
    client.force_login(rita)
    page = client.get(reverse("review_export", args=[ready_export.pk])).content.decode()
    assert "Only its creator can see this export." in page
    assert 'name="people"' in page and "Ruth" in page and "Sam" in page and "Rita</label>" not in page
    response = client.post(share_url(ready_export), {"people": [ruth.pk]})
    assert response.status_code == 302
    assert list(ready_export.shared_with.all()) == [ruth]
    row = AuditEvent.objects.get(kind="export_shared")
    assert (row.actor, row.payload) == (
        rita,
        {"export_id": ready_export.pk, "shared_with": [ruth.pk], "added": [ruth.pk], "removed": []},
    )
    assert "Also visible to: Ruth" in client.get(reverse("review_export", args=[ready_export.pk])).content.decode()

    client.force_login(ruth)
    page = client.get(reverse("review_export", args=[ready_export.pk]))
    assert page.status_code == 200 and 'name="people"' not in page.content.decode()
    download = client.get(reverse("review_export_download", args=[ready_export.pk]))
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"PK zip bytes"
    assert ready_export in client.get(reverse("review_search")).context["exports"]

    client.force_login(sam)
    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert client.get(reverse("review_export_download", args=[ready_export.pk])).status_code == 403
    records = [r for r in caplog.records if r.name == "django.request"]
    assert [r.getMessage() for r in records] == [
        f"Forbidden: {reverse('review_export_download', args=[ready_export.pk])} (user sam)"
    ]
    assert records[0].exc_info is None


def test_unsharing_takes_the_export_away_again(client, rita, ruth, ready_export):
    client.force_login(rita)
    client.post(share_url(ready_export), {"people": [ruth.pk]})
    client.post(share_url(ready_export), {})
    assert not ready_export.shared_with.exists()
    assert AuditEvent.objects.filter(kind="export_shared").last().payload["removed"] == [ruth.pk]
    client.force_login(ruth)
    assert client.get(reverse("review_export", args=[ready_export.pk])).status_code == 403


def test_only_the_creator_can_share_an_export(client, rita, ruth, sam, ready_export, admin_user):
    exports.share(ready_export, by=rita, people=[ruth])
    for person in (ruth, sam, admin_user):
        client.force_login(person)
        assert client.post(share_url(ready_export), {"people": [sam.pk]}).status_code == 403, person
    assert list(ready_export.shared_with.all()) == [ruth]
    with pytest.raises(exports.ShareError):
        exports.share(ready_export, by=ruth, people=[sam])
    assert AuditEvent.objects.filter(kind="export_shared").count() == 1


def test_an_export_is_shared_with_compliance_reviewers_only(client, rita, alice, charlie, ready_export):
    client.force_login(rita)
    for person in (alice, charlie):
        response = client.post(share_url(ready_export), {"people": [person.pk]}, follow=True)
        assert "An export can only be shared with compliance reviewers." in response.content.decode()
    with pytest.raises(exports.ShareError):
        exports.share(ready_export, by=rita, people=[alice])
    assert not ready_export.shared_with.exists()
    assert not AuditEvent.objects.filter(kind="export_shared").exists()
