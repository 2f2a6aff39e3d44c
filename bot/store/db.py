"""Engines and migrations.

Users write `sqlite:///signoff.db` or `postgresql://user@host/db`; Signoff picks the
async driver (aiosqlite, asyncpg). SQLite runs in WAL mode with `synchronous=FULL`
(a case is on disk when its 201 is sent) and a busy timeout, so concurrent writers
wait instead of failing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bot.errors import ConfigError

T = TypeVar("T")
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


class Store:
    """The engine, and how to run a unit of work against it.

    A unit of work is a plain function over a SQLAlchemy `Connection`, run in one
    transaction: on PostgreSQL through the async engine's `run_sync`; on SQLite in a
    dedicated writer thread on a synchronous engine, so a whole batch costs one hop
    to a thread instead of one per statement. On SQLite, writes in this process also
    take turns on an asyncio lock: SQLite has one writer, and waiting on a lock is
    cheaper and fairer than SQLite's busy handler, which sleeps in steps of up to
    100 ms.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._lock = asyncio.Lock() if self.is_sqlite else None
        self._sync: Engine | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._readers: ThreadPoolExecutor | None = None
        if self.is_sqlite:
            url = engine.url.set(drivername="sqlite+pysqlite")
            self._sync = sa_create_engine(
                url,
                pool_size=8,
                max_overflow=0,
                connect_args={"check_same_thread": False, "timeout": 30},
            )
            event.listen(self._sync, "connect", _sqlite_pragmas)
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="signoff-sqlite-writer")
            self._readers = ThreadPoolExecutor(4, thread_name_prefix="signoff-sqlite-reader")

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction that commits when the block ends."""
        if self._lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._lock, self.engine.begin() as conn:
            yield conn

    async def run_write(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one transaction that commits when it returns."""
        if self._lock is None:
            async with self.engine.begin() as conn:
                return await conn.run_sync(work)
        assert self._sync is not None
        sync = self._sync

        def unit() -> T:
            with sync.begin() as conn:
                return work(conn)

        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(self._writer, unit)

    async def run_read(self, work: Callable[[Connection], T]) -> T:
        """Run `work` on a connection that only reads."""
        if self._sync is None:
            async with self.engine.connect() as conn:
                return await conn.run_sync(work)
        sync = self._sync

        def unit() -> T:
            with sync.connect() as conn:
                return work(conn)

        return await asyncio.get_running_loop().run_in_executor(self._readers, unit)

    async def close(self) -> None:
        for pool in (self._writer, self._readers):
            if pool is not None:
                pool.shutdown(wait=True)
        if self._sync is not None:
            self._sync.dispose()
        await self.engine.dispose()
