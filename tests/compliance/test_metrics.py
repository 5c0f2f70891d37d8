from datetime import timedelta

from django.contrib.auth.models import Group
from django.utils import timezone

from approvals import services
from approvals.models import ApprovalRequest
from compliance import metrics


def _decided(make_request, user, seconds: float, tool: str) -> None:
    req = services.decide(make_request(name=tool), approve=True, by=user)
    assert req.decided_at is not None
    # Test set-up, not a transition: a decision that took `seconds`.
    ApprovalRequest.objects.filter(pk=req.pk).update(created_at=req.decided_at - timedelta(seconds=seconds))


def test_time_to_decision_percentiles_are_nearest_rank_per_tool_person_and_group(make_request, alice, bob):
    managers = Group.objects.create(name="managers")
    bob.groups.add(managers)
    for seconds in (1, 3, 5, 7, 9, 11, 13, 15, 17, 19):
        _decided(make_request, alice, seconds, "unlock_door")
    for slow_or_fast in (0.5, 40):
        _decided(make_request, bob, slow_or_fast, "issue_refund")
    services.expire_request(make_request(name="unlock_door").pk, now=timezone.now() + timedelta(days=1))

    now = timezone.now()
    m = metrics.compute(start=now - timedelta(days=2), end=now + timedelta(days=2))

    tools = {t.name: t for t in m.by_tool}
    assert (tools["unlock_door"].count, tools["unlock_door"].p50, tools["unlock_door"].p95) == (10, 9, 19)
    assert (tools["issue_refund"].p50, tools["issue_refund"].p95) == (0.5, 40)
    people = {t.name: t for t in m.by_person}
    assert (people["Alice"].count, people["Alice"].fast) == (10, 1)
    assert (people["Bob"].count, people["Bob"].fast) == (2, 1)
    groups = {t.name: t for t in m.by_group}
    assert groups["managers"].count == 2 and groups["(no group)"].count == 10
    assert m.fast_decisions == 2
    assert m.total == 13
    assert dict((label, n) for label, n, _ in m.rates)["Expired (no decision in time)"] == 1
