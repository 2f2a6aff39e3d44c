"""Bulk inserts for the intake path, straight on the driver's cursor.

SQLAlchemy Core costs tens of microseconds a row in bind processing and per
statement in compilation and cache lookups; the intake writer inserts a handful of
rows per case, so it compiles each INSERT once per dialect and hands the driver
plain tuples. Times are converted here the way `UTCDateTime` stores them (naive
UTC; on SQLite, SQLAlchemy's text format), so rows read back the same either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, Table
from sqlalchemy.engine import Connection, Dialect

from bot.store.tables import UTCDateTime


def _sqlite_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


class BulkInsert:
    def __init__(self, table: Table) -> None:
        self.table = table
        # every column but an integer primary key, which the database numbers
        self.columns = [
            c for c in table.columns if not (c.primary_key and isinstance(c.type, Integer))
        ]
        self._times = [i for i, c in enumerate(self.columns) if isinstance(c.type, UTCDateTime)]
        self._compiled: dict[str, tuple[str, list[str]]] = {}

    def _sql(self, dialect: Dialect) -> str:
        found = self._compiled.get(dialect.name)
        if found is None:
            keys = [c.key for c in self.columns]
            compiled = self.table.insert().compile(dialect=dialect, column_keys=keys)
            order = list(compiled.positiontup or keys)
            if order != keys:
                raise RuntimeError(f"unexpected parameter order for {self.table.name}")
            found = (compiled.string, order)
            self._compiled[dialect.name] = found
        return found[0]

    def __call__(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        sql = self._sql(conn.dialect)
        convert: Callable[[datetime], Any] = (
            _sqlite_time if conn.dialect.name == "sqlite" else _naive_utc
        )
        keys = [c.key for c in self.columns]
        params = []
        seen: dict[datetime, Any] = {}  # rows of one batch share a few distinct times
        for row in rows:
            values = [row.get(k) for k in keys]
            for i in self._times:
                value = values[i]
                if value is not None:
                    done = seen.get(value)
                    if done is None:
                        done = seen[value] = convert(value)
                    values[i] = done
            params.append(tuple(values))
        cursor = conn.connection.cursor()
        try:
            cursor.executemany(sql, params)
        finally:
            cursor.close()
