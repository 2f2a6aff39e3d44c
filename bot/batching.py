"""Coalescing: lookups by key asked for in the same moment share one query."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, TypeVar

V = TypeVar("V")
MAX_BATCH = 500


class Coalescer(Generic[V]):
    """`await get(key)` joins the batch being gathered in this turn of the event loop;
    the batch runs once, as `load(keys)`, when the loop next gets to it. A key `load`
    leaves out of its answer raises `KeyError` for whoever asked for it; an exception
    from `load` reaches every caller of the batch."""

    def __init__(self, load: Callable[[list[str]], Awaitable[Mapping[str, V]]]) -> None:
        self._load = load
        self._waiting: dict[str, list[asyncio.Future[V]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, key: str) -> V:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._flush)
        self._waiting.setdefault(key, []).append(future)
        return await future

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, {}
        keys = list(waiting)
        for start in range(0, len(keys), MAX_BATCH):
            chunk = {k: waiting[k] for k in keys[start : start + MAX_BATCH]}
            task = asyncio.ensure_future(self._run(chunk))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, waiting: dict[str, list[asyncio.Future[V]]]) -> None:
        try:
            found = await self._load(list(waiting))
        except Exception as exc:  # every caller of the batch hears of it
            for future in (f for fs in waiting.values() for f in fs if not f.done()):
                future.set_exception(exc)
            return
        except BaseException:  # cancelled (at shutdown): so are its callers
            for future in (f for fs in waiting.values() for f in fs):
                future.cancel()
            raise
        for key, futures in waiting.items():
            for future in futures:
                if future.done():
                    continue
                if key in found:
                    future.set_result(found[key])
                else:
                    future.set_exception(KeyError(key))
