"""The read side: a case as `GET` shows it, and the paginated list."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from sqlalchemy import Connection, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.errors import ForbiddenError, InvalidInput, NotFound
from bot.store.db import Store
from bot.store.tables import cases, decisions, events, outbox, timers

MAX_PAGE = 200
DECISION_FIELDS = (
    "action",
    "reason_code",
    "reason",
    "reviewer",
    "decided_by",
    "platform",
    "at",
    "policy_version",
)


def decision_out(row: Any) -> dict[str, Any]:
    """A decision row as `GET` shows it; `args` only on a `modify`."""
    found = {k: row[k] for k in DECISION_FIELDS} | {"final": row["final"]}
    if row.get("args") is not None:
        found["args"] = orjson.loads(row["args"])
    return found


async def get_case(where: AsyncEngine | Store, case_id: str, source: str) -> dict[str, Any]:
    """The case as `GET /v1/escalations/{id}` shows it: through the store's reader (on
    SQLite, inline on the loop, no thread hop), or on a connection of `where`."""
    if isinstance(where, Store):
        return await where.run_read(lambda conn: read_case(conn, case_id, source))
    async with where.connect() as conn:
        return await conn.run_sync(lambda sync: read_case(sync, case_id, source))


def read_case(conn: Connection, case_id: str, source: str) -> dict[str, Any]:
    """The case as `GET /v1/escalations/{id}` shows it, on a synchronous connection."""
    row = conn.execute(select(cases).where(cases.c.id == case_id)).mappings().first()
    if row is None:
        raise NotFound(f"no case with id {case_id!r}", case_id=case_id)
    if row["source"] != source:
        raise ForbiddenError("this case belongs to another source", case_id=case_id)
    made = (
        (
            conn.execute(
                select(decisions).where(decisions.c.case_id == case_id).order_by(decisions.c.id)
            )
        )
        .mappings()
        .all()
    )
    logged = (
        (conn.execute(select(events).where(events.c.case_id == case_id).order_by(events.c.id)))
        .mappings()
        .all()
    )
    owed = (
        (conn.execute(select(outbox).where(outbox.c.case_id == case_id).order_by(outbox.c.id)))
        .mappings()
        .all()
    )
    clock = (
        (conn.execute(select(timers).where(timers.c.case_id == case_id).order_by(timers.c.due_at)))
        .mappings()
        .all()
    )
    return {
        "id": row["id"],
        "status": row["status"],
        "lane": row["lane"],
        "kind": row["kind"],
        "title": row["title"],
        "source": row["source"],
        "due_at": row["due_at"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "policy_version": row["policy_version"],
        "rule": row["rule"],
        "audit_sampled": row["audit_sampled"],
        "blind_review": row["blind_review"],
        "acknowledged_at": row["acknowledged_at"],
        "acknowledged_by": row["acknowledged_by"],
        "case": orjson.loads(row["body"]),
        "decisions": [decision_out(d) for d in made],
        "events": [
            {
                "at": e["at"],
                "type": e["type"],
                "actor": e["actor"],
                "detail": orjson.loads(e["detail"]),
                "policy_version": e["policy_version"],
            }
            for e in logged
        ],
        "deliveries": [
            {
                "id": o["id"],
                "kind": o["kind"],
                "target": o["target"],
                "status": o["status"],
                "attempts": o["attempts"],
                "last_error": o["last_error"],
                "next_attempt_at": o["next_attempt_at"] if o["status"] == "pending" else None,
                "delivered_at": o["delivered_at"],
            }
            for o in owed
        ],
        "timers": [
            {"what": t["what"], "due_at": t["due_at"], "fired_at": t["fired_at"]} for t in clock
        ],
    }


def _cursor(case_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([case_id])).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = orjson.loads(base64.urlsafe_b64decode(padded))
        if (
            isinstance(value, list)
            and len(value) == 1
            and isinstance(value[0], str)
            and len(value[0]) <= 32
        ):
            return value[0]
    except (ValueError, orjson.JSONDecodeError):
        pass
    raise InvalidInput("cursor is not one this server gave out", field="cursor")


async def list_cases(
    engine: AsyncEngine,
    source: str,
    *,
    status: str | None = None,
    lane: str | None = None,
    kind: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    """Newest first. `next` is the cursor of the following page, or null at the end."""
    query = select(
        cases.c.id,
        cases.c.status,
        cases.c.lane,
        cases.c.kind,
        cases.c.title,
        cases.c.due_at,
        cases.c.created_at,
    ).where(cases.c.source == source)
    if status:
        query = query.where(cases.c.status == status)
    if lane:
        query = query.where(cases.c.lane == lane)
    if kind:
        query = query.where(cases.c.kind == kind)
    if cursor:
        query = query.where(cases.c.id < _decode_cursor(cursor))
    query = query.order_by(cases.c.id.desc()).limit(limit + 1)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    items = [dict(r) for r in rows[:limit]]
    more = len(rows) > limit
    return {"items": items, "next": _cursor(items[-1]["id"]) if more and items else None}
