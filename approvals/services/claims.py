"""Claims ("I'm on it"): a staff member tells colleagues that they are handling a request.

A claim is advisory: it never stops anyone allowed from deciding. It is one conditional
UPDATE of the request row (of two people claiming at once exactly one wins), an audit row in
the same transaction, and a dashboard event after commit so that every dashboard that shows
the card shows who is on it. It ends when the request is decided or escalates (cleared by
`_transition.transition`), when the claimer gives it up, when the claimer's last dashboard
closes, or after CLAIM_SECONDS (to_dict ignores an older claim at once; the sweep clears the
row and records the release)."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from approvals import events
from approvals.models import ApprovalRequest, AuditKind
from approvals.services._common import Status, TransitionError, closed_message, on_commit, user_label
from audit import writer

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# Why a claim ended, as the audit row says it.
RELEASED_BY_CLAIMER = "given up"
RELEASED_ON_DISCONNECT = "dashboard closed"
RELEASED_AS_EXPIRED = "expired"

CLAIM_FIELDS_CLEARED = {"claimed_by": None, "claimed_by_label": "", "claimed_at": None}


def _expired_before(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.CLAIM_SECONDS)


def claim(req: ApprovalRequest, *, by: User) -> bool:
    """`by` says they are on `req`. Precondition: `by` may decide its current step (the same
    check as services.decide). Returns True when the claim is now theirs and was not before,
    False when it already was. Side effects: audit CLAIMED; after commit a dashboard event.
    Raises PermissionDenied (not allowed to decide it), TransitionError when it is no longer
    pending (the message says what it is now) or someone else holds a live claim (the message
    names them; `request` is the current row)."""
    if not req.may_decide(by):
        raise PermissionDenied("Only people who may decide this request may claim it.")
    now = timezone.now()
    label = user_label(by)
    with transaction.atomic():
        # Already theirs and live (a second tab, or opening the details after "I'm on it"): the
        # claim keeps its start, so the counter on every card keeps counting from the first
        # claim. A lapsed one of theirs is taken again below, as new.
        if ApprovalRequest.objects.filter(
            pk=req.pk, status=Status.PENDING, claimed_by=by, claimed_at__gt=_expired_before(now)
        ).exists():
            return False
        free = Q(claimed_by__isnull=True) | Q(claimed_at__lte=_expired_before(now))
        won = (
            ApprovalRequest.objects.filter(pk=req.pk, status=Status.PENDING)
            .filter(free | Q(claimed_by=by))
            .update(claimed_by=by, claimed_by_label=label, claimed_at=now)
        )
        if won != 1:
            current = ApprovalRequest.objects.for_one().get(pk=req.pk)
            if current.status != Status.PENDING:
                raise TransitionError(closed_message(current), request=current)
            raise TransitionError(f"{current.claimed_by_label} is on it already.", request=current)
        writer.record(
            kind=AuditKind.CLAIMED,
            request_id=req.pk,
            session_id=req.session_id,
            actor=by,
            actor_label=label,
            payload={"stage": req.stage},
            created_at=now,
        )
        on_commit(partial(events.request_changed, req.pk))
    req.claimed_by, req.claimed_by_label, req.claimed_at = by, label, now
    return True


def release_claim(req: ApprovalRequest, *, by: User, why: str = RELEASED_BY_CLAIMER) -> bool:
    """`by` gives up their claim on `req`. Returns False when they hold none (nothing changes).
    Side effects: audit CLAIM_RELEASED; after commit a dashboard event. Raises nothing."""
    with transaction.atomic():
        won = ApprovalRequest.objects.filter(pk=req.pk, claimed_by=by).update(**CLAIM_FIELDS_CLEARED)
        if won != 1:
            return False
        writer.record(
            kind=AuditKind.CLAIM_RELEASED,
            request_id=req.pk,
            session_id=req.session_id,
            actor=by,
            actor_label=user_label(by),
            payload={"why": why},
        )
        on_commit(partial(events.request_changed, req.pk))
    return True


def release_claims_of(user: User, *, why: str = RELEASED_ON_DISCONNECT) -> int:
    """Release every claim `user` holds (their last dashboard closed). Returns how many."""
    released = 0
    for req in ApprovalRequest.objects.filter(claimed_by=user).only("pk", "session_id"):
        released += release_claim(req, by=user, why=why)
    return released


def release_expired_claims(*, now: datetime | None = None) -> int:
    """The sweep: clear claims older than CLAIM_SECONDS (the cards already ignore them), with
    an audit row each. Cheap when there are none (one indexed-enough query on few rows)."""
    now = now or timezone.now()
    released = 0
    stale = ApprovalRequest.objects.filter(claimed_at__lte=_expired_before(now)).select_related("claimed_by")
    for req in stale:
        with transaction.atomic():
            # Conditional on the same claim: a fresh re-claim since the read above is kept.
            won = ApprovalRequest.objects.filter(pk=req.pk, claimed_at=req.claimed_at).update(**CLAIM_FIELDS_CLEARED)
            if won != 1:
                continue
            writer.record(
                kind=AuditKind.CLAIM_RELEASED,
                request_id=req.pk,
                session_id=req.session_id,
                actor=req.claimed_by,
                actor_label=req.claimed_by_label,
                payload={"why": RELEASED_AS_EXPIRED},
            )
            on_commit(partial(events.request_changed, req.pk))
        released += 1
    return released
