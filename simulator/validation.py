"""Strict validation of server events against the openai SDK's own types.

The simulator runs it on every event it sends when started with `--validate-events` (every test
does), and the test clients run it on every frame they read: a frame the official SDK would not
accept as a `RealtimeServerEvent` in strict mode, or one carrying a field the SDK's models do not
declare (unless REALTIME_PROTOCOL.md documents it), is a bug of the simulator.
"""

from __future__ import annotations

import logging
import typing
from typing import Any

import pydantic
from openai.types.realtime import RealtimeServerEvent

_SERVER_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RealtimeServerEvent)
_MEMBERS: dict[str, type[pydantic.BaseModel]] = {
    typing.get_args(member.model_fields["type"].annotation)[0]: member
    for member in typing.get_args(typing.get_args(RealtimeServerEvent)[0])
}
# Fields the real server sends that the SDK's models do not declare, each documented in REALTIME_PROTOCOL.md.
DOCUMENTED_EXTRAS = {
    # Section 1.4 [SPEC example]: the effective session carries its object type, id and expiry.
    ("RealtimeSessionCreateRequest", "object"),
    ("RealtimeSessionCreateRequest", "id"),
    ("RealtimeSessionCreateRequest", "expires_at"),
    # Section 2: `obfuscation` is present on text and transcript deltas in live captures.
    ("ResponseTextDeltaEvent", "obfuscation"),
    ("ResponseAudioTranscriptDeltaEvent", "obfuscation"),
}


def _undocumented_extras(value: Any, path: str) -> list[str]:
    found = []
    if isinstance(value, pydantic.BaseModel):
        for name in value.model_extra or {}:
            if (type(value).__name__, name) not in DOCUMENTED_EXTRAS:
                found.append(f"{path}.{name} ({type(value).__name__})")
        for name in type(value).model_fields:
            found += _undocumented_extras(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for n, element in enumerate(value):
            found += _undocumented_extras(element, f"{path}[{n}]")
    return found


def validate_server_event(data: Any) -> pydantic.BaseModel:
    """Strictly validate one server event with the SDK's own union; raise AssertionError if it is not one."""
    try:
        model = _SERVER_EVENT.validate_python(data, strict=True)
    except pydantic.ValidationError as exc:
        member = _MEMBERS.get(str(data.get("type"))) if isinstance(data, dict) else None
        detail: Any = exc
        if member is not None:
            try:
                member.model_validate(data, strict=True)
            except pydantic.ValidationError as narrow:
                detail = narrow  # the union's error lists every member; this one says what is wrong
        raise AssertionError(f"not a valid Realtime server event: {data!r}\n{detail}") from None
    extras = _undocumented_extras(model, "event")
    assert not extras, f"fields the SDK does not know, in {data.get('type')}: {extras}"
    return model


logger = logging.getLogger("simulator")


class InvalidServerEvent(Exception):
    pass


def checked(data: dict[str, Any]) -> dict[str, Any]:
    """`data` if it is a valid server event; else log it loudly and raise InvalidServerEvent."""
    try:
        validate_server_event(data)
    except AssertionError as exc:
        logger.error("INVALID SERVER EVENT: %s", exc)
        raise InvalidServerEvent(str(exc)) from None
    return data
