"""Hostile inputs: events generated from the openai SDK's client-event types, then mutated.

The events come from the JSON schema pydantic gives for `openai.types.realtime.RealtimeClientEvent`
(the union of every client event the GA API accepts). hypothesis-jsonschema would be the
library for this, but its last release (0.23.1) breaks on Hypothesis 6.170's internals, so a
small walker below covers what the SDK's schema uses: $ref, anyOf/oneOf, const, enum, and the
JSON types with their properties and required keys.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pydantic
from hypothesis import strategies as st
from openai.types.realtime import RealtimeClientEvent

Json = Any
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)


@cache
def client_event_schema() -> dict[str, Any]:
    return pydantic.TypeAdapter(RealtimeClientEvent).json_schema()


def from_schema(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Json]:
    """Values valid for `schema` (closely enough: formats and numeric bounds are not honoured,
    which only makes the relay's checks work harder)."""
    if depth > 8:
        return _SCALARS
    if "$ref" in schema:
        return st.deferred(lambda: from_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, depth + 1))
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([from_schema(s, defs, depth + 1) for s in schema[key]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": k}, defs, depth) for k in kind])
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        fixed = {k: from_schema(v, defs, depth + 1) for k, v in props.items() if k in required}
        optional = {k: from_schema(v, defs, depth + 1) for k, v in props.items() if k not in required}
        return st.fixed_dictionaries(fixed, optional=optional)
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), defs, depth + 1), max_size=3)
    if kind == "string":
        return st.text(max_size=40)
    if kind == "integer":
        return st.integers(min_value=-(2**40), max_value=2**40)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return _SCALARS


def client_events() -> st.SearchStrategy[dict[str, Any]]:
    schema = client_event_schema()
    return from_schema(schema, schema.get("$defs", {}))


# --- Mutations --------------------------------------------------------------------------------

_WRONG_TYPES: st.SearchStrategy[Json] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and infinities too: json.dumps writes them, strict parsers refuse them
    st.text(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def _paths(value: Json, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*prefix, i))
    return found


def _replace(value: Json, path: tuple[Any, ...], new: Json) -> Json:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


@st.composite
def wrong_typed(draw: st.DrawFn, events: st.SearchStrategy[dict[str, Any]]) -> str:
    """A valid event with one value (the whole event, `type` included) of the wrong type."""
    event = draw(events)
    path = draw(st.sampled_from(_paths(event)))
    return json.dumps(_replace(event, path, draw(_WRONG_TYPES)))


@st.composite
def huge_strings(draw: st.DrawFn, events: st.SearchStrategy[dict[str, Any]]) -> str:
    """A valid event with one value replaced by a long string (up to 256 KiB: the 16 MiB limit
    itself has a test of its own, not thousands)."""
    event = draw(events)
    path = draw(st.sampled_from(_paths(event)))
    size = draw(st.sampled_from([1024, 65_536, 262_144]))
    return json.dumps(_replace(event, path, draw(st.sampled_from('a\\"é\u2028')) * size))


@st.composite
def deep_nesting(draw: st.DrawFn) -> str:
    """issue 16 #1: `{"type":"session.update","session":` then [ (or {"a":) thousands deep."""
    depth = draw(st.integers(min_value=100, max_value=20_000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    kind = draw(st.sampled_from(["session.update", "conversation.item.create", "response.create", "x"]))
    closed = draw(st.booleans())
    body = opener * depth + "1" + (closer * depth if closed else "")
    return f'{{"type":"{kind}","session":{body}}}'


@st.composite
def duplicate_keys(draw: st.DrawFn, events: st.SearchStrategy[dict[str, Any]]) -> str:
    """A valid event whose text repeats a key: `type` (another parser keeps the first) or any."""
    event = draw(events)
    text = json.dumps(event)
    key = draw(st.sampled_from(["type", *event.keys()]))
    value = draw(st.sampled_from(["conversation.item.create", "session.update", "response.create"]) | _WRONG_TYPES)
    extra = f"{json.dumps(key)}:{json.dumps(value)}"
    return "{" + extra + "," + text[1:] if draw(st.booleans()) else text[:-1] + "," + extra + "}"


def invalid_utf8() -> st.SearchStrategy[bytes]:
    """Bytes that are not UTF-8 (a lone continuation byte, an overlong form, a surrogate)."""
    bad = st.sampled_from([b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xff", b"\xf8\x88\x80\x80\x80"])
    # The bytes around the bad ones can complete it into valid UTF-8 (b"\xe2" + b"\x80" + b"\x80" is
    # U+2000): such a frame is a valid text frame, answered with invalid_json, and is not drawn here.
    framed = st.builds(lambda a, b, c: a + b + c, st.binary(max_size=20), bad, st.binary(max_size=20))
    return framed.filter(lambda data: not _is_utf8(data))


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# JSON-escaped lone surrogates: valid UTF-8 text, valid JSON, but the str they parse to cannot
# be encoded as UTF-8 again. (A raw surrogate cannot reach a server: it is not UTF-8 on the wire.)
ESCAPED_SURROGATES = [
    '{"type":"response.create","event_id":"\\ud800"}',
    '{"type":"conversation.item.create","item":{"type":"message","role":"user",'
    '"content":[{"type":"input_text","text":"\\udfff\\ud800"}]}}',
]


def junk_text() -> st.SearchStrategy[str]:
    """Text that is not one JSON object: truncated, scalars, arrays, NaN, empty, trailing data."""
    return st.one_of(
        st.text(),
        st.sampled_from(["", "null", "[]", "1e999999", "NaN", '{"type":NaN}', "{}", '{"type":1}', '"x"', "{" * 3]),
        st.builds(lambda e: json.dumps(e)[:-1], client_events()),
        st.builds(lambda e: json.dumps(e) + " {}", client_events()),
        st.builds(lambda e: json.dumps([e]), client_events()),
    )


def hostile_frames() -> st.SearchStrategy[str | bytes]:
    """Every kind above, each equally likely, plus valid events and raw binary frames."""
    events = client_events()
    return st.one_of(
        events.map(json.dumps),
        wrong_typed(events),
        huge_strings(events),
        deep_nesting(),
        duplicate_keys(events),
        invalid_utf8(),
        st.binary(max_size=64),
        junk_text(),
    )
