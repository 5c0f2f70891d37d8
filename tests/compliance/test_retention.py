from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from approvals import services
from approvals.models import ConversationLine
from audit import sealing
from audit.models import AuditEvent
from audit.verify import verify_chain
from compliance import services as compliance_services
from compliance.models import LegalHold

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _retention(settings):
    settings.AUDIT_RETENTION_DAYS = 30


def purge_all():
    """The retention job, run 30 days and a second from now: everything decided by now goes."""
    return compliance_services.purge_expired(now=timezone.now() + timedelta(days=30, seconds=1))


def test_purge_removes_payloads_and_keeps_the_chain_verifiable(make_request, session, alice, effects):
    req = make_request()
    services.add_conversation_line(session=session, role="user", text="Refund my minibar please")
    services.decide(req, approve=True, by=alice)
    sealing.ensure_sealed()
    counts = purge_all()
    assert counts["requests"] == 1 and counts["audit_rows"] >= 3 and counts["conversation_lines"] == 1
    req.refresh_from_db()
    assert (req.arguments, req.raw_item, req.purged_at is not None) == ("", {}, True)
    requested = AuditEvent.objects.get(request=req, kind="requested")
    assert requested.payload == {} and requested.payload_purged_at is not None
    assert not ConversationLine.objects.exists()
    assert AuditEvent.objects.filter(kind="purged").count() == 1
    report = verify_chain(trusted_keys=None)
    assert report.ok, report.problem


def test_purge_is_idempotent(make_request, alice, effects):
    services.decide(make_request(), approve=True, by=alice)
    purge_all()
    assert purge_all() == {
        "requests": 0,
        "audit_rows": 0,
        "conversation_lines": 0,
    }


def test_a_case_under_legal_hold_keeps_its_contents_until_released(make_request, session, alice, rita, effects):
    held, other = make_request(), make_request()
    services.add_conversation_line(session=session, role="user", text="Unlock 1204 for my wife")
    services.decide(held, approve=True, by=alice)
    services.decide(other, approve=True, by=alice)
    hold = compliance_services.place_hold(held, by=rita, reason="Guest complaint 4711")
    with pytest.raises(compliance_services.HoldError):
        compliance_services.place_hold(held, by=rita, reason="again")
    purge_all()
    held.refresh_from_db()
    other.refresh_from_db()
    assert held.purged_at is None and held.arguments and other.purged_at is not None
    assert AuditEvent.objects.get(request=held, kind="requested").payload["item"]
    assert ConversationLine.objects.count() == 1  # its session is held too
    assert compliance_services.release_hold(hold, by=rita) is True
    assert compliance_services.release_hold(hold, by=rita) is False
    purge_all()
    held.refresh_from_db()
    assert held.purged_at is not None
    assert [e.kind for e in AuditEvent.objects.filter(request=held, kind__startswith="legal")] == [
        "legal_hold_placed",
        "legal_hold_released",
    ]
    assert LegalHold.objects.active().count() == 0
    assert verify_chain(trusted_keys=None).ok


def test_pending_requests_and_recent_ones_are_never_purged(make_request, alice, effects):
    pending = make_request()
    services.decide(make_request(), approve=True, by=alice)
    counts = compliance_services.purge_expired(now=timezone.now() + timedelta(days=29))
    assert counts == {"requests": 0, "audit_rows": 0, "conversation_lines": 0}
    purge_all()
    pending.refresh_from_db()
    assert pending.purged_at is None


def test_retention_of_zero_days_keeps_everything(make_request, alice, effects, settings):
    services.decide(make_request(), approve=True, by=alice)
    settings.AUDIT_RETENTION_DAYS = 0
    assert compliance_services.purge_expired() is None
    settings.AUDIT_RETENTION_DAYS = 30
    purged = compliance_services.purge_expired(now=timezone.now() + timedelta(days=31))
    assert purged is not None and purged["requests"] == 1
