"""Decision POSTs, hostile: any form, any body, any request id, from staff and others.

Invariant: never a 500; a refused POST (4xx) changes nothing (the request's status, its
decisions, the audit rows); a 200 only for a well-formed decision, which is then recorded and
audited once. Persona requests are opened through the real services."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from approvals import services
from approvals.models import ApprovalRequest
from audit.models import AuditEvent
from tests.hostile import surfaces

pytestmark = pytest.mark.django_db

FIELDS = ["decision", "guest_note", "reason", "internal_note", "confirmed", "step_up"]
_values = st.one_of(
    st.text(max_size=50),
    st.sampled_from(["approve", "deny", "APPROVE", " approve", "approve\x00", "1", "true", "", "on"]),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "\x00", "{"]), st.integers(0, 20_000)),
    st.sampled_from(['{"id":"x","rawId":"x","response":{},"type":"public-key"}', "{", "[]", "null"]),
)
FORMS = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), st.lists(_values, min_size=1, max_size=3))
BODIES = st.tuples(
    st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "multipart/form-data",
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded; charset=utf-16",
            "application/x-www-form-urlencoded; charset=nonsense",
        ]
    ),
    st.binary(max_size=300) | st.sampled_from([b"decision=approve&decision=%ff%fe", b"--x\r\n", b"decision=%"]),
)


def snapshot() -> tuple[list[Any], int]:
    """Every request row as stored (status, decider, notes, approvals so far) and the audit rows."""
    return list(ApprovalRequest.objects.order_by("pk").values()), AuditEvent.objects.count()


def pending_request(n: int) -> ApprovalRequest:
    session = services.open_session(kind="relay", label=f"Room {n}", metadata={"room": str(n)})
    req, _ = services.open_request(
        session=session,
        upstream_id=f"mcpr_hostile_{n}",
        server_label="hotel",
        tool_name="unlock_door",
        arguments='{"room": "1204"}',
        raw_item={"type": "mcp_approval_request", "id": f"mcpr_hostile_{n}"},
    )
    return req


def well_formed(form: dict[str, list[str]]) -> bool:
    return form.get("decision", [None])[-1] in ("approve", "deny")


def test_decision_posts_refuse_bad_input_and_change_nothing(alice: Any, charlie: Any) -> None:
    staff, outsider, anonymous = Client(), Client(), Client()
    staff.force_login(alice)
    outsider.force_login(charlie)
    current = [pending_request(0)]

    @given(
        form=FORMS,
        body=st.none() | BODIES,
        who=st.sampled_from(["staff", "staff", "staff", "outsider", "anonymous"]),
        target=st.sampled_from(["pending", "missing", "decided"]),
    )
    def one(form: dict[str, list[str]], body: tuple[str, bytes] | None, who: str, target: str) -> None:
        client = {"staff": staff, "outsider": outsider, "anonymous": anonymous}[who]
        req = current[-1]
        pk = {"pending": req.pk, "missing": 10**9, "decided": current[0].pk if len(current) > 1 else 10**9}[target]
        before = snapshot()
        url = reverse("decide", args=[pk])
        if body is None:
            response = client.post(url, form)
        else:
            response = client.generic("POST", url, body[1], content_type=body[0])
        assert response.status_code != 500
        assert response["Content-Type"] == "application/json" or who == "anonymous", response
        if response.status_code == 200:
            # Only a staff member's well-formed decision on the pending request gets here.
            assert (who, target, body) == ("staff", "pending", None) and well_formed(form), form
            req.refresh_from_db()
            assert req.status == form["decision"][-1] + ("d" if form["decision"][-1] == "approve" else "ied")
            assert AuditEvent.objects.count() > before[1]
            current.append(pending_request(len(current)))
        else:
            assert 400 <= response.status_code < 500, response.status_code
            assert snapshot() == before, (form, body, who, target, response.content[:200])
        surfaces.ran("decision POSTs")

    one()
