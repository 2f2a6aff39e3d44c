"""The replay cache: signatures of mutating requests already accepted, with the answer
each one got, kept in the database so that it holds across restarts and replicas.

A signed `POST` whose exact signature was accepted before, inside the window, is a
replay: it gets the first answer again and changes nothing. Intake records a new
case's signature in the transaction that writes the case (see `bot.intake`); the
other mutating routes claim the signature in a transaction of its own before they
change anything, then record the answer, so that of two copies sent at once exactly
one makes the change and the other waits for its answer.

Rows are swept once the window has closed on them: by then any request carrying that
signature is refused for its timestamp, so forgetting it opens no replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from bot.errors import ConflictError
from bot.store.bulk import BulkInsert, Sql
from bot.store.db import Store
from bot.store.tables import signatures

SWEEP_BATCH = 5000  # rows deleted per transaction, so a sweep never holds the writer long
WAIT = 5.0  # seconds a copy waits for the answer of the first, still being made
POLL = 0.05

INSERT = BulkInsert(signatures)
KNOWN = Sql("SELECT digest, status, response FROM signatures WHERE digest IN (?*)", signatures)


@dataclass(frozen=True, slots=True)
class Answer:
    """What a request was answered: its status and its exact body."""

    status: int
    body: bytes


def expiry(signed_at: int, window: int) -> datetime:
    """When a signature made at `signed_at` stops being accepted (its time + the window)."""
    return datetime.fromtimestamp(signed_at + window, UTC)


def known(conn: Connection, digests: Sequence[str]) -> dict[str, Answer | None]:
    """Which of `digests` were accepted before: their answer, or None while it is
    being made."""
    if not digests:
        return {}
    return {
        str(row["digest"]): (
            None if row["status"] is None else Answer(int(row["status"]), row["response"].encode())
        )
        for row in KNOWN.rows(conn, list(digests))
    }


def claim(conn: Connection, digest: str, source: str, expires_at: datetime) -> bool:
    """Whether this is the first request with this signature (the row is now ours)."""
    values = {"digest": digest, "source": source, "expires_at": expires_at}
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    statement = dialect.insert(signatures).values(**values).on_conflict_do_nothing()
    return conn.execute(statement).rowcount == 1


def record(conn: Connection, digest: str, answer: Answer) -> None:
    conn.execute(
        update(signatures)
        .where(signatures.c.digest == digest)
        .values(status=answer.status, response=answer.body.decode())
    )


def sweep(conn: Connection, now: datetime, limit: int = SWEEP_BATCH) -> int:
    """Forget up to `limit` signatures whose window has closed; how many were."""
    expired = (
        select(signatures.c.digest)
        .where(signatures.c.expires_at < now)
        .limit(limit)
        .scalar_subquery()
    )
    result = conn.execute(delete(signatures).where(signatures.c.digest.in_(expired)))
    return int(result.rowcount)


async def sweep_all(store: Store, now: datetime) -> int:
    """Sweep in transactions of at most SWEEP_BATCH rows, letting other writers in
    between."""
    total = 0
    while True:
        done = await store.run_bookkeeping(lambda conn: sweep(conn, now))
        total += done
        if done < SWEEP_BATCH:
            return total
        await asyncio.sleep(0)


PENDING = (
    "this exact signed request was received before and its answer is not known (it is "
    "still being made, or the server stopped while making it); to try again, sign the "
    "request afresh (a new t), and read the case to see whether the first one took effect"
)


async def once(
    store: Store,
    digest: str,
    source: str,
    expires_at: datetime,
    make: Callable[[], Awaitable[Answer]],
) -> Answer:
    """`make`'s answer for the first request with this signature; for a replay, the
    first one's answer (waiting up to WAIT seconds while it is being made)."""
    if await store.run_write(lambda conn: claim(conn, digest, source, expires_at)):
        answer = await make()
        await store.run_write(lambda conn: record(conn, digest, answer))
        return answer
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        found = (await store.run_read(lambda conn: known(conn, [digest]))).get(digest)
        if found is not None:
            return found
        if loop.time() >= deadline:
            raise ConflictError(PENDING)
        await asyncio.sleep(POLL)
