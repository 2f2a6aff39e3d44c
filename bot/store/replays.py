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
# Both IN lists, so that the lookup walks the primary key (expires_at, digest); the
# digest alone decides a match, since the MAC it hashes covers the timestamp.
KNOWN = Sql(
    "SELECT digest, status, response FROM signatures WHERE expires_at IN (?*) AND digest IN (?*)",
    signatures,
)


@dataclass(frozen=True, slots=True)
class Answer:
    """What a request was answered: its status and its exact body."""

    status: int
    body: bytes


def expiry(signed_at: int, window: int) -> datetime:
    """When a signature made at `signed_at` stops being accepted (its time + the window)."""
    return datetime.fromtimestamp(signed_at + window, UTC)


Key = tuple[datetime, str]  # (expires_at, digest)


def known(conn: Connection, keys: Sequence[Key]) -> dict[str, Answer | None]:
    """Which of `keys` were accepted before, by digest: their answer, or None while it
    is being made."""
    if not keys:
        return {}
    times = sorted({at for at, _ in keys})
    return {
        str(row["digest"]): (
            None if row["status"] is None else Answer(int(row["status"]), row["response"].encode())
        )
        for row in KNOWN.rows(conn, times, [digest for _, digest in keys])
    }


def claim(conn: Connection, key: Key, source: str) -> bool:
    """Whether this is the first request with this signature (the row is now ours)."""
    values = {"expires_at": key[0], "digest": key[1], "source": source}
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    statement = dialect.insert(signatures).values(**values).on_conflict_do_nothing()
    return conn.execute(statement).rowcount == 1


def record(conn: Connection, key: Key, answer: Answer) -> None:
    conn.execute(
        update(signatures)
        .where(signatures.c.expires_at == key[0], signatures.c.digest == key[1])
        .values(status=answer.status, response=answer.body.decode())
    )


def sweep(conn: Connection, now: datetime, limit: int = SWEEP_BATCH) -> int:
    """Forget about `limit` of the signatures whose window has closed, oldest first (a
    range of the primary key); how many were."""
    boundary = conn.execute(
        select(signatures.c.expires_at)
        .where(signatures.c.expires_at < now)
        .order_by(signatures.c.expires_at)
        .offset(limit - 1)
        .limit(1)
    ).scalar()
    older = signatures.c.expires_at <= boundary if boundary else signatures.c.expires_at < now
    return int(conn.execute(delete(signatures).where(older)).rowcount)


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
    store: Store, key: Key, source: str, make: Callable[[], Awaitable[Answer]]
) -> Answer:
    """`make`'s answer for the first request with this signature; for a replay, the
    first one's answer (waiting up to WAIT seconds while it is being made)."""
    if await store.run_write(lambda conn: claim(conn, key, source)):
        answer = await make()
        await store.run_write(lambda conn: record(conn, key, answer))
        return answer
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        found = (await store.run_read(lambda conn: known(conn, [key]))).get(key[1])
        if found is not None:
            return found
        if loop.time() >= deadline:
            raise ConflictError(PENDING)
        await asyncio.sleep(POLL)
