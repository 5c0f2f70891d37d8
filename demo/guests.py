"""Demo guests for `make run`: voice-concierge sessions that pass through the relay, as a hotel's evening goes.

Guests arrive one at a time, at irregular moments (on average one every DEMO_GUEST_INTERVAL seconds, never
two at once, a few at most on the line together). Each connects to Countersign's /v1/realtime with the
official openai SDK and the client token of their room (made by `python -m demo.seed`, kept in
var/demo-guests.json), says hello, then asks in their own words for something: a door, a refund, a later
checkout, another room, the lights, towels, a taxi, a wake-up call. The simulator's scripted model turns
the words into a tool call by its intent rules (docs/simulator.md), and demo/policy.yaml decides: some run
at once, some wait on the dashboard for staff, some are denied. The guest hears the answer and hangs up.

    python -m demo.guests [--once] [--interval SECONDS] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from openai import AsyncOpenAI

log = logging.getLogger("demo.guests")
BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("COUNTERSIGN_VAR_DIR", BASE_DIR / "var"))

# At most this many guests on the line at once: a busy moment, not a flood.
MAX_ON_THE_LINE = 3


@dataclass(frozen=True)
class Visit:
    room: str  # the room of the guest's client token (its `room` metadata, which the policy reads)
    guest: str
    greeting: str
    request: str  # the guest's own words; the intent rules find the tool and its arguments
    expect: str  # what demo/policy.yaml does with the call: "allow", "ask" or "deny" (checked by tests)
    answer: str | None = None  # what the guest says when the model asks back (a room they forgot to say)

    @property
    def label(self) -> str:
        return f"Room {self.room}"


VISITS = (
    Visit(
        "1204",
        "Dana Whitfield",
        "Hi there, sorry to bother you this late.",
        "I stepped out for ice and the door shut behind me, room 1204. My key card is inside.",
        "ask",
    ),
    Visit(
        "1205",
        "Priya Raman",
        "Good evening!",
        "Room 1205 here. There's a charge of 48 euros for champagne on my bill, and I never opened it.",
        "ask",
    ),
    Visit("0812", "Aiko Tanaka", "Hello, good evening.", "Could you bring two more towels to room 0812?", "allow"),
    Visit(
        "1410",
        "Marco Bellini",
        "Hi, it's Marco.",
        "My flight home is late tomorrow. Could I keep room 1410 until 4 pm?",
        "ask",
    ),
    Visit(
        "1102",
        "Lena Fischer",
        "Hello!",
        "It's far too bright in here and we want to watch a film. Can you dim the lights in room 1102?",
        "allow",
    ),
    Visit(
        "1501",
        "Olusegun Adeyemi",
        "Good evening.",
        "I'd like a wake-up call at 6:15 am tomorrow, please. Room 1501.",
        "allow",
    ),
    Visit(
        "0812",
        "Aiko Tanaka",
        "Hi, me again.",
        "The air conditioning in room 0812 rattles all night. Could you move me to another room?",
        "ask",
    ),
    Visit(
        "1410",
        "Marco Bellini",
        "Hello.",
        "I was charged $12 for a bottle of water I never had, room 1410.",
        "allow",
    ),
    Visit(
        "1205",
        "Priya Raman",
        "Hi, quick question.",
        "Could you open room 1206 for me? My colleague left her laptop inside and she's at the airport.",
        "deny",
    ),
    Visit(
        "1102",
        "Jonas Fischer",
        "Hi there.",
        "Please book a taxi to the airport at 7:30 am tomorrow for Lena Fischer, room 1102.",
        "allow",
    ),
    Visit(
        "1501",
        "Olusegun Adeyemi",
        "Good evening, I have a complaint.",
        "The laundry ruined two of my shirts. I want a refund of £150, room 1501.",
        "ask",
    ),
    Visit(
        "1204",
        "Sam Whitfield",
        "Hey.",
        "We were charged 420 euros for a spa package we cancelled, room 1204. We'd like that refunded.",
        "deny",
    ),
    Visit(
        "1205",
        "Priya Raman",
        "Hello again.",
        "Could I get a late checkout, room 1205? Just until noon.",
        "allow",
    ),
    Visit(
        "1410",
        "Marco Bellini",
        "Sorry, one more thing.",
        "My key card stopped working and I'm standing at the door with my suitcase.",
        "ask",
        answer="1410",
    ),
    Visit(
        "1102",
        "Lena Fischer",
        "Hi.",
        "Could you turn off the lights in room 1102? We're going to sleep.",
        "allow",
    ),
)
ROOMS = tuple(sorted({v.label for v in VISITS}))


def schedule(interval: float, rng: random.Random) -> Iterator[tuple[float, Visit]]:
    """(seconds to wait, visit), forever: every visit once per round, in a new order each round, with
    gaps drawn like arrivals at a front desk (exponential around `interval`, clipped to 0.25-3 times it,
    so nobody arrives on top of the previous guest and the queue is never silent for long)."""
    while True:
        order = list(VISITS)
        rng.shuffle(order)
        for visit in order:
            gap = min(max(rng.expovariate(1 / interval), 0.25 * interval), 3 * interval)
            yield gap, visit


async def wait_for_server(base: str) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            try:
                if (await http.get(f"{base}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(2)


async def visit(base: str, token: str, guest: Visit) -> str:
    """One guest session; returns how it ended, in words."""
    client = AsyncOpenAI(api_key=token, base_url=f"{base}/v1", max_retries=0)
    async with client.realtime.connect(model="gpt-realtime") as conn:

        async def say(text: str) -> None:
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
            )
            await conn.response.create()

        listed = asked = tool_used = False
        answer = guest.answer
        outcome = "no answer"
        async with asyncio.timeout(300):
            await say(guest.greeting)
            async for event in conn:
                if event.type in ("mcp_list_tools.completed", "mcp_list_tools.failed"):
                    listed = True
                elif event.type == "response.done" and not asked and listed:
                    asked = True
                    log.info("%s (%s): %s", guest.guest, guest.label, guest.request)
                    await say(guest.request)
                elif event.type == "conversation.item.done" and event.item.type in ("mcp_call", "mcp_approval_request"):
                    tool_used = True
                    # After a denial the call ends with an error, as the real API leaves it
                    # (REALTIME_PROTOCOL.md 5.4): the outcome stays "denied".
                    if (
                        event.item.type == "mcp_call"
                        and (event.item.output is not None or event.item.error)
                        and outcome != "denied"
                    ):
                        outcome = "tool ran" if not event.item.error else f"tool failed: {event.item.error}"
                elif event.type == "conversation.item.done" and event.item.type == "mcp_approval_response":
                    outcome = "approved" if event.item.approve else "denied"
                elif event.type == "response.done" and asked and outcome != "no answer":
                    break
                elif event.type == "response.done" and asked and not tool_used:
                    # Words only: the model asked back (the guest answers once) or cannot help.
                    if answer is None:
                        return "answered in words"
                    log.info("%s (%s): %s", guest.guest, guest.label, answer)
                    await say(answer)
                    answer = None
                elif event.type == "error":
                    log.warning("%s got an error: %s", guest.label, event.error.message)
    return outcome


async def _one(base: str, tokens: dict[str, str], guest: Visit, line: asyncio.Semaphore) -> None:
    async with line:
        try:
            outcome = await visit(base, tokens[guest.label], guest)
            log.info("%s (%s): %s", guest.guest, guest.label, outcome)
        except Exception as exc:  # a demo guest must never take the demo down
            log.warning("%s (%s): visit failed: %s", guest.guest, guest.label, exc)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo.guests")
    parser.add_argument("--once", action="store_true", help="each visit once, one after the other, then exit")
    parser.add_argument("--interval", type=float, default=float(os.environ.get("DEMO_GUEST_INTERVAL", "40")))
    parser.add_argument("--seed", type=int, default=None, help="the same seed gives the same evening")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    host = os.environ.get("WEB_HOST") or os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("WEB_PORT") or os.environ.get("PORT", "8000")
    # Guests speak to the relay's own server (run_relay, RELAY_PORT), as a hotel's devices would.
    relay = f"http://{host}:{os.environ.get('RELAY_PORT', '8001')}"
    base = f"http://{host}:{port}"
    tokens = json.loads((VAR_DIR / "demo-guests.json").read_text())
    await wait_for_server(base)
    line = asyncio.Semaphore(MAX_ON_THE_LINE)
    if args.once:
        for guest in VISITS:
            await _one(relay, tokens, guest, line)
        return
    log.info("demo guests start, about one every %.0f s", args.interval)
    visits: set[asyncio.Task[None]] = set()
    for gap, guest in schedule(args.interval, random.Random(args.seed)):
        await asyncio.sleep(gap)
        if line.locked():
            # Every line is taken (guests waiting on staff): this one calls again in a later round,
            # rather than a backlog of callers all getting through at once when staff catch up.
            log.info("%s (%s): the line is busy, will call again later", guest.guest, guest.label)
            continue
        task = asyncio.create_task(_one(relay, tokens, guest, line))
        visits.add(task)
        task.add_done_callback(visits.discard)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
