"""The rows every state change writes (events, deliveries, timers) and the two
statements every change starts with, shared by intake, the decision service and the
SLA clock so that they write the same shapes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Select, Update, select, update

from bot.calendar import WorkingTime
from bot.store.tables import cases, outbox
from policies.schema import Lane


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def event_row(
    case_id: str | None,
    kind: str,
    actor: str | None,
    detail: dict[str, Any],
    at: datetime,
    policy_version: str,
) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "at": at,
        "type": kind,
        "actor": actor,
        "detail": dumps(detail),
        "policy_version": policy_version,
    }


def delivery_row(
    case_id: str | None, kind: str, target: str, payload: dict[str, Any], at: datetime
) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "kind": kind,
        "target": target,
        "payload": dumps(payload),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": at,
        "created_at": at,
    }


def timer_row(case_id: str, what: str, due: datetime, at: datetime) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "what": what,
        "due_at": due,
        "created_at": at,
        "fired_at": None,
        "claimed_until": None,
    }


def lane_timers(
    case_id: str, lane: Lane, sla: int | None, at: datetime, *, acknowledged: bool = False
) -> list[dict[str, Any]]:
    """A lane's clock for a case entering it at `at`: reminders and breach of `sla` (in
    the lane's working time), and the acknowledgement deadline of a lane that pages."""
    rows = []
    if sla:
        hours = WorkingTime(lane.hours)
        rows += [
            timer_row(case_id, f"remind:{int(p * 100)}", hours.add(at, sla * p), at)
            for p in lane.reminders
        ]
        rows.append(timer_row(case_id, "breach", hours.add(at, sla), at))
    if lane.ack_within and not acknowledged:
        rows.append(timer_row(case_id, "ack", at + timedelta(seconds=lane.ack_within), at))
    return rows


def card_targets(case_id: str) -> Select[str]:
    """Where the case's cards are (`platform:channel`)."""
    return (
        select(outbox.c.target)
        .where(outbox.c.case_id == case_id, outbox.c.kind == "post_card")
        .distinct()
    )


def bump(case_id: str, version: int, at: datetime, **values: Any) -> Update:
    """The compare-and-set on the case's version that starts every change."""
    return (
        update(cases)
        .where(cases.c.id == case_id, cases.c.version == version)
        .values(version=cases.c.version + 1, updated_at=at, **values)
    )


def decision_facts(case: Any) -> dict[str, Any]:
    """What a decision row copies from its case (a row mapping) for the reports."""
    return {
        "kind": case["kind"],
        "lane": case["lane"],
        "confidence": case["confidence"],
        "blind_review": case["blind_review"],
        "case_created_at": case["created_at"],
        "due_at": case["due_at"],
    }
