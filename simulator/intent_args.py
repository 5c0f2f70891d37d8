"""Argument extraction for the intent rules (simulator/intents.py): plain regular expressions over the
guest's words, each documented in docs/simulator.md ("Intent rules"). Every function returns None when
the text does not say it, so the caller can ask."""

from __future__ import annotations

import re
from datetime import date, timedelta

_I = re.IGNORECASE
_NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
}
_WORD = "|".join(_NUMBER_WORDS)

# -- rooms ------------------------------------------------------------------------------------------

_ROOM = re.compile(r"\b(?:room|suite)\s*(?:number\s*|no\.?\s*|#\s*)?(\d{3,4})\b|#(\d{3,4})\b", _I)
_ROOM_IN = re.compile(r"\b(?:in|from|of|at)\s+(\d{3,4})\b(?!\s*(?:%|percent|[:.]\d|am\b|pm\b))", _I)
_TO_ROOM = re.compile(r"\b(?:to|into)\s+(?:(?:room|suite)\s*)?(?:number\s*)?#?(\d{3,4})\b(?![:.]\d)", _I)


def room(text: str, *, moving: bool = False) -> str | None:
    """The guest's room: "room 1204", "room number 1204", "#1204", else "in/from/of/at 1204". When the
    guest asks to move, a number after "to"/"into" is the room to move to, not theirs."""
    targets = {m.start(1) for m in _TO_ROOM.finditer(text)} if moving else set()
    for pattern in (_ROOM, _ROOM_IN):
        for match in pattern.finditer(text):
            group = 1 if match.group(1) else 2
            if match.start(group) not in targets:
                return match.group(group)
    return None


def to_room(text: str) -> str | None:
    """The room to move to: "to 1206", "into room 1206", "to suite 1502"."""
    match = _TO_ROOM.search(text)
    return match.group(1) if match else None


# -- money ------------------------------------------------------------------------------------------

_CURRENCIES = {
    "€": "EUR",
    "eur": "EUR",
    "euro": "EUR",
    "euros": "EUR",
    "$": "USD",
    "usd": "USD",
    "dollar": "USD",
    "dollars": "USD",
    "bucks": "USD",
    "£": "GBP",
    "gbp": "GBP",
    "pound": "GBP",
    "pounds": "GBP",
    "quid": "GBP",
    "chf": "CHF",
    "franc": "CHF",
    "francs": "CHF",
}
_AMOUNT = r"(\d+(?:[.,]\d{1,2})?)"
_MONEY_BEFORE = re.compile(r"(€|\$|£|\b(?:eur|usd|gbp|chf)\b)\s?" + _AMOUNT, _I)
_MONEY_AFTER = re.compile(
    _AMOUNT + r"\s?(€|£|\$|(?:eur(?:os?)?|usd|dollars?|bucks|gbp|pounds?|quid|chf|francs?)(?![a-z]))", _I
)


def money(text: str) -> tuple[int | float | None, str | None]:
    """(amount, ISO currency) of the first sum with a currency: "€48", "48 euros", "$45.50", "CHF 20",
    "12 pounds". An integral amount is an int, else a float with at most two decimals."""
    found = [(m.start(), m.group(2), m.group(1)) for m in _MONEY_BEFORE.finditer(text)]
    found += [(m.start(), m.group(1), m.group(2)) for m in _MONEY_AFTER.finditer(text)]
    if not found:
        return None, None
    _, raw, symbol = min(found)
    value = float(raw.replace(",", "."))
    return (int(value) if value.is_integer() else value), _CURRENCIES[symbol.lower()]


# -- time and day -----------------------------------------------------------------------------------

