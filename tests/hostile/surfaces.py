"""Examples run per inbound surface, for the table `make fuzz` prints (conftest.py)."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from hypothesis import given
from hypothesis.strategies import SearchStrategy

T = TypeVar("T")

# `make fuzz` runs 10,000 per surface; FUZZ_EXAMPLES runs fewer for a quick look (never what the issue counts).
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10000"))
COUNTS: Counter[str] = Counter()


def ran(surface: str, n: int = 1) -> None:
    COUNTS[surface] += n


def table() -> list[str]:
    width = max(len(s) for s in COUNTS)
    lines = [f"{'surface':<{width}}  examples"]
    lines += [f"{surface:<{width}}  {count:>8,}" for surface, count in sorted(COUNTS.items())]
    return lines


async def explore(strategy: SearchStrategy[T], body: Callable[[T], Coroutine[Any, Any, None]]) -> None:
    """Run `body` on examples of `strategy`, in this event loop, with fixtures already set up
    (one session, one server) shared by every example. Hypothesis runs a sync test only, so it
    runs in a thread and hands each example to this loop."""
    loop = asyncio.get_running_loop()

    @given(strategy)
    def one(example: T) -> None:
        asyncio.run_coroutine_threadsafe(body(example), loop).result()

    await asyncio.to_thread(one)
