"""A synthetic decision history whose right answers are known by construction, written
straight into the tables (fast, and independent of the service that made them).

The designed week (`WEEK`, 2026-W47) holds:

- `expense`: alice, bob and carol decide 120 cases each. Their overrides cluster at
  confidence 0.70-0.80 (half of those cases) and are rare elsewhere (1 in 25).
- `refund`: 100 cases, humans overturn the AI 40 times: the AI adds little.
- `invoice`: 60 cases, 1 override: rubber-stamping by kind.
- eve approves 60 `expense` cases, each within 2 seconds, never disagreeing.
- frank overrides 27 of his 60 `expense` cases, far from his peers.
- 10 stop-the-line cases decided by two people, 8 of them in agreement.
- 400 cases decided automatically.
- Every case with a due time is settled in time; `other` is a small share of codes.

The previous week holds 100 `expense` decisions with 10 overrides, for the trend.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Connection

from bot.analytics.report import Week
from bot.rows import decision_facts
from bot.store.tables import cases, decisions

WEEK = Week.parse("2026-W47")
CONFIDENCES = [0.50 + 0.05 * i for i in range(10)]  # 0.50 ... 0.95: two per bucket 5..9


@dataclass(frozen=True)
class Made:
    kind: str
    reviewer: str
    overrode: bool
    confidence: float
    seconds: float = 300.0
    lane: str = "review"
    code: str | None = None


def designed() -> Iterator[Made]:
    for reviewer in ("slack:alice", "slack:bob", "discord:100000000000000003"):
        for n in range(120):
            confidence = CONFIDENCES[n % 10]
            band = 0.70 <= confidence < 0.80
            yield Made("expense", reviewer, n % 2 == 0 if band else n % 25 == 1, confidence)
    for n in range(100):
        yield Made("refund", "slack:carol", n % 5 in (0, 1), CONFIDENCES[n % 10])
    for n in range(60):
        yield Made("invoice", "slack:dana", n == 7, CONFIDENCES[n % 10])
    for n in range(60):
        yield Made("expense", "slack:eve", False, CONFIDENCES[n % 10], seconds=2.0)
    for n in range(60):
        yield Made("expense", "slack:frank", n % 20 < 9, CONFIDENCES[n % 10])


def _case_row(
    case_id: str, made: Made, at: datetime, *, status: str, decided: datetime | None
) -> dict[str, Any]:
    return {
        "id": case_id,
        "source": "default",
        "kind": made.kind,
        "title": f"{made.kind} {case_id}",
        "status": status,
        "lane": made.lane,
        "rule": "rule 4",
        "policy_version": "v1",
        "recommended_action": "approve",
        "confidence": made.confidence,
        "requested_by": None,
        "callback_url": None,
        "audit_sampled": False,
        "blind_review": False,
        "due_at": at + timedelta(hours=4) if made.lane != "auto" else None,
        "decided_at": decided,
        "created_at": at,
        "updated_at": decided or at,
        "version": 2,
        "idempotency_key": None,
        "request_hash": hashlib.sha256(case_id.encode()).hexdigest(),
        "submit_response": "{}",
        "body": '{"title": "x", "question": "q", "facts": {}}',
    }


def _decision_row(
    case: dict[str, Any], made: Made, at: datetime, *, final: bool = True, action: str | None = None
) -> dict[str, Any]:
    chosen = action or ("reject" if made.overrode else "approve")
    return decision_facts(case) | {
        "case_id": case["id"],
        "action": chosen,
        "reason_code": made.code or ("policy_violation" if chosen == "reject" else "policy_match"),
        "reason": "Checked the receipt." if chosen == "reject" else None,
        "reviewer": made.reviewer,
        "platform": made.reviewer.partition(":")[0],
        "decided_by": "human",
        "final": final,
        "overrode_ai": chosen != "approve",
        "policy_version": "v1",
        "at": at,
    }


def seed(conn: Connection, week: Week = WEEK) -> None:
    """Write the designed history (and the previous week's) into an empty store."""
    case_rows: list[dict[str, Any]] = []
    decision_rows: list[dict[str, Any]] = []
    start = week.start.astimezone(UTC) + timedelta(hours=1)
    for n, made in enumerate(designed()):
        at = start + timedelta(minutes=10 * n)
        decided = at + timedelta(seconds=made.seconds)
        case_id = f"w{n:06d}"
        status = "rejected" if made.overrode else "approved"
        case_rows.append(_case_row(case_id, made, at, status=status, decided=decided))
        decision_rows.append(_decision_row(case_rows[-1], made, decided))
    for n in range(10):  # quorum cases: two votes each, two of them split
        made = Made("incident", "slack:ops1", False, 0.95, lane="stop_the_line")
        at = start + timedelta(minutes=7 * n)
        case_id = f"q{n:06d}"
        decided = at + timedelta(minutes=5)
        case_rows.append(_case_row(case_id, made, at, status="approved", decided=decided))
        decision_rows.append(
            _decision_row(case_rows[-1], made, decided - timedelta(minutes=1), final=False)
        )
        second = Made("incident", "slack:ops2", n < 2, 0.95, lane="stop_the_line")
        decision_rows.append(
            _decision_row(case_rows[-1], second, decided, action="reject" if n < 2 else "approve")
        )
    for n in range(400):
        made = Made("expense", "auto", False, 0.97, lane="auto")
        at = start + timedelta(minutes=3 * n)
        case_rows.append(_case_row(f"a{n:06d}", made, at, status="auto_decided", decided=at))
    before = start - timedelta(days=7)
    for n in range(100):
        made = Made("expense", "slack:alice", n % 10 == 0, CONFIDENCES[n % 10])
        at = before + timedelta(minutes=10 * n)
        decided = at + timedelta(seconds=300)
        case_id = f"p{n:06d}"
        status = "rejected" if made.overrode else "approved"
        case_rows.append(_case_row(case_id, made, at, status=status, decided=decided))
        decision_rows.append(_decision_row(case_rows[-1], made, decided))
    conn.execute(insert(cases), case_rows)
    conn.execute(insert(decisions), decision_rows)


def now_after(week: Week = WEEK) -> datetime:
    return week.end.astimezone(UTC) + timedelta(hours=9)
