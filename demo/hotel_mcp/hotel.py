"""The demo hotel's state: rooms, guests, door locks, folios and concierge bookings in memory, and the
room lights wherever `lights` keeps them (MQTT or memory, demo/hotel_mcp/lights.py).

Every operation a tool exposes is one method here, so the MCP layer stays a thin adapter and tests
can read exactly what a call changed (`snapshot()`, also served as `GET /state`). Amounts are kept in
integer cents so that a refund of 0.1 + 0.2 never leaves a stray fraction on a folio.
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, get_args

from demo.hotel_mcp.lights import Lights, LightsError, LightState, MemoryLights

# ISO 4217 codes the hotel's payment processor settles in. A folio is kept in one currency only.
SUPPORTED_CURRENCIES = ("EUR", "USD", "GBP", "CHF")

# Named lighting scenes and the dimmer level each one sets.
SCENES = {"off": 0, "night": 10, "relax": 35, "reading": 70, "bright": 100}

# What housekeeping brings up to a room on request.
HousekeepingItem = Literal["towels", "pillows", "blanket", "toiletries", "cleaning", "turndown"]
HOUSEKEEPING_ITEMS: tuple[str, ...] = get_args(HousekeepingItem)

STANDARD_CHECKOUT = "11:00"
LATEST_CHECKOUT = "18:00"

# Refunds and credits above this need a manager's signature on paper, whatever the console says.
MAX_SINGLE_AMOUNT_CENTS = 500_00


class HotelError(ValueError):
    """An operation the hotel refuses; the message is shown to the model (and the guest) as is."""


@dataclass
class Charge:
    id: str
    description: str
    amount_cents: int


@dataclass
class Room:
    number: str
    kind: str
    guests: list[str] = field(default_factory=list)
    door_locked: bool = True
    # The lights at opening time; the live state is in `Hotel.lights` (real room controls, over MQTT).
    light_level: int = 0
    light_scene: str | None = "off"
    checkout_time: str = STANDARD_CHECKOUT
    minibar_credit_cents: int = 0
    currency: str = "EUR"
    charges: list[Charge] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    door_log: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def occupied(self) -> bool:
        return bool(self.guests)

    @property
    def charged_cents(self) -> int:
        return sum(c.amount_cents for c in self.charges)

    @property
    def refunded_cents(self) -> int:
        return sum(int(r["amount_cents"]) for r in self.refunds)

    @property
    def balance_cents(self) -> int:
        return self.charged_cents - self.refunded_cents


def _initial_rooms() -> dict[str, Room]:
    rooms = [
        Room(
            "1204",
            "deluxe king",
            guests=["Dana Whitfield", "Sam Whitfield"],
            light_level=35,
            light_scene="relax",
            charges=[
                Charge("chg_1204_1", "Room, 2 nights", 398_00),
                Charge("chg_1204_2", "Minibar: sparkling water, almonds", 14_50),
                Charge("chg_1204_3", "Room service: dinner for two", 86_00),
            ],
        ),
        Room(
            "1205",
            "deluxe twin",
            guests=["Priya Raman"],
            charges=[Charge("chg_1205_1", "Room, 1 night", 189_00), Charge("chg_1205_2", "Spa: massage", 120_00)],
        ),
        Room("1206", "standard queen"),
        Room(
            "0812", "standard queen", guests=["Aiko Tanaka"], charges=[Charge("chg_0812_1", "Room, 4 nights", 596_00)]
        ),
        Room("0907", "standard twin"),
        Room(
            "1102",
            "deluxe king",
            guests=["Lena Fischer", "Jonas Fischer"],
            light_level=70,
            light_scene="reading",
            charges=[Charge("chg_1102_1", "Room, 2 nights", 398_00), Charge("chg_1102_2", "Bar: cocktails", 42_00)],
        ),
        Room(
            "1501",
            "suite",
            guests=["Olusegun Adeyemi"],
            currency="GBP",
            charges=[Charge("chg_1501_1", "Suite, 2 nights", 980_00), Charge("chg_1501_2", "Laundry", 36_50)],
        ),
        Room("1502", "suite"),
        Room(
            "1410",
            "junior suite",
            guests=["Marco Bellini"],
            currency="USD",
            light_level=100,
            light_scene="bright",
            charges=[Charge("chg_1410_1", "Suite, 3 nights", 1_275_00), Charge("chg_1410_2", "Parking", 45_00)],
        ),
    ]
    return {r.number: r for r in rooms}


def cents(amount: float | int | str) -> int:
    """Whole cents from a money amount; more than two decimals is a mistake, not something to round away."""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise HotelError(f"{amount!r} is not an amount of money.") from None
    if not value.is_finite():
        raise HotelError(f"{amount!r} is not an amount of money.")
    if value <= 0:
        raise HotelError(f"The amount must be positive, not {amount}.")
    if value != value.quantize(Decimal("0.01")):
        raise HotelError(f"The amount {amount} has more than two decimal places.")
    return int(value * 100)


def money(amount_cents: int) -> float:
    return round(amount_cents / 100, 2)


def _time_of_day(text: str) -> str:
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", text.strip())
    if not match:
        raise HotelError(f"{text!r} is not a time of day; use HH:MM, e.g. 14:00.")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def _checkout_time(text: str) -> str:
    value = _time_of_day(text)
    if value <= STANDARD_CHECKOUT:
        raise HotelError(f"Standard checkout is already {STANDARD_CHECKOUT}; a late checkout must be after that.")
    if value > LATEST_CHECKOUT:
        raise HotelError(f"Late checkout is possible until {LATEST_CHECKOUT} at the latest, not {value}.")
    return value


def _date(text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise HotelError(f"{text!r} is not a date; use YYYY-MM-DD, e.g. 2026-12-04.") from None


class Hotel:
    """The whole hotel. Methods validate first and change nothing when they raise `HotelError`."""

    def __init__(self, lights: Lights | None = None) -> None:
        self.rooms: dict[str, Room] = {}
        self.activity: list[dict[str, Any]] = []
        self.lights: Lights = lights if lights is not None else MemoryLights()
        self._next_refund = 1
        self._next_booking = 1
        self.reset()

    def reset(self) -> None:
        """Back to opening time; the lights are switched back too (published, over MQTT)."""
        self.rooms = _initial_rooms()
        self.activity = []
        self._next_refund = 1
        self._next_booking = 1
        for room in self.rooms.values():
            self._switch(room, LightState(room.light_level, room.light_scene))

    # -- reads ---------------------------------------------------------------------------------

    def room(self, number: str) -> Room:
        key = str(number).strip()
        if key not in self.rooms:
            known = ", ".join(sorted(self.rooms))
            raise HotelError(f"There is no room {key!r} in this hotel (rooms: {known}).")
        return self.rooms[key]

    def room_status(self, number: str) -> dict[str, Any]:
        room = self.room(number)
        return {
            "room": room.number,
            "kind": room.kind,
            "occupied": room.occupied,
            "guests": list(room.guests),
            "door_locked": room.door_locked,
            "lighting": self.lighting(room.number),
            "checkout_time": room.checkout_time,
            "minibar_credit": money(room.minibar_credit_cents),
            "currency": room.currency,
        }

    def lighting(self, number: str) -> dict[str, Any]:
        """The room's lights as the lights themselves report them (the broker's retained state over MQTT)."""
        state = self.lights.get(number)
        return state.to_dict() if state is not None else {"level": None, "scene": None}

    def folio(self, number: str) -> dict[str, Any]:
        room = self.room(number)
        return {
            "room": room.number,
            "guests": list(room.guests),
            "currency": room.currency,
            "charges": [
                {"id": c.id, "description": c.description, "amount": money(c.amount_cents)} for c in room.charges
            ],
            "refunds": [
                {**{k: v for k, v in r.items() if k != "amount_cents"}, "amount": money(r["amount_cents"])}
                for r in room.refunds
            ],
            "total_charged": money(room.charged_cents),
            "total_refunded": money(room.refunded_cents),
            "balance": money(room.balance_cents),
        }

    def snapshot(self) -> dict[str, Any]:
        rooms = {}
        for number, room in self.rooms.items():
            data = asdict(room)
            data.update(self.room_status(number))
            data["folio"] = self.folio(number)
            for raw in ("charges", "refunds", "minibar_credit_cents", "light_level", "light_scene", "currency"):
                data.pop(raw, None)
            rooms[number] = data
        return {"rooms": rooms, "lights": self.lights.kind, "activity": copy.deepcopy(self.activity)}

    # -- writes --------------------------------------------------------------------------------

    def _record(self, action: str, room: str, **details: Any) -> None:
        self.activity.append({"at": time.time(), "action": action, "room": room, **details})

    def _occupied(self, number: str) -> Room:
        room = self.room(number)
        if not room.occupied:
            raise HotelError(f"Room {room.number} has no guest checked in.")
        return room

    def _currency(self, room: Room, currency: str) -> None:
        code = currency.strip().upper()
        if code not in SUPPORTED_CURRENCIES:
            raise HotelError(f"{currency!r} is not a currency we settle in ({', '.join(SUPPORTED_CURRENCIES)}).")
        if code != room.currency:
            raise HotelError(f"The folio of room {room.number} is kept in {room.currency}, not {code}.")

    def _switch(self, room: Room, state: LightState) -> LightState:
        try:
            return self.lights.set(room.number, state)
        except LightsError as exc:
            raise HotelError(f"The lights in room {room.number} are not answering right now ({exc}).") from None

    def set_lighting(self, number: str, *, level: int | None = None, scene: str | None = None) -> dict[str, Any]:
        room = self.room(number)
        if (level is None) == (scene is None):
            raise HotelError("Give either a level (0-100) or a scene, not both and not neither.")
        if scene is not None:
            if scene not in SCENES:
                raise HotelError(f"Unknown scene {scene!r}; scenes are {', '.join(SCENES)}.")
            wanted = LightState(SCENES[scene], scene)
        else:
            assert level is not None
            if not 0 <= level <= 100:
                raise HotelError(f"The light level must be between 0 and 100, not {level}.")
            wanted = LightState(level, None)
        now = self._switch(room, wanted)
        self._record("set_room_lighting", room.number, level=now.level, scene=now.scene)
        return {"room": room.number, "lighting": now.to_dict()}

    def unlock_door(self, number: str, *, reason: str | None = None) -> dict[str, Any]:
        room = self.room(number)
        was_locked = room.door_locked
        room.door_locked = False
        entry = {"at": time.time(), "action": "unlocked", "reason": reason or None}
        room.door_log.append(entry)
        self._record("unlock_door", room.number, reason=reason or None, was_locked=was_locked)
        return {"room": room.number, "door_locked": False, "was_locked": was_locked, "reason": reason or None}

    def issue_refund(self, number: str, *, amount: float, currency: str, reason: str) -> dict[str, Any]:
        room = self._occupied(number)
        amount_cents = cents(amount)
        self._currency(room, currency)
        if not reason.strip():
            raise HotelError("A refund needs a reason for the folio.")
        if amount_cents > MAX_SINGLE_AMOUNT_CENTS:
            raise HotelError(
                f"Refunds above {money(MAX_SINGLE_AMOUNT_CENTS):.2f} must be issued by the finance office."
            )
        if amount_cents > room.balance_cents:
            raise HotelError(
                f"Cannot refund {money(amount_cents):.2f} {room.currency}: room {room.number} has only "
                f"{money(room.balance_cents):.2f} {room.currency} of charges left to refund."
            )
        refund = {"id": f"ref_{self._next_refund:04d}", "amount_cents": amount_cents, "reason": reason.strip()}
        self._next_refund += 1
        room.refunds.append(refund)
        self._record(
            "issue_refund", room.number, refund_id=refund["id"], amount=money(amount_cents), currency=room.currency
        )
        return {
            "room": room.number,
            "refund_id": refund["id"],
            "amount": money(amount_cents),
            "currency": room.currency,
            "balance": money(room.balance_cents),
        }

    def add_minibar_credit(self, number: str, *, amount: float, currency: str) -> dict[str, Any]:
        room = self._occupied(number)
        amount_cents = cents(amount)
        self._currency(room, currency)
        if amount_cents > MAX_SINGLE_AMOUNT_CENTS:
            raise HotelError(f"Minibar credit above {money(MAX_SINGLE_AMOUNT_CENTS):.2f} is not something we grant.")
        room.minibar_credit_cents += amount_cents
        self._record("add_minibar_credit", room.number, amount=money(amount_cents), currency=room.currency)
        return {
            "room": room.number,
            "added": money(amount_cents),
            "minibar_credit": money(room.minibar_credit_cents),
            "currency": room.currency,
        }

    def schedule_late_checkout(self, number: str, *, time_of_day: str) -> dict[str, Any]:
        room = self._occupied(number)
        value = _checkout_time(time_of_day)
        previous = room.checkout_time
        room.checkout_time = value
        self._record("schedule_late_checkout", room.number, checkout_time=value, previous=previous)
        return {"room": room.number, "checkout_time": value, "previous_checkout_time": previous}

    # -- concierge -----------------------------------------------------------------------------

    def move_room(self, number: str, *, to_room: str | None = None, reason: str | None = None) -> dict[str, Any]:
        """Move the stay (guests, folio, checkout, credit) to `to_room`, or to the first vacant room of the
        same kind, else any vacant room. The old room is left vacant and locked."""
        room = self._occupied(number)
        if to_room is not None:
            target = self.room(to_room)
            if target.number == room.number:
                raise HotelError(f"The guests are already in room {room.number}.")
            if target.occupied:
                raise HotelError(f"Room {target.number} is occupied.")
        else:
            vacant = sorted((r for r in self.rooms.values() if not r.occupied), key=lambda r: r.kind != room.kind)
            if not vacant:
                raise HotelError("There is no vacant room to move to tonight.")
            target = vacant[0]
        moved = ("guests", "checkout_time", "minibar_credit_cents", "currency", "charges", "refunds")
        for name in moved:
            setattr(target, name, getattr(room, name))
        fresh = Room(room.number, room.kind)
        for name in moved:
            setattr(room, name, getattr(fresh, name))
        room.door_locked = True
        self._record("move_room", room.number, to_room=target.number, reason=reason or None)
        return {"from_room": room.number, "to_room": target.number, "kind": target.kind, "guests": target.guests}

    def request_housekeeping(self, number: str, *, item: str, quantity: int = 1) -> dict[str, Any]:
        room = self._occupied(number)
        if item not in HOUSEKEEPING_ITEMS:
            raise HotelError(f"Housekeeping brings {', '.join(HOUSEKEEPING_ITEMS)}, not {item!r}.")
        if not 1 <= quantity <= 6:
            raise HotelError(f"Housekeeping brings 1 to 6 at a time, not {quantity}.")
        entry = {"kind": "housekeeping", "item": item, "quantity": quantity}
        return self._book(room, entry)

    def book_taxi(
        self, number: str, *, pickup_time: str, destination: str, day: str | None = None, passenger: str | None = None
    ) -> dict[str, Any]:
        room = self._occupied(number)
        if not destination.strip():
            raise HotelError("A taxi needs a destination.")
        if passenger is not None and passenger.strip() and passenger.strip() not in room.guests:
            raise HotelError(f"{passenger.strip()} is not a guest of room {room.number}.")
        entry = {
            "kind": "taxi",
            "pickup_time": _time_of_day(pickup_time),
            "day": _date(day),
            "destination": destination.strip(),
            "passenger": (passenger or "").strip() or room.guests[0],
        }
        return self._book(room, entry)

    def schedule_wake_up_call(self, number: str, *, time_of_day: str, day: str | None = None) -> dict[str, Any]:
        room = self._occupied(number)
        return self._book(room, {"kind": "wake_up_call", "time": _time_of_day(time_of_day), "day": _date(day)})

    def _book(self, room: Room, entry: dict[str, Any]) -> dict[str, Any]:
        entry = {"id": f"bk_{self._next_booking:04d}", **entry}
        self._next_booking += 1
        room.requests.append(entry)
        self._record(str(entry["kind"]), room.number, **{k: v for k, v in entry.items() if k != "kind"})
        return {"room": room.number, **entry}
