"""Load generator of bench/relay_overhead.py, run in a process of its own.

Opens --sessions Realtime sessions to --url, each streaming 20 ms audio frames (24 kHz PCM16,
base64) 50 times a second; every --probe-every'th frame (10th by default) also sends a probe
(`conversation.item.retrieve` of an unknown item, with an event_id) that the server answers at
once with an `error` echoing that event_id. After a 2 s warm-up it prints {"phase": "measure"},
at the end of the measured window {"phase": "end"} (so the caller can read CPU times over
exactly that window), then one JSON line: the probes' round-trip times in ms and the frames
sent in the window.
Modes: --idle opens the sessions and holds them, silent, until stdin closes.
"""

import argparse
import asyncio
import base64
import json
import os
import random
import sys
import time

from websockets.asyncio.client import connect

FRAME = json.dumps(
    {"type": "input_audio_buffer.append", "audio": base64.b64encode(os.urandom(960)).decode()}, separators=(",", ":")
)


async def open_session(url: str, key: str):
    # compression=None, as the openai SDK connects: no permessage-deflate on realtime audio.
    ws = await connect(
        url, additional_headers={"Authorization": f"Bearer {key}"}, max_size=None, open_timeout=120, compression=None
    )
    await ws.recv()  # session.created
    return ws


WARMUP = 2.0


async def stream(ws, seconds: float, rtts: list[float], start: float, probe_every: int, counts: list[int]) -> None:
    sent: dict[str, float] = {}
    warmup = WARMUP

    async def reader() -> None:
        async for frame in ws:
            if '"probe_' in frame:
                event = json.loads(frame)
                probe = (event.get("error") or {}).get("event_id")
                if probe in sent and time.monotonic() > start + warmup:
                    rtts.append((time.monotonic() - sent.pop(probe)) * 1000)

    task = asyncio.create_task(reader())
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    # Each session probes at its own frame of the cycle: with one shared count, every session
    # would send its probe in the same 20 ms (200 non-audio events at once, every 200 ms at 200
    # sessions), a burst no independent guests make, and the probes would mostly time it.
    n = random.randrange(probe_every)
    next_at = time.monotonic()
    end = start + warmup + seconds
    while (now := time.monotonic()) < end:
        measuring = now > start + warmup
        await ws.send(FRAME)
        n += 1
        if n % probe_every == 0:
            probe = f"probe_{id(ws)}_{n}"
            sent[probe] = time.monotonic()
            await ws.send(json.dumps({"type": "conversation.item.retrieve", "item_id": "nope", "event_id": probe}))
            counts[0] += measuring
        counts[0] += measuring
        next_at += 0.02
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await asyncio.sleep(0.5)
    task.cancel()
    await ws.close()


async def open_all(url: str, key: str, n: int) -> list:
    """All sessions open before any streams, 20 handshakes at a time: the measurement is of a
    steady stream, not of a thundering herd of handshakes."""
    sockets = []
    for i in range(0, n, 20):
        sockets += await asyncio.gather(*(open_session(url, key) for _ in range(min(20, n - i))))
    return sockets


async def idle(url: str, key: str, n: int) -> None:
    sockets = await open_all(url, key, n)
    print(json.dumps({"open": len(sockets)}), flush=True)
    await asyncio.to_thread(sys.stdin.read)
    for ws in sockets:
        await ws.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--probe-every", type=int, default=10)
    parser.add_argument("--idle", action="store_true")
    args = parser.parse_args()
    if args.idle:
        await idle(args.url, args.key, args.sessions)
        return
    rtts: list[float] = []
    counts = [0]  # client frames sent in the measured window
    sockets = await open_all(args.url, args.key, args.sessions)
    start = time.monotonic() + 0.5

    async def phases() -> None:
        await asyncio.sleep(start + WARMUP - time.monotonic())
        print(json.dumps({"phase": "measure"}), flush=True)
        await asyncio.sleep(start + WARMUP + args.seconds - time.monotonic())
        print(json.dumps({"phase": "end"}), flush=True)

    # Each session starts at a random point of its 20 ms cycle, as independent guests would.
    await asyncio.gather(
        phases(),
        *(stream(ws, args.seconds, rtts, start + random.uniform(0, 0.02), args.probe_every, counts) for ws in sockets),
    )
    print(json.dumps({"rtts": rtts, "frames": counts[0]}))


if __name__ == "__main__":
    asyncio.run(main())
