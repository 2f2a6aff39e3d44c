"""Engines and migrations.

Users write `sqlite:///signoff.db` or `postgresql://user@host/db`; Signoff picks the
async driver (aiosqlite, asyncpg). SQLite runs in WAL mode with `synchronous=FULL`
(a case is on disk when its 201 is sent) and a busy timeout, so concurrent writers
wait instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Executable, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import Connection, CursorResult, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.errors import ConfigError

T = TypeVar("T")
log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def async_url(url: str) -> str:
    """The SQLAlchemy async URL for a URL as users write it."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(f"SIGNOFF_DATABASE_URL is not a database URL: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False))
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ConfigError(
        f"SIGNOFF_DATABASE_URL: {backend!r} is not supported; use sqlite:///FILE or postgresql://..."
    )


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    target = async_url(url)
    kwargs: dict[str, Any] = {}
    if target.startswith("postgresql"):
        # A fixed pool: opening a PostgreSQL session costs more than the work done on it.
        kwargs.update(pool_size=pool_size, max_overflow=pool_size // 2, pool_recycle=3600)
    else:
        kwargs.update(connect_args={"timeout": 30}, pool_size=pool_size, max_overflow=0)
    engine = create_async_engine(target, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def _relaxed_sync(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _current(connection: Connection) -> tuple[str | None, str | None]:
    context = MigrationContext.configure(connection)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return context.get_current_revision(), head


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)


async def revision_state(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """(the database's revision, the code's head revision)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


class Writer(Protocol):
    """What a write transaction offers: `execute`, awaited (an `AsyncConnection`, or
    on SQLite an `InlineWriter`)."""

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]: ...


class InlineWriter:
    """A synchronous connection behind the `Writer` face: each statement runs at once,
    on the event loop (SQLite's statements take microseconds)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]:
        return self._conn.execute(statement, parameters)


class Store:
    """The engine, and how to run a unit of work against it.

    A unit of work is a plain function over a SQLAlchemy `Connection`, run in one
    transaction. On PostgreSQL it runs through the async engine's `run_sync`. On
    SQLite it runs on the event loop itself, on a synchronous connection, taking
    turns with every other writer of this process on an asyncio lock (SQLite has one
    writer; a lock is cheaper and fairer than SQLite's busy handler, which sleeps in
    steps of up to 100 ms). SQLite's statements take microseconds, while a worker
    thread would hand the GIL back and forth for every row it steps through, which
    cost more than the work; the price is that an fsync blocks the loop while it
    lasts (one per batch of cases). Durable writes use `synchronous=FULL`;
    bookkeeping (the outbox's claims and receipts) uses `NORMAL`, since a receipt lost
    to a power cut only means one delivery is made again.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._lock = asyncio.Lock() if self.is_sqlite else None
        self._durable: Engine | None = None
        self._relaxed: Engine | None = None
        self._checkpoints: asyncio.Task[None] | None = None
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="signoff-sqlite-commit")
        if self.is_sqlite:
            url = engine.url.set(drivername="sqlite+pysqlite")
            self._durable = _inline_engine(url, relaxed=False)
            self._relaxed = _inline_engine(url, relaxed=True)
            self._checkpointer = sa_create_engine(url, pool_size=1, max_overflow=0)

    def start(self) -> None:
        """On SQLite, move WAL checkpoints off the event loop: the inline connections
        never checkpoint; a thread does, once a second."""
        if self.is_sqlite and self._checkpoints is None:
            self._checkpoints = asyncio.create_task(self._checkpoint_loop(), name="signoff-wal")

    async def _checkpoint_loop(self, every: float = 1.0) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(every)
            try:
                await loop.run_in_executor(None, self._checkpoint)
            except Exception:
                log.warning("WAL checkpoint failed; will try again", exc_info=True)

    def _checkpoint(self) -> None:
        with self._checkpointer.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Writer]:
        """A connection in a transaction that is on disk when the block ends. On SQLite,
        the statements run inline (as `run_write`'s do) and only the commit's fsync
        leaves the loop."""
        if self._lock is None or self._durable is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._lock:
            with self._durable.connect() as conn:
                transaction = conn.begin()
                try:
                    yield InlineWriter(conn)
                except BaseException:
                    transaction.rollback()
                    raise
                await self._commit(transaction.commit)

    async def _commit(self, commit: Callable[[], None]) -> None:
        """Commit in the committer thread (the fsync), letting the loop go on meanwhile;
        never abandon a commit half-way, even when cancelled."""
        done = asyncio.get_running_loop().run_in_executor(self._committer, commit)
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            await done  # never leave a commit running on a connection we close
            raise

    async def run_write(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one transaction that is on disk when this returns."""
        return await self._run(work, self._durable)

    async def run_bookkeeping(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one transaction that need not reach the disk before this returns."""
        return await self._run(work, self._relaxed)

    async def _run(self, work: Callable[[Connection], T], inline: Engine | None) -> T:
        if self._lock is None or inline is None:
            async with self.engine.begin() as conn:
                return await conn.run_sync(work)
        async with self._lock:
            with inline.connect() as conn:
                transaction = conn.begin()
                try:
                    result = work(conn)
                except BaseException:
                    transaction.rollback()
                    raise
                if inline is self._relaxed:
                    transaction.commit()
                    return result
                # The commit's fsync happens in a thread, so the loop can read the
                # next requests meanwhile; the lock keeps everything else out.
                await self._commit(transaction.commit)
                return result

    @property
    def reads_inline(self) -> bool:
        """Whether `run_read` reads on the event loop's thread (SQLite) rather than
        through the async engine's pool."""
        return self._relaxed is not None

    async def run_read(self, work: Callable[[Connection], T]) -> T:
        """Run `work` on a connection that only reads."""
        if self._relaxed is None:
            async with self.engine.connect() as conn:
                return await conn.run_sync(work)
        with self._relaxed.connect() as conn:
            return work(conn)

    async def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoints
            self._checkpoints = None
            await asyncio.get_running_loop().run_in_executor(None, self._checkpoint)
            self._checkpointer.dispose()
        self._committer.shutdown(wait=True)
        for inline in (self._durable, self._relaxed):
            if inline is not None:
                inline.dispose()
        await self.engine.dispose()


def _inline_engine(url: Any, *, relaxed: bool) -> Engine:
    """One connection, used only from the event loop's thread."""
    engine = sa_create_engine(
        url, pool_size=1, max_overflow=0, connect_args={"check_same_thread": False, "timeout": 5}
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "connect", _no_autocheckpoint)
    if relaxed:
        event.listen(engine, "connect", _relaxed_sync)
    return engine
