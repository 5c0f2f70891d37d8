"""Which bridge holds which call: the lease reads and writes run_bridge makes every tick
(realtime_bridge/sideband.py), called directly. Two bridges are two names."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from approvals import services
from realtime_bridge import sideband
from realtime_bridge.models import Call

A, B = "host-a:101:aaaaaa", "host-b:202:bbbbbb"


def live_call(n: int) -> Call:
    session = services.open_session(kind="sideband", label=f"Line {n}", metadata={}, call_id=f"rtc_{n:032x}")
    return Call.objects.create(call_id=f"rtc_{n:032x}", kind="sip", status="accepted", session=session)


def held(name: str) -> set[int]:
    return {pk for pk, _, _ in sideband._claim_calls(name)}


def expire(name: str) -> None:
    Call.objects.filter(leased_by=name).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


@pytest.mark.django_db
def test_a_lone_bridge_claims_every_live_call_and_none_that_is_over():
    calls = [live_call(n) for n in range(3)]
    Call.objects.filter(pk=calls[2].pk).update(status="ended")

    assert held(A) == {calls[0].pk, calls[1].pk}
    call = Call.objects.get(pk=calls[0].pk)
    assert call.lease_expires_at is not None
    assert call.leased_by == A and call.lease_expires_at > timezone.now()


@pytest.mark.django_db
def test_a_second_bridge_takes_only_free_calls_up_to_its_fair_share():
    first = [live_call(n) for n in range(4)]
    assert held(A) == {c.pk for c in first}
    assert held(B) == set()  # nothing is free: held calls are never taken while their lease runs

    new = [live_call(n) for n in range(4, 8)]
    assert held(B) == {c.pk for c in new}  # 8 calls, 2 bridges: room for 4
    assert held(A) == {c.pk for c in first}
    assert held(B) == {c.pk for c in new}  # renewing changes nothing


@pytest.mark.django_db
def test_the_calls_of_a_bridge_whose_leases_expired_pass_to_another():
    calls = [live_call(n) for n in range(3)]
    held(A)
    expire(A)  # A died: it renews no more

    assert held(B) == {c.pk for c in calls}
    assert held(A) == set()  # back from the dead, it holds nothing


@pytest.mark.django_db
def test_a_nudged_call_is_claimed_by_one_bridge_only_until_it_is_released():
    call = live_call(1)

    assert sideband._claim_call(A, call.pk) == (call.pk, call.call_id, call.session_id)
    assert sideband._claim_call(B, call.pk) is None
    assert sideband._release_calls(A) == [call.pk]
    assert sideband._claim_call(B, call.pk) is not None
    Call.objects.filter(pk=call.pk).update(status="ended")
    assert sideband._claim_call(A, call.pk) is None


def test_a_bridge_renews_its_leases_well_within_them(settings):
    settings.BRIDGE_LEASE_SECONDS = 15
    assert sideband.Bridge(name=A).tick_seconds == sideband.RESCAN_SECONDS
    settings.BRIDGE_LEASE_SECONDS = 2
    assert sideband.Bridge(name=A).tick_seconds < 1
