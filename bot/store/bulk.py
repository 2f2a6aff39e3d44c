"""Bulk inserts for the intake path, straight on the driver's cursor.

SQLAlchemy Core costs tens of microseconds a row in bind processing and per
statement in compilation and cache lookups; the intake writer inserts a handful of
rows per case, so it compiles each INSERT once per dialect and hands the driver
plain tuples. Times are converted here the way `UTCDateTime` stores them (naive
UTC; on SQLite, SQLAlchemy's text format), so rows read back the same either way.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, Table
from sqlalchemy.engine import Connection, Dialect

from bot.store.tables import UTCDateTime, read_utc


def _sqlite_time(value: datetime) -> str:
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


class BulkInsert:
    def __init__(self, table: Table, *, skip_existing: bool = False) -> None:
        self.table = table
        self.skip_existing = skip_existing  # rows clashing with a unique key are dropped
        # every column but an integer primary key, which the database numbers
        self.columns = [
            c for c in table.columns if not (c.primary_key and isinstance(c.type, Integer))
        ]
        self._times = [i for i, c in enumerate(self.columns) if isinstance(c.type, UTCDateTime)]
        self._pick = operator.itemgetter(*[c.key for c in self.columns])
        self._compiled: dict[str, tuple[str, list[str]]] = {}

    def _sql(self, dialect: Dialect) -> str:
        found = self._compiled.get(dialect.name)
        if found is None:
            keys = [c.key for c in self.columns]
            compiled = self.table.insert().compile(dialect=dialect, column_keys=keys)
            order = list(compiled.positiontup or keys)
            if order != keys:
                raise RuntimeError(f"unexpected parameter order for {self.table.name}")
            sql = compiled.string
            if self.skip_existing:
                sql = (
                    sql.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1)
                    if dialect.name == "sqlite"
                    else sql + " ON CONFLICT DO NOTHING"
                )
            found = (sql, order)
            self._compiled[dialect.name] = found
        return found[0]

    def __call__(
        self,
        conn: Connection,
        rows: Sequence[dict[str, Any]],
        seen: dict[datetime, Any] | None = None,
    ) -> None:
        """Insert `rows`. `seen` carries converted times from one call to the next: the
        rows of one batch share a few distinct times."""
        if not rows:
            return
        sql = self._sql(conn.dialect)
        convert: Callable[[datetime], Any] = (
            _sqlite_time if conn.dialect.name == "sqlite" else _naive_utc
        )
        pick = self._pick
        times = self._times
        params = []
        if seen is None:
            seen = {}
        for row in rows:
            try:
                values = list(pick(row))
            except KeyError:
                values = [row.get(c.key) for c in self.columns]
            if not times:
                params.append(tuple(values))
                continue
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


class Sql:
    """A statement written once with `?` placeholders, run straight on the driver's
    cursor (no compilation or cache-key work per call). `?*` stands for a list of
    values (`IN (?*)`) and expands to as many placeholders as the list has items.
    Times go in and come out as aware UTC datetimes, whatever the database."""

    def __init__(self, text: str, table: Table | None = None) -> None:
        self.text = text
        columns: list[Any] = list(table.columns) if table is not None else []
        self._times = {c.name for c in columns if isinstance(c.type, UTCDateTime)}

    def _render(self, dialect: Dialect, params: Sequence[Any]) -> tuple[str, list[Any]]:
        sql, flat = self.text, list[Any]()
        for value in params:
            if isinstance(value, list | tuple):
                sql = sql.replace("?*", ", ".join("?" * len(value)) or "NULL", 1)
                flat.extend(value)
            else:
                flat.append(value)
        sqlite = dialect.name == "sqlite"
        flat = [
            (_sqlite_time(v) if sqlite else _naive_utc(v)) if isinstance(v, datetime) else v
            for v in flat
        ]
        if not sqlite:
            parts = sql.split("?")
            sql = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
        return sql, flat

    def rows(self, conn: Connection, *params: Any) -> list[dict[str, Any]]:
        sql, flat = self._render(conn.dialect, params)
        cursor = conn.connection.cursor()
        try:
            cursor.execute(sql, flat)
            names = [d[0] for d in cursor.description]
            found = cursor.fetchall()
        finally:
            cursor.close()
        times = [i for i, n in enumerate(names) if n in self._times]
        out = []
        for row in found:
            values = list(row)
            for i in times:
                values[i] = read_utc(values[i])
            out.append(dict(zip(names, values, strict=True)))
        return out

    def run(self, conn: Connection, *params: Any) -> None:
        sql, flat = self._render(conn.dialect, params)
        cursor = conn.connection.cursor()
        try:
            cursor.execute(sql, flat)
        finally:
            cursor.close()

    def many(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        sql, _ = self._render(conn.dialect, rows[0])
        sqlite = conn.dialect.name == "sqlite"
        convert: Callable[[datetime], Any] = _sqlite_time if sqlite else _naive_utc
        params = [tuple(convert(v) if isinstance(v, datetime) else v for v in row) for row in rows]
        cursor = conn.connection.cursor()
        try:
            cursor.executemany(sql, params)
        finally:
            cursor.close()
