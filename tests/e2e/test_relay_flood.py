"""A flood of bad-token handshakes on the relay (issue 16.5: about 50 a second from one client)
must not take /healthz down: probes during the flood all answer 200, and the flood is cut by the
per-address limit before it costs database work. Failures are counted, nothing is timed."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.plugins.stack import Stack

pytestmark = pytest.mark.e2e

HANDSHAKES = 300
PER_SECOND = 50


async def flood(url: str, outcomes: Counter[str]) -> None:
    async def one() -> None:
        try:
            async with connect(url, additional_headers={"Authorization": "Bearer sk-wrong"}, open_timeout=30) as ws:
                event = json.loads(await asyncio.wait_for(ws.recv(), 30))
                outcomes[event["error"]["code"]] += 1
        except InvalidStatus as exc:
            outcomes[f"http {exc.response.status_code}"] += 1
        except Exception as exc:  # a handshake the loaded machine did not finish: counted, by kind
            outcomes[type(exc).__name__] += 1

    tasks = []
    for _ in range(HANDSHAKES):
        tasks.append(asyncio.create_task(one()))
        await asyncio.sleep(1 / PER_SECOND)  # pacing the load, not measuring it
    await asyncio.gather(*tasks)


@pytest.mark.parametrize("server", ["daphne", "run_relay"])
def test_healthz_stays_200_under_a_flood_of_bad_handshakes(stack: Stack, server: str) -> None:
    web = stack.web()
    stack.worker()
    target = web if server == "daphne" else stack.relay()
    url = target.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
    outcomes: Counter[str] = Counter()
    done = threading.Event()

    def run_flood() -> None:
        try:
            asyncio.run(flood(url, outcomes))
        finally:
            done.set()

    flooder = threading.Thread(target=run_flood, daemon=True)

    health: Counter[int] = Counter()
    with httpx.Client(base_url=web.url, timeout=30) as http:
        assert http.get("/healthz").status_code == 200  # before
        flooder.start()
        while not done.wait(0.25):
            health[http.get("/healthz").status_code] += 1
    flooder.join()

    assert sum(health.values()) >= 5 and set(health) == {200}, health
    assert sum(outcomes.values()) == HANDSHAKES, outcomes
    # The default limit (120 a minute per address) lets the first ones be answered as OpenAI
    # does, and refuses the rest before any database work.
    refused = outcomes["http 429"] if server == "run_relay" else outcomes["rate_limit_exceeded"]
    assert outcomes["invalid_api_key"] >= 100 and refused >= 100, outcomes
