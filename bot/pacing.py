"""Per-channel pacing: a token bucket per (platform, channel) in front of the outbox.

Slack allows about one message a second per channel, with short bursts
(https://docs.slack.dev/apis/web-api/rate-limits, "Limits when posting messages"); past
that it answers 429 with `Retry-After`. Discord limits message creation per channel too,
through per-route buckets that discord.py keeps from the `X-RateLimit-*` headers
(https://discord.com/developers/docs/topics/rate-limits); pacing in front of it keeps a
burst into one channel from sleeping inside discord.py while holding a delivery slot.

The bucket is kept in GCRA form (a "theoretical arrival time" per channel): a send
conforms when `now >= tat - (burst - 1) * interval`. Sends in one channel go one at a
time, and each is counted when its answer comes back rather than when it left: the
platform saw it somewhere in between, so counting at the answer can only be stricter
than the platform's own bucket, whatever the network's jitter (a send counted when it
left could reach the platform after a later one and look like a burst).

The budget is per process: with several replicas each keeps its own bucket, so a
channel's budget is per replica (a shared bucket in the database is a later step).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

Key = tuple[str, str]  # (platform, channel)


class ChannelPacer:
    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not rate > 0:
            raise ValueError(f"the pacing rate must be above 0 messages a second, not {rate}")
        if burst < 1:
            raise ValueError(f"the pacing burst must be at least 1, not {burst}")
        self.interval = 1.0 / rate
        self.tolerance = (burst - 1) * self.interval
        self.clock = clock
        self._tat: dict[Key, float] = {}
        self._locks: dict[Key, asyncio.Lock] = {}
        self._queued: dict[Key, int] = {}  # sends holding or waiting for the channel's turn
        self._horizon: dict[Key, float] = {}  # the latest turn promised to a row sent back
        self._promised: dict[int, float] = {}  # row id -> the turn it was promised
        self._refused: set[Key] = set()  # the send in progress was answered 429
        self._blocked: dict[Key, float] = {}  # no send before this (a 429's Retry-After)

    def wait(self, key: Key, cost: int = 1) -> float:
        """Seconds from now until a send in `key` would conform, if nothing else came."""
        now = self.clock()
        tat = max(self._tat.get(key, now), now)
        blocked = self._blocked.get(key, now) - now
        return max(0.0, blocked, tat + (cost - 1) * self.interval - self.tolerance - now)

    def estimate(self, key: Key, row: int | None = None) -> float:
        """Seconds until a new send in `key` gets its turn, behind those already queued
        (and, for a row not promised a turn before, behind rows sent back with one)."""
        now = self.clock()
        ahead = self._queued.get(key, 0)
        tat = max(self._tat.get(key, now), now) + ahead * self.interval
        turn = max(now, self._blocked.get(key, now), tat - self.tolerance)
        if row is None or self._promised.pop(row, None) is None:
            horizon = self._horizon.get(key)
            if horizon is not None and horizon > now:
                turn = max(turn, horizon + self.interval)
        return turn - now

    def promise(self, key: Key, row: int, delay: float) -> float:
        """Record that `row` was sent back to come again in `delay` seconds; later rows
        are promised turns after it, so a burst is spread out, not retried together."""
        now = self.clock()
        turn = now + delay
        self._horizon[key] = max(self._horizon.get(key, turn), turn)
        if len(self._promised) > 100_000:  # rows that went to another replica
            self._promised.clear()
        self._promised[row] = turn
        return delay

    def penalize(self, key: Key, retry_after: float) -> None:
        """The platform answered 429 to the send in progress in `key`: it took no message
        (so it is not counted), and nothing more goes there until `retry_after` is over.
        (Sends are counted when answered, so the bucket is already no fuller than the
        platform's; a 429 means something else posts there too: another replica, or this
        one before a restart.)"""
        until = self.clock() + retry_after
        self._blocked[key] = max(self._blocked.get(key, until), until)
        self._refused.add(key)

    @asynccontextmanager
    async def turn(self, key: Key, cost: int = 1) -> AsyncIterator[None]:
        """Wait for `key`'s turn (first come, first served), let the caller send, and
        count the send (`cost` messages) when it is over, whatever became of it."""
        self._queued[key] = self._queued.get(key, 0) + 1
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                while True:  # again after a sleep: a 429 may have pushed the turn back
                    delay = self.wait(key, cost)
                    if delay <= 0:
                        break
                    await asyncio.sleep(delay)
                self._refused.discard(key)
                try:
                    yield
                finally:
                    now = self.clock()
                    if key in self._refused:
                        self._refused.discard(key)
                    else:  # sent, failed or timed out: it may have reached the channel
                        self._tat[key] = max(self._tat.get(key, now), now) + cost * self.interval
        finally:
            self._queued[key] -= 1
            if not self._queued[key]:
                self._forget(key)

    def _forget(self, key: Key) -> None:
        """An idle channel: drop its lock, and sweep buckets that are full again."""
        del self._queued[key]
        self._locks.pop(key, None)
        if len(self._tat) > 1000:
            now = self.clock()
            for idle in [k for k, tat in self._tat.items() if tat <= now]:
                if idle not in self._queued:
                    del self._tat[idle]
            for idle in [k for k, turn in self._horizon.items() if turn <= now]:
                del self._horizon[idle]
            for idle in [k for k, until in self._blocked.items() if until <= now]:
                del self._blocked[idle]
