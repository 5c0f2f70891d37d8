"""What the assistant says while a guest waits for staff, and when the answer comes (issue 14).

The holding line. While an approval is pending a session cannot go on with the call the guest
asked for, and a voice guest would hear silence (DESIGN.md, "Protocol facts"). So when a request
is held for staff, the relay asks the model once, with a `response.create` whose `instructions`
say what to tell the guest: that a member of staff is checking, and about how long that usually
takes for the request's rule (the median time to a person's decision of its last decided
requests). Per rule (`holding_line`, frozen into the request's plan) and per client token it
can be turned off; it is said in voice sessions only (upstream says the session's output
modalities include audio). Never while a response is active (REALTIME_PROTOCOL.md 5.5): it
waits for `response.done`, and is dropped if the request is answered first.

The spoken outcome. The follow-up `response.create` after an answer carries instructions built
from the answer's reason only: the note to the guest a person wrote (services.decide's
`guest_note`), the plain words of a deadline or of a rule that decided at once, or, when there
is none, a plain sentence. Internal notes, rule labels and policy text are never in it: they are
not in the reason (services/decisions.py, services/requests.py) and nothing else is read here.

`HoldingLine` is the in-memory side (no Django): the session's voice flag and the lines waiting
for a quiet moment. `line_for` is the database side, called through the session's `db`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from approvals.models import ApprovalRequest

# How many of a rule's latest decisions by a person make "how long it usually takes".
RECENT_DECISIONS = 20
# Decisions older than this say nothing about today's staffing.
RECENT_DAYS = 30

# The sentences the model is asked to say. In English: the model speaks the guest's language.
APPROVED_SENTENCE = "The hotel's staff approved your request."
DENIED_SENTENCE = "The hotel's staff could not approve your request."


def wait_words(seconds: float) -> str:
    """A typical wait as a guest hears it: "less than a minute", "about 3 minutes"."""
    if seconds < 45:
        return "less than a minute"
    minutes = round(seconds / 60)
    if minutes <= 1:
        return "about a minute"
    if minutes < 90:
        return f"about {minutes} minutes"
    hours = round(minutes / 60)
    return "about an hour" if hours <= 1 else f"about {hours} hours"


def holding_sentence(typical_seconds: float | None) -> str:
    """What the guest hears while staff look at the request."""
    if typical_seconds is None:
        return (
            "A member of the hotel's staff is checking your request now; I will tell you as soon as they answer. "
            "You can ask me about anything else meanwhile."
        )
    usually = wait_words(typical_seconds)
    return (
        f"A member of the hotel's staff is checking your request now; that usually takes {usually}. "
        "You can ask me about anything else meanwhile."
    )


def holding_instructions(sentence: str) -> str:
    return (
        "A member of staff must approve the guest's last request before it can be done, and is checking it now. "
        f'Tell the guest, briefly and in their language: "{sentence}" Do not call any tool for this.'
    )


def outcome_sentence(*, approve: bool, reason: str) -> str:
    """The answer in words for the guest: its reason (a note to the guest, a deadline's or a
    rule's plain words), else a plain sentence."""
    reason = " ".join(reason.split())
    if reason:
        return reason
    return APPROVED_SENTENCE if approve else DENIED_SENTENCE


def outcome_instructions(sentences: list[str]) -> str:
    said = " ".join(f'"{s}"' for s in sentences)
    return (
        "The hotel's staff answered the guest's request. Tell the guest what happened, briefly and in their "
        f"language, using this: {said}"
    )


# --- The database side -----------------------------------------------------------------------


def typical_wait_seconds(rule_label: str, *, now: Any = None) -> float | None:
    """The median time from asking to a person's decision of the rule's latest decided
    requests (RECENT_DECISIONS, within RECENT_DAYS), or None with no such history. Deadlines
    and policy decisions are not a person deciding, so they are left out."""
    requests = ApprovalRequest.objects.filter(
        rule_label=rule_label,
        status__in=[ApprovalRequest.Status.APPROVED, ApprovalRequest.Status.DENIED],
        decided_by__isnull=False,
        decided_at__isnull=False,
    )
    if now is not None:
        requests = requests.filter(decided_at__gte=now - timedelta(days=RECENT_DAYS))
    pairs = requests.order_by("-decided_at").values_list("created_at", "decided_at")[:RECENT_DECISIONS]
    waits = [(decided - created).total_seconds() for created, decided in pairs if decided is not None]
    return statistics.median(waits) if waits else None


def line_for(session_id: int, upstream_id: str) -> str | None:
    """The holding line's instructions for the session's request `upstream_id`, or None when
    there is none to say: it is not waiting for staff (a rule decided it at once, or it is
    answered already), or its rule or the session's client token turned the line off."""
    req = (
        ApprovalRequest.objects.filter(session_id=session_id, upstream_id=upstream_id)
        .select_related("session__client_token")
        .first()
    )
    if req is None or req.status != ApprovalRequest.Status.PENDING:
        return None
    if (req.plan or {}).get("holding_line") is False:
        return None
    token = req.session.client_token
    if token is not None and not token.holding_line:
        return None
    return holding_instructions(holding_sentence(typical_wait_seconds(req.rule_label, now=req.created_at)))


# --- The session side --------------------------------------------------------------------------


@dataclass
class HoldingLine:
    """One session's holding lines and spoken outcomes (no I/O). The session asks `due()` for a
    line to send whenever no response is active; `mark_sent` remembers the event id, so that a
    refusal (`conversation_already_has_active_response`) puts the line back."""

    # Whether the session speaks: upstream's session.created/updated say output_modalities.
    # Unknown until then, and a session that never says is not taken for a voice one.
    voice: bool = False
    waiting: dict[str, str] = field(default_factory=dict)  # approval id -> instructions
    said: set[str] = field(default_factory=set)  # approval ids whose line went (or was dropped)
    in_flight: dict[str, tuple[str, str]] = field(default_factory=dict)  # event id -> (approval id, text)
    outcomes: dict[str, str] = field(default_factory=dict)  # approval id -> sentence for the guest

    def observe(self, kind: str | None, event: dict[str, Any]) -> None:
        """Track the session's output modalities, and put back a line upstream refused."""
        if kind in ("session.created", "session.updated"):
            modalities = (event.get("session") or {}).get("output_modalities")
            if isinstance(modalities, list):
                self.voice = "audio" in modalities
        elif kind == "error":
            error = event.get("error") or {}
            refused = self.in_flight.pop(str(error.get("event_id") or ""), None)
            if refused is not None and error.get("code") == "conversation_already_has_active_response":
                approval_id, text = refused
                if approval_id not in self.outcomes:
                    self.waiting[approval_id] = text
                    self.said.discard(approval_id)

    def hold(self, approval_id: str, instructions: str | None) -> None:
        """A request of this session waits for staff: say `instructions` once (if any, in a voice
        session, and unless it was answered meanwhile)."""
        if instructions is None or not self.voice or approval_id in self.said or approval_id in self.outcomes:
            return
        self.said.add(approval_id)
        self.waiting[approval_id] = instructions

    def answered(self, approval_id: str, *, approve: bool, reason: str) -> None:
        """The request's answer went upstream: its holding line, if not said yet, is no news now."""
        self.waiting.pop(approval_id, None)
        self.said.add(approval_id)
        self.outcomes[approval_id] = outcome_sentence(approve=approve, reason=reason)

    def due(self) -> tuple[str, str] | None:
        """The oldest line still to say: (approval id, instructions), taken off the list."""
        for approval_id, text in self.waiting.items():
            del self.waiting[approval_id]
            return approval_id, text
        return None

    def mark_sent(self, event_id: str, approval_id: str, text: str) -> None:
        self.in_flight = {event_id: (approval_id, text)}  # only the latest can still be refused

    def outcome_for(self, approval_ids: list[str]) -> str | None:
        """The follow-up's instructions for these answered requests, or None if none is known."""
        sentences = [self.outcomes[i] for i in approval_ids if i in self.outcomes]
        return outcome_instructions(sentences) if sentences else None
