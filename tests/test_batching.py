"""Coalescing: lookups asked for in the same moment share one load."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from bot.batching import MAX_BATCH, Coalescer


class Loads:
    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    async def __call__(self, keys: list[str]) -> Mapping[str, str]:
        self.calls.append(list(keys))
        await asyncio.sleep(0.01)
        if self.fail is not None:
            raise self.fail
        return {k: k.upper() for k in keys if not k.startswith("missing")}


async def test_gets_in_the_same_moment_share_one_load() -> None:
    loads = Loads()
    batch = Coalescer(loads)
    found = await asyncio.gather(*(batch.get(k) for k in ["a", "b", "a", "c"]))
    assert found == ["A", "B", "A", "C"]
    assert loads.calls == [["a", "b", "c"]]
    # a later get is a new batch
    assert await batch.get("d") == "D"
    assert loads.calls[1:] == [["d"]]


async def test_a_key_the_load_leaves_out_raises_key_error_for_its_askers_only() -> None:
    batch = Coalescer(Loads())
    results = await asyncio.gather(batch.get("a"), batch.get("missing"), return_exceptions=True)
    assert results[0] == "A"
    assert isinstance(results[1], KeyError)


async def test_a_failed_load_reaches_every_asker() -> None:
    batch = Coalescer(Loads(fail=RuntimeError("database away")))
    results = await asyncio.gather(batch.get("a"), batch.get("b"), return_exceptions=True)
    assert [str(r) for r in results] == ["database away", "database away"]


async def test_big_bursts_are_split_into_bounded_loads() -> None:
    loads = Loads()
    batch = Coalescer(loads)
    keys = [f"k{n}" for n in range(MAX_BATCH + 7)]
    assert await asyncio.gather(*(batch.get(k) for k in keys)) == [k.upper() for k in keys]
    assert [len(c) for c in loads.calls] == [MAX_BATCH, 7]


async def test_a_cancelled_asker_leaves_the_others_their_answers() -> None:
    batch = Coalescer(Loads())
    first = asyncio.ensure_future(batch.get("a"))
    second = asyncio.ensure_future(batch.get("b"))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == "B"
    with pytest.raises(asyncio.CancelledError):
        await first
