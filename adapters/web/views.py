"""What the inbox's pages read: the queue, decided history, the board, a case's thread.

Every list is paginated and filtered in SQL; the queue walks `ix_cases_status_due_at`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy import Connection, func, select
from sqlalchemy.sql.elements import ColumnElement

from bot.store.tables import cases, decisions, events

OPEN = ("pending", "info_requested")
DECIDED = ("approved", "rejected", "expired", "cancelled", "auto_decided")
PAGE_SIZE = 50
MAX_PAGE = 1000
THREAD_LIMIT = 200
BOARD_LIMIT = 20

# the board's columns: (title, statuses)
BOARD = (
    ("Waiting", ("pending",)),
    ("Asked for info", ("info_requested",)),
    ("Approved", ("approved",)),
    ("Rejected or expired", ("rejected", "expired", "cancelled")),
)


@dataclass(frozen=True)
class Filters:
    lane: str | None = None
    kind: str | None = None
    status: str | None = None
    page: int = 1

    def where(self, statuses: Sequence[str]) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = [
            cases.c.status == self.status if self.status else cases.c.status.in_(statuses)
        ]
        if self.lane:
            found.append(cases.c.lane == self.lane)
        if self.kind:
            found.append(cases.c.kind == self.kind)
        return found

    def query(self, **changes: Any) -> str:
        """The filters as a query string, with `changes` applied (for links)."""
        values = {"lane": self.lane, "kind": self.kind, "status": self.status, "page": self.page}
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v not in (None, "", 1)})


@dataclass(frozen=True)
class Row:
    id: str
    title: str
    lane: str
    kind: str
    status: str
    due_at: datetime | None
    created_at: datetime
    decided_at: datetime | None
    recommended_action: str
    confidence: float
    blind_review: bool
    claimed_by: str | None
    decided_by: str | None = None
    action: str | None = None
    reason_code: str | None = None


@dataclass(frozen=True)
class Listing:
    rows: list[Row]
    total: int
    page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))


_COLUMNS = (
    cases.c.id,
    cases.c.title,
    cases.c.lane,
    cases.c.kind,
    cases.c.status,
    cases.c.due_at,
    cases.c.created_at,
    cases.c.decided_at,
    cases.c.recommended_action,
    cases.c.confidence,
    cases.c.blind_review,
    cases.c.claimed_by,
)


def _row(found: Any, **extra: Any) -> Row:
    return Row(**{c.name: found[c.name] for c in _COLUMNS}, **extra)


def queue(conn: Connection, filters: Filters) -> Listing:
    """Open cases, the soonest due first (cases without an SLA last)."""
    where = filters.where(OPEN)
    total = conn.execute(select(func.count()).select_from(cases).where(*where)).scalar_one()
    found = conn.execute(
        select(*_COLUMNS)
        .where(*where)
        .order_by(cases.c.due_at.asc().nulls_last(), cases.c.id)
        .limit(PAGE_SIZE)
        .offset((filters.page - 1) * PAGE_SIZE)
    ).mappings()
    return Listing([_row(r) for r in found], int(total), filters.page)


def _final() -> Any:
    return (
        select(
            decisions.c.case_id,
            func.max(decisions.c.id).label("id"),
        )
        .where(decisions.c.final.is_(True))
        .group_by(decisions.c.case_id)
        .subquery()
    )


def history(conn: Connection, filters: Filters) -> Listing:
    """Decided cases, the latest first, with who decided and why."""
    where = filters.where(DECIDED)
    total = conn.execute(select(func.count()).select_from(cases).where(*where)).scalar_one()
    final = _final()
    found = conn.execute(
        select(
            *_COLUMNS,
            decisions.c.reviewer,
            decisions.c.action,
            decisions.c.reason_code,
        )
        .select_from(
            cases.outerjoin(final, final.c.case_id == cases.c.id).outerjoin(
                decisions, decisions.c.id == final.c.id
            )
        )
        .where(*where)
        .order_by(cases.c.decided_at.desc().nulls_last(), cases.c.id.desc())
        .limit(PAGE_SIZE)
        .offset((filters.page - 1) * PAGE_SIZE)
    ).mappings()
    return Listing(
        [
            _row(r, decided_by=r["reviewer"], action=r["action"], reason_code=r["reason_code"])
            for r in found
        ],
        int(total),
        filters.page,
    )


def board(conn: Connection, filters: Filters) -> list[tuple[str, int, list[Row]]]:
    """Each column of the board: its title, how many cases are in it, the first few."""
    columns = []
    for title, statuses in BOARD:
        where = Filters(filters.lane, filters.kind).where(statuses)
        total = conn.execute(select(func.count()).select_from(cases).where(*where)).scalar_one()
        order = (
            (cases.c.due_at.asc().nulls_last(), cases.c.id)
            if statuses[0] in OPEN
            else (cases.c.decided_at.desc().nulls_last(), cases.c.id.desc())
        )
        found = conn.execute(
            select(*_COLUMNS).where(*where).order_by(*order).limit(BOARD_LIMIT)
        ).mappings()
        columns.append((title, int(total), [_row(r) for r in found]))
    return columns


@dataclass(frozen=True)
class Entry:
    at: datetime
    type: str
    actor: str | None
    detail: dict[str, Any]


def thread(conn: Connection, case_id: str) -> list[Entry]:
    """The case's events, oldest first (the last THREAD_LIMIT of them)."""
    found = conn.execute(
        select(events.c.at, events.c.type, events.c.actor, events.c.detail)
        .where(events.c.case_id == case_id)
        .order_by(events.c.id.desc())
        .limit(THREAD_LIMIT)
    ).all()
    entries = []
    for at, kind, actor, detail in reversed(found):
        try:
            parsed = orjson.loads(detail or "{}")
        except orjson.JSONDecodeError:
            parsed = {}
        entries.append(Entry(at, kind, actor, parsed if isinstance(parsed, dict) else {}))
    return entries


def requested_by(conn: Connection, case_id: str) -> str | None:
    value = conn.execute(select(cases.c.requested_by).where(cases.c.id == case_id)).scalar()
    return None if value is None else str(value)


def live_version(conn: Connection, case_id: str | None = None) -> str:
    """Changes whenever a case (or any open case) changes: for the pages' live refresh."""
    if case_id is not None:
        value = conn.execute(select(cases.c.version).where(cases.c.id == case_id)).scalar()
        return str(value)
    # a decision takes a case out of the open ones (the count changes); any other change
    # to an open case moves its updated_at
    latest, count = conn.execute(
        select(func.max(cases.c.updated_at), func.count()).where(cases.c.status.in_(OPEN))
    ).one()
    return f"{latest}/{count}"
