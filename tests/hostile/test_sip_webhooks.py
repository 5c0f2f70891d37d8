"""SIP webhooks (`/webhooks/openai`), hostile: unsigned, mis-signed, stale, and correctly signed
but malformed deliveries. The simulator (a real process) plays OpenAI for the answer attempt.

Invariant: never a 500; a refused delivery (400) changes nothing (no delivery row, no call, no
session, no audit row); a signed well-formed one may be recorded, and one that cannot be
answered (502) leaves no call behind, so that OpenAI's retry is not taken for a duplicate."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from approvals.models import RealtimeSession
from audit.models import AuditEvent
from realtime_bridge.models import Call, WebhookDelivery
from simulator.webhooks import signed_headers
from tests.hostile import strategies, surfaces
from tests.plugins.simulator import Simulator
from tests.realtime_bridge.test_webhooks import SECRET, incoming, post

pytestmark = pytest.mark.django_db

HEADER_NAMES = ["webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "user-agent"]
_header_values = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
    st.sampled_from(["v1,", "v1,AAAA", "v1a,xyz", str(int(time.time())), "-1", "9" * 30, "1e9", " "]),
)


def snapshot() -> tuple[int, int, int, int]:
    return (
        WebhookDelivery.objects.count(),
        Call.objects.count(),
        RealtimeSession.objects.count(),
        AuditEvent.objects.count(),
    )


@pytest.fixture
def openai_is_the_simulator(simulator: Simulator, settings: Any) -> None:
    settings.OPENAI_WEBHOOK_SECRET = SECRET
    settings.OPENAI_BASE_URL = simulator.base_url
    settings.OPENAI_API_KEY = simulator.api_key


@given(
    body=st.binary(max_size=400) | st.builds(lambda e: json.dumps(e).encode(), st.just(incoming())),
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), _header_values),
)
def test_unsigned_or_mis_signed_deliveries_are_refused_and_change_nothing(
    client: Client, openai_is_the_simulator: None, body: bytes, headers: dict[str, str]
) -> None:
    before = snapshot()
    response = post(client, body, headers)
    assert response.status_code == 400, response.content
    assert snapshot() == before
    surfaces.ran("SIP webhooks (unsigned)")


_counter = iter(range(10**9))


@given(
    event=st.one_of(
        strategies.wrong_typed(st.just(incoming())).map(json.loads),
        st.just(incoming()).map(lambda e: {**e, "type": "realtime.call.other"}),
        st.builds(
            lambda e, k: {k2: v for k2, v in e.items() if k2 != k},
            st.just(incoming()),
            st.sampled_from(list(incoming())),
        ),
    ),
    secret=st.sampled_from([SECRET, SECRET, "whsec_" + "b3RoZXItc2VjcmV0LW9mLTMyLWJ5dGVzLWxvbmchIQ=="]),
    age=st.sampled_from([0, 0, 0, 301, -301, 10**6]),
)
def test_signed_hostile_events_never_break_the_endpoint(
    client: Client, openai_is_the_simulator: None, event: Any, secret: str, age: int
) -> None:
    body = json.dumps(event).encode()
    headers = signed_headers(
        body, secret=secret, webhook_id=f"wh_hostile_{next(_counter)}", timestamp=int(time.time()) - age
    )
    before = snapshot()
    response = post(client, body, headers)
    assert response.status_code in (200, 400, 502), response.content
    if response.status_code == 400:
        assert snapshot() == before
    else:
        # Only OpenAI's own signature, fresh, gets past the check.
        assert secret == SECRET and age == 0
    if response.status_code == 502:
        assert Call.objects.count() == before[1]  # released: the retry is not a duplicate
    surfaces.ran("SIP webhooks (signed)")
