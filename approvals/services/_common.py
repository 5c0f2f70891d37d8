"""What every service module shares: the error a lost transition raises, how people are named,
and how work is handed to after-commit."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from approvals.models import ApprovalRequest

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# The longest reason a person may type; it is read aloud by the assistant, so keep it short.
MAX_REASON_LENGTH = 500
# The longest internal note on a decision (audit only, never sent upstream).
MAX_INTERNAL_NOTE_LENGTH = 2000
# Who decided, when no person did.
BY_DEADLINE = "deadline"
BY_SESSION_END = "session ended"
# Who the audit names for a change made from a management command (no person logged in).
BY_COMMAND_LINE = "command line"
DEFAULT_CANCEL_REASON = "The session ended before a decision."

Status = ApprovalRequest.Status


class TransitionError(Exception):
    """The request is not in a state that allows the change. The message says what it is now
    ("This request was already approved by Alice"); `request` is its current row."""

    def __init__(self, message: str, *, request: ApprovalRequest | None = None) -> None:
        super().__init__(message)
        self.request = request


class RequirementMissing(ValidationError):
    """A decision lacks what its rule requires (a reason, a confirmation): nothing was changed.
    `code` is "reason_required" or "confirm_required"; `field` names the form field to fill in
    ("reason", "confirmed"). Views answer 400 with the message."""

    def __init__(self, message: str, *, code: str, field: str) -> None:
        super().__init__(message, code=code)
        self.field = field

    def __str__(self) -> str:
        return str(self.message)


class StepUpRequired(PermissionDenied):
    """A decision under a rule that requires a step-up came without a valid passkey assertion
    (none, expired, replayed, for another request or person, or one that does not verify):
    nothing was changed. Views answer 403 with the message and `step_up: true`."""


def user_label(user: User) -> str:
    """A person's name as cards and the audit show it."""
    return user.get_full_name() or user.get_username()


def actor_label(by: User | None) -> str:
    """Who the audit names for a change: the person, or the command line when there is none."""
    return user_label(by) if by is not None else BY_COMMAND_LINE


def closed_message(req: ApprovalRequest) -> str:
    """What a request that can no longer be decided is, in words, for a person who tried."""
    if req.status == Status.APPROVED:
        return f"This request was already approved by {req.decided_by_label}."
    if req.status == Status.DENIED and req.edited_arguments:
        return f"This request was already approved with changes by {req.decided_by_label}."
    if req.status == Status.DENIED:
        return f"This request was already denied by {req.decided_by_label}."
    if req.status == Status.EXPIRED:
        return f"This request has expired: {req.reason}"
    if req.status == Status.CANCELLED:
        return f"This request was cancelled because the session ended ({req.reason})"
    return "This request is still pending."


def on_commit(func: Callable[[], Any]) -> None:
    """Run `func` once the current transaction commits (at once outside one)."""
    # Everything that leaves the process waits for the commit: a dashboard must never show,
    # nor the relay send, a decision that was rolled back. robust=True: a broker or Redis
    # outage after commit is logged, not raised at the person whose decision did commit, and
    # the remaining callbacks still run (the sweep and the snapshots heal what was missed).
    if isinstance(func, partial) and not hasattr(func, "__qualname__"):
        # Django names the callback in its log line when it fails; a partial has no name.
        func.__qualname__ = getattr(func.func, "__qualname__", repr(func.func))  # type: ignore[attr-defined]
    transaction.on_commit(func, robust=True)
