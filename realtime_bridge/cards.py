"""What a staff card shows of a bridge session: the phone call of a sideband session, the run of
a Responses session (approvals/models/cards.py). register() is called from the app's ready()."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist

from approvals.models import RealtimeSession, register_session_detail


def _one_to_one(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name)
    except ObjectDoesNotExist:
        return None


def call_detail(session: RealtimeSession) -> dict[str, Any] | None:
    """The SIP/WebRTC call of a sideband session, for the card (state, numbers, what staff may do)."""
    call = _one_to_one(session, "call") if session.kind == RealtimeSession.Kind.SIDEBAND else None
    return call.to_dict() if call is not None else None


def run_detail(session: RealtimeSession) -> dict[str, Any] | None:
    """The Responses API run of a `responses` session, for the card: its state and output."""
    run = _one_to_one(session, "run") if session.kind == RealtimeSession.Kind.RESPONSES else None
    if run is None:
        return None
    return {
        "id": run.pk,
        "state": run.state,
        "state_label": run.get_state_display(),
        "input": run.input[:300],
        "output_text": (run.output_text or "")[:1000],
        "error": run.error,
    }


def register() -> None:
    """Add "call" and "run" to every card's session, in that order."""
    register_session_detail("call", call_detail, related=("call__route",))
    register_session_detail("run", run_detail, related=("run",))
