"""Long-poll waiters: `GET /v1/escalations/{id}?wait=<seconds>` parks here until the
case changes, woken by the same after-commit hook that wakes the outbox.

In one process the decision service and the SLA clock call `changed(ids)` after each
commit that moves a case (a decision, a question, an answer, a withdrawal, an
expiry). With several replicas on PostgreSQL, the replica that committed also sends
`NOTIFY signoff_case, '<id>'` after the commit, and every replica keeps one
connection that LISTENs on that channel and wakes its own waiters: nothing polls
the database in a loop. A notification lost to a dropped listening connection wakes
every waiter once the connection is back, so that each reads its case again; a
waiter whose notification was lost to a crash between the commit and the NOTIFY
answers when its wait runs out, with the case as it then is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

log = logging.getLogger(__name__)

CHANNEL = "signoff_case"
MAX_WAIT = 60.0  # seconds a GET may wait (DESIGN: at most 60)
MAX_WAITERS = 10_000  # per process; past it a wait answers at once (a plain GET)


class CaseWaiters:
    """Futures keyed by case id, set when the case changes."""

    def __init__(self, limit: int = MAX_WAITERS) -> None:
        self.limit = limit
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def changed(self, case_ids: Iterable[str]) -> None:
        for case_id in case_ids:
            for future in self._waiting.pop(case_id, ()):
                if not future.done():
                    future.set_result(None)

    def wake_all(self) -> None:
        self.changed(list(self._waiting))

    @contextlib.asynccontextmanager
    async def watch(self, case_id: str) -> AsyncIterator[asyncio.Future[None] | None]:
        """A future set when `case_id` changes, or None when this process already has
        `limit` waiters (the caller then answers at once). Register before reading
        the case, so that a change between the read and the wait is not missed."""
        if self._count >= self.limit:
            yield None
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(case_id, set()).add(future)
        self._count += 1
        try:
            yield future
        finally:
            self._count -= 1
            found = self._waiting.get(case_id)
            if found is not None:
                found.discard(future)
                if not found:
                    del self._waiting[case_id]


async def wait_for_change(future: asyncio.Future[None], seconds: float) -> bool:
    """Whether the case changed within `seconds`."""
    try:
        await asyncio.wait_for(asyncio.shield(future), seconds)
    except TimeoutError:
        return False
    return True


class PgNotifier:
    """Across replicas on PostgreSQL: NOTIFY after a commit, LISTEN for the others'."""

    def __init__(self, dsn: str, waiters: CaseWaiters) -> None:
        self.dsn = dsn
        self.waiters = waiters
        self._listener: asyncio.Task[None] | None = None
        self._sender: Any = None  # an asyncpg connection, opened on first use
        self._sending = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.listening = asyncio.Event()

    def start(self) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="signoff-listen")

    async def _listen(self) -> None:
        import asyncpg  # the PostgreSQL driver, installed with the PostgreSQL extra

        backoff = 0.5
        while True:
            try:
                conn = await asyncpg.connect(self.dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("LISTEN %s: cannot connect (%s); retrying", CHANNEL, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            lost = asyncio.Event()
            try:
                await conn.add_listener(CHANNEL, self._heard)
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                backoff = 0.5
                self.listening.set()
                self.waiters.wake_all()  # what was said while nobody listened
                await lost.wait()
                log.warning("LISTEN %s: the connection was lost; reconnecting", CHANNEL)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("LISTEN %s failed (%s); reconnecting", CHANNEL, exc)
            finally:
                self.listening.clear()
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.waiters.changed(payload.split(","))

    def notify(self, case_ids: Iterable[str]) -> None:
        """Send the ids to the other replicas, after the commit (fire and forget)."""
        ids = [i for i in case_ids if i]
        if not ids:
            return
        task = asyncio.create_task(self._send(ids), name="signoff-notify")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, ids: list[str]) -> None:
        import asyncpg

        async with self._sending:
            try:
                if self._sender is None or self._sender.is_closed():
                    self._sender = await asyncpg.connect(self.dsn)
                # a payload is at most 8000 bytes: 250 ids of 28 characters and commas
                for start in range(0, len(ids), 250):
                    chunk = ",".join(ids[start : start + 250])
                    await self._sender.execute("SELECT pg_notify($1, $2)", CHANNEL, chunk)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("NOTIFY %s failed (%s): other replicas' waits run out", CHANNEL, exc)
                self._sender = None

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
        if self._sender is not None:
            with contextlib.suppress(Exception):
                await self._sender.close(timeout=2)
            self._sender = None
