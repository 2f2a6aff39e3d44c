"""Engines and migrations.

Users write `sqlite:///signoff.db` or `postgresql://user@host/db`; Signoff picks the
async driver (aiosqlite, asyncpg). SQLite runs in WAL mode with `synchronous=FULL`
(a case is on disk when its 201 is sent) and a busy timeout, so concurrent writers
wait instead of failing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.errors import ConfigError

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


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    target = async_url(url)
    kwargs: dict[str, Any] = {}
    if target.startswith("postgresql"):
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    else:
        kwargs.update(connect_args={"timeout": 30})
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
