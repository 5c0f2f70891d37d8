"""Demo guests for `make run`: scripted voice-concierge sessions that pass through the relay.

Every so often a guest connects to Countersign's /v1/realtime with the official openai SDK and
a client token of its room (made by `python -m demo.seed`, kept in var/demo-guests.json), chats
a little, then asks for something that needs a human: the request appears on the dashboard.
Whatever staff decide (or the deadline), the guest hears the model's answer and hangs up.

    python -m demo.guests [--once] [--interval SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
from pathlib import Path

import httpx
from openai import AsyncOpenAI

log = logging.getLogger("demo.guests")
BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("COUNTERSIGN_VAR_DIR", BASE_DIR / "var"))

# (room label, what the guest says first, the tool call the scripted model makes)
SCENARIOS = [
    (
        "Room 1204",
        "Hi, I stepped out for ice and the door shut behind me.",
        'call hotel unlock_door {"room": "1204", "reason": "Guest locked out, at the door"}',
    ),
    (
        "Room 1205",
        "The minibar bill has a charge for champagne, I never opened it.",
        'call hotel issue_refund {"room": "1205", "amount": 48.0, "currency": "EUR", "reason": "Minibar disputed"}',
    ),
    (
        "Room 1410",
        "Could I keep the room a bit longer tomorrow? My flight is late.",
        'call hotel schedule_late_checkout {"room": "1410", "time": "15:00"}',
    ),
    (
        "Room 1204",
        "It's too bright in here, can you dim the lights for me?",
        'call hotel set_room_lighting {"room": "1204", "scene": "relax"}',
    ),
]


async def wait_for_server(base: str) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            try:
                if (await http.get(f"{base}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(2)


async def visit(base: str, token: str, label: str, small_talk: str, command: str) -> str:
    """One guest session; returns how it ended, in words."""
    client = AsyncOpenAI(api_key=token, base_url=f"{base}/v1", max_retries=0)
    async with client.realtime.connect(model="gpt-realtime") as conn:

        async def say(text: str) -> None:
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
            )
            await conn.response.create()

        listed = False
        said_command = False
        outcome = "no answer"
        async with asyncio.timeout(300):
            await say(small_talk)
            async for event in conn:
                if event.type in ("mcp_list_tools.completed", "mcp_list_tools.failed"):
                    listed = True
                elif event.type == "response.done" and not said_command and listed:
                    said_command = True
                    log.info("%s asks: %s", label, command)
                    await say(command)
                elif event.type == "conversation.item.done" and event.item.type == "mcp_call":
                    outcome = "tool ran" if not event.item.error else f"tool failed: {event.item.error}"
                elif event.type == "conversation.item.done" and event.item.type == "mcp_approval_response":
                    outcome = "approved" if event.item.approve else "denied"
                elif event.type == "response.done" and said_command and outcome != "no answer":
                    break
                elif event.type == "error":
                    log.warning("%s got an error: %s", label, event.error.message)
    return outcome


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo.guests")
    parser.add_argument("--once", action="store_true", help="one visit of each scenario, then exit")
    parser.add_argument("--interval", type=float, default=float(os.environ.get("DEMO_GUEST_INTERVAL", "40")))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    host = os.environ.get("WEB_HOST") or os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("WEB_PORT") or os.environ.get("PORT", "8000")
    # Guests speak to the relay's own server (run_relay, RELAY_PORT), as a hotel's devices would.
    relay = f"http://{host}:{os.environ.get('RELAY_PORT', '8001')}"
    tokens = json.loads((VAR_DIR / "demo-guests.json").read_text())
    await wait_for_server(f"http://{host}:{port}")
    log.info("demo guests start, one every %.0f s", args.interval)
    scenarios = list(SCENARIOS)
    while True:
        for label, small_talk, command in scenarios:
            try:
                outcome = await visit(relay, tokens[label], label, small_talk, command)
                log.info("%s: %s", label, outcome)
            except Exception as exc:  # a demo guest must never take the demo down
                log.warning("%s: visit failed: %s", label, exc)
            if args.once:
                continue
            await asyncio.sleep(args.interval * random.uniform(0.7, 1.3))
        if args.once:
            return
        random.shuffle(scenarios)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
