"""The compliance review's changes to cases: legal holds and the retention purge. Like
approvals/services/: one conditional UPDATE per transition, the audit row in the same
transaction. Export jobs are in compliance/exports.py; sealing the chain is audit/sealing.py."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from approvals.models import ApprovalRequest, ConversationLine
from approvals.services import user_label
from audit import chain, purging, writer
from audit.models import AuditEvent
from compliance.models import AuditKind, LegalHold

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


class HoldError(Exception):
    pass


# Legal holds ---------------------------------------------------------------------------------


def place_hold(req: ApprovalRequest, *, by: User, reason: str) -> LegalHold:
    """Keep a case out of the retention purge. Raises HoldError if it already has an active hold
    or its contents were purged already. Side effect: audit LEGAL_HOLD_PLACED."""
    reason = reason.strip()
    if not reason:
        raise HoldError("Say why the case is held.")
    if req.purged_at is not None:
        raise HoldError("This case's contents were already purged.")
    try:
        with transaction.atomic():
            # The partial unique constraint (one active hold per case) decides between two
            # reviewers placing a hold at once.
            hold = LegalHold.objects.create(request=req, reason=reason, placed_by=by)
            writer.record(
                kind=AuditKind.LEGAL_HOLD_PLACED,
                request=req,
                session_id=req.session_id,
                actor=by,
                actor_label=user_label(by),
                payload={"hold_id": hold.pk, "reason": reason},
                created_at=hold.placed_at,
            )
    except IntegrityError:
        raise HoldError("This case is already under legal hold.") from None
    return hold


def release_hold(hold: LegalHold, *, by: User) -> bool:
    """End a legal hold. Idempotent: False when it was already released. Side effect: audit
    LEGAL_HOLD_RELEASED."""
    now = timezone.now()
    with transaction.atomic():
        # Conditional on released_at IS NULL: a second release changes nothing and writes no row.
        won = LegalHold.objects.filter(pk=hold.pk, released_at__isnull=True).update(released_at=now, released_by=by)
        if won:
            writer.record(
                kind=AuditKind.LEGAL_HOLD_RELEASED,
                request_id=hold.request_id,
                actor=by,
                actor_label=user_label(by),
                payload={"hold_id": hold.pk},
                created_at=now,
            )
    return bool(won)


# Retention -----------------------------------------------------------------------------------


def purge_expired(*, now: datetime | None = None) -> dict[str, int] | None:
    """The retention job (the beat task's body), the only way contents are purged: purge what is
    older than AUDIT_RETENTION_DAYS (never when it is 0)."""
    days = settings.AUDIT_RETENTION_DAYS
    if days <= 0:
        return None
    now = now or timezone.now()
    return _purge(before=now - timedelta(days=days), now=now, retention_days=days)


def _purge(*, before: datetime, now: datetime, retention_days: int) -> dict[str, int]:
    """Remove the contents of every decided request created before `before` and not under legal
    hold: its arguments, raw item and call result, the payloads of its audit rows, and older
    conversation lines of sessions without a held case. Payload hashes and row hashes stay, so the
    chain still verifies. Idempotent. Side effect: one audit PURGED row when anything was purged,
    naming every audit row it emptied (and a digest of their payload hashes): verify_audit names
    a purged row that no such record covers (compliance/integrity.py)."""
    held = LegalHold.objects.active().values("request_id")
    held_sessions = ApprovalRequest.objects.filter(pk__in=held).values("session_id")
    with transaction.atomic():
        # Conditional on purged_at IS NULL: a concurrent purge does each request once.
        n_requests = (
            ApprovalRequest.objects.filter(created_at__lt=before, purged_at__isnull=True)
            .exclude(status=ApprovalRequest.Status.PENDING)
            .exclude(pk__in=held)
            .update(arguments="", raw_item={}, call_arguments="", call_output=None, call_error=None, purged_at=now)
        )
        # A case's rows go with it, even those written after `before` (its call result, say);
        # rows of no case go by their own age, unless their session has a held case.
        # The purge's own records stay whole: they say what retention removed, and when.
        events = AuditEvent.objects.exclude(kind=AuditKind.PURGED).filter(
            Q(request__purged_at=now)
            | (
                Q(request__isnull=True, created_at__lt=before)
                & (Q(session__isnull=True) | ~Q(session_id__in=held_sessions))
            )
        )
        # The one UPDATE the append-only triggers let through (audit/purging.py).
        purged = purging.purge_payloads(events, now=now)
        n_lines, _ = (
            ConversationLine.objects.filter(created_at__lt=before).exclude(session_id__in=held_sessions).delete()
        )
        counts = {"requests": n_requests, "audit_rows": len(purged), "conversation_lines": n_lines}
        if any(counts.values()):
            writer.record(
                kind=AuditKind.PURGED,
                actor_label="retention",
                payload={
                    "before": chain.format_time(before),
                    "retention_days": retention_days,
                    **counts,
                    **purging.covering(purged),
                },
                created_at=now,
            )
    return counts