_TWELVE_HOUR = re.compile(r"\b(\d{1,2}|" + _WORD + r")(?:[:.](\d{2}))?\s*(a\.?m\.?|p\.?m\.?)(?![a-z])", _I)
_CLOCK = re.compile(
    r"(?<![\d€$£.,])\b([01]?\d|2[0-3])[:.]([0-5]\d)\b(?!\s*(?:€|£|\$|eur|usd|gbp|chf|euro|dollar|pound))", _I
)
_BARE_HOUR = re.compile(
    r"\b(?:at|until|till|til|by|around|for)\s+(?:about\s+)?(\d{1,2}|" + _WORD + r")(?:\s*o'?clock)?\b"
    r"(?!\s*(?:%|percent|nights?|days?|people|guests|towels?|pillows?|minutes|hours|[:.]\d|\d))",
    _I,
)


def _hour(word: str) -> int:
    return _NUMBER_WORDS[word.lower()] if word.lower() in _NUMBER_WORDS else int(word)


def time_of_day(text: str, *, afternoon: bool = False) -> str | None:
    """HH:MM (24 h) from "7 am", "6:45 pm", "14:30", "noon", "midnight", or a bare hour after at/until/
    by/around ("at 7", "until two"). A bare hour is morning, except that with `afternoon` (a late
    checkout) 1 to 6 means 13:00 to 18:00."""
    if match := _TWELVE_HOUR.search(text):
        hour, minute = _hour(match.group(1)) % 12, int(match.group(2) or 0)
        if match.group(3).lower().startswith("p"):
            hour += 12
        return f"{hour:02d}:{minute:02d}" if hour < 24 and minute < 60 else None
    if match := _CLOCK.search(text):
        return f"{int(match.group(1)):02d}:{match.group(2)}"
    if re.search(r"\b(noon|midday)\b", text, _I):
        return "12:00"
    if re.search(r"\bmidnight\b", text, _I):
        return "00:00"
    if match := _BARE_HOUR.search(text):
        hour = _hour(match.group(1))
        if afternoon and 1 <= hour <= 6:
            hour += 12
        return f"{hour:02d}:00" if hour < 24 else None
    return None


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_MONTH = "|".join(_MONTHS)
_DAY_MONTH = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?(?:\s+of)?\s+(" + _MONTH + r")\b", _I)
_MONTH_DAY = re.compile(r"\b(" + _MONTH + r")\s+(\d{1,2})(?:st|nd|rd|th)?\b", _I)


def _on(today: date, month: int, day_of_month: int) -> date | None:
    for year in (today.year, today.year + 1):
        try:
            candidate = date(year, month, day_of_month)
        except ValueError:
            return None
        if candidate >= today:
            return candidate
    return None


def day(text: str, today: date) -> str | None:
    """YYYY-MM-DD from "today"/"tonight"/"this morning", "the day after tomorrow", "tomorrow", a weekday
    (the next one, a week ahead when it is today), "2026-12-24", "24 December", "December 24th" (this
    year, or next year once the date has passed)."""
    lowered = text.lower()
    if match := re.search(r"\b(\d{4}-\d{2}-\d{2})\b", text):
        try:
            return date.fromisoformat(match.group(1)).isoformat()
        except ValueError:
            return None
    if re.search(r"\bday after tomorrow\b", lowered):
        return (today + timedelta(days=2)).isoformat()
    if re.search(r"\btomorrow\b", lowered):
        return (today + timedelta(days=1)).isoformat()
    if re.search(r"\b(today|tonight|this (morning|afternoon|evening))\b", lowered):
        return today.isoformat()
    for number, name in enumerate(_WEEKDAYS):
        if re.search(rf"\b{name}\b", lowered):
            ahead = (number - today.weekday()) % 7 or 7
            return (today + timedelta(days=ahead)).isoformat()
    found: date | None = None
    if match := _DAY_MONTH.search(text):
        found = _on(today, _MONTHS.index(match.group(2).lower()) + 1, int(match.group(1)))
    elif match := _MONTH_DAY.search(text):
        found = _on(today, _MONTHS.index(match.group(1).lower()) + 1, int(match.group(2)))
    return found.isoformat() if found else None


# -- people, places, reasons ------------------------------------------------------------------------

_NAME = r"([A-Z][a-z'-]+(?:\s+(?:van|de|von|da|di|le)?\s*[A-Z][a-z'-]+)+)"
_PERSON = re.compile(r"\b(?:for|name is|I'm|I am|this is|passenger)\s+(?:(?:Mr|Mrs|Ms|Dr)\.?\s+)?" + _NAME)
_PLACES = re.compile(
    r"\bto (?:the )?(airport|(?:main |central |train |railway )?station|city cent(?:er|re)|old town|"
    r"harbou?r|opera|museum|conference cent(?:er|re))\b",
    _I,
)
_PLACE_NAME = re.compile(r"\bto (?:the )?([A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*)")


def person(text: str) -> str | None:
    """A full name in capitals after "for", "my name is", "I'm", "this is": "for Marco Bellini"."""
    match = _PERSON.search(text)
    return match.group(1) if match else None


def destination(text: str) -> str | None:
    """Where to: "to the airport" → "the airport", "to Central Station" → "Central Station"."""
    if match := _PLACES.search(text):
        return f"the {match.group(1).lower()}"
    if match := _PLACE_NAME.search(text):
        return match.group(1)
    return None


def reason(text: str) -> str | None:
    """The guest's own words, on one line, at most 200 characters: what the log and the staff card show."""
    words = " ".join(text.split())
    if not words:
        return None
    return words if len(words) <= 200 else words[:199] + "…"


# -- lights and housekeeping ------------------------------------------------------------------------

_SCENE_RULES = (
    ("off", r"\b(turn|switch|shut|put)\b[^.?!]*\boff\b|\blights? off\b|\blights out\b"),
    ("night", r"\b(night ?light|for the night|going to (bed|sleep)|sleep)\b"),
    ("reading", r"\b(read|reading|work|working)\b"),
    ("relax", r"\b(dim|dimmer|too bright|softer|relax|relaxing|cosy|cozy|cosier|cozier|darker|lower)\b"),
    ("bright", r"\b(brighter|too dark|full|bright|brighten|all the way up|on)\b"),
)


def light_scene(text: str) -> str | None:
    """The first scene whose words occur, in this order: off, night, reading, relax (dim, too bright,
    softer), bright (brighter, too dark, on)."""
    for scene, pattern in _SCENE_RULES:
        if re.search(pattern, text, _I):
            return scene
    return None


def light_level(text: str) -> int | None:
    """A dimmer level: "40%", "40 percent" (0 to 100)."""
    match = re.search(r"\b(\d{1,3})\s*(?:%|percent\b)", text, _I)
    return int(match.group(1)) if match and int(match.group(1)) <= 100 else None


_ITEMS = (
    ("towels", r"\btowels?\b"),
    ("pillows", r"\bpillows?\b"),
    ("blanket", r"\bblankets?\b"),
    ("toiletries", r"\b(toiletries|shampoo|soap|toothbrush|toothpaste)\b"),
    ("cleaning", r"\b(clean|cleaning|make up (my|our|the) room)\b"),
    ("turndown", r"\bturn-?down\b"),
)


def housekeeping_item(text: str) -> str | None:
    for item, pattern in _ITEMS:
        if re.search(pattern, text, _I):
            return item
    return None


def quantity(text: str) -> int | None:
    """How many: "2 towels", "two more pillows", "a couple of towels" (2), "a few" (3)."""
    match = re.search(
        r"\b(\d{1,2}|" + _WORD + r")\s+(?:more\s+|extra\s+|fresh\s+|clean\s+|new\s+)*(towels?|pillows?|blankets?)\b",
        text,
        _I,
    )
    if match:
        return _hour(match.group(1))
    if re.search(r"\ba couple (of )?", text, _I):
        return 2
    if re.search(r"\ba few\b", text, _I):
        return 3
    return None
