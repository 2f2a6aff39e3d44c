"""The weekly report: what review did, in numbers, and the flags that say where it is
real and where it is theatre.

Every number is an SQL aggregate over one week's rows (found through the indexes on
`cases.created_at` and `decisions.at`); nothing loads a table into Python. The
definitions are DESIGN.md's:

- override: the human's action differs from the AI's recommendation
  (`decisions.overrode_ai`); override rate = overrides / human decisions, by kind,
  lane, reviewer, confidence bucket and week. Healthy 5-20%; under 3% says
  rubber-stamping, over 30% says the AI adds little.
- automation rate: cases decided automatically / all cases.
- time to decision: from the case's arrival to its final human decision.
- SLA compliance: cases with a due time settled by then / those settled (or expired).
- calibration: human agreement per confidence bucket, and the lowest confidence from
  which agreement stays above the target: a suggested threshold for the policy.

The week is an ISO week (Monday to Monday) in the time zone of the policy's
`summaries.weekly` schedule (UTC without one).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from statistics import NormalDist
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.policy import LoadedPolicy
from bot.store.tables import cases, decisions, read_utc
from policies.schema import parse_schedule

HEALTHY = (0.05, 0.20)
RUBBER_STAMP = 0.03
ADDS_LITTLE = 0.30
MIN_SAMPLE = 20  # decisions before a rate is judged
FAST_SECONDS = 10.0  # a median time to decide under this is too fast to have read the card
OUTLIER_P = 0.001  # two-sided, for a reviewer against their peers
AGREEMENT_TARGET = 0.95
OTHER_SHARE = 0.25
SLA_TARGET = 0.90
BUCKETS = 10  # confidence buckets of 0.1
HUMAN = decisions.c.decided_by == "human"
OPEN = ("pending", "info_requested")


@dataclass(frozen=True)
class Week:
    label: str  # "2026-W47"
    start: datetime  # aware, Monday 00:00 in `zone`
    end: datetime
    zone: str

    @classmethod
    def parse(cls, text: str, zone: str = "UTC") -> Week:
        """An ISO week, `2026-W47`."""
        try:
            year, number = text.upper().split("-W")
            monday = date.fromisocalendar(int(year), int(number), 1)
        except ValueError as exc:
            raise ValueError(f"{text!r} is not an ISO week: write e.g. 2026-W47") from exc
        return cls.starting(monday, zone)

    @classmethod
    def starting(cls, monday: date, zone: str) -> Week:
        tz = ZoneInfo(zone)
        start = datetime(monday.year, monday.month, monday.day, tzinfo=tz)
        end = start + timedelta(days=7)
        year, number, _ = monday.isocalendar()
        return cls(f"{year}-W{number:02d}", start, end.astimezone(tz), zone)

    @classmethod
    def last_complete(cls, now: datetime, zone: str = "UTC") -> Week:
        """The last week that has ended by `now`."""
        today = now.astimezone(ZoneInfo(zone)).date()
        return cls.starting(today - timedelta(days=today.weekday() + 7), zone)

    def previous(self) -> Week:
        return Week.starting(self.start.date() - timedelta(days=7), self.zone)


@dataclass(frozen=True)
class Rate:
    """Overrides among human decisions, for one group (a kind, a lane, a reviewer...)."""

    key: str
    decisions: int
    overrides: int

    @property
    def rate(self) -> float | None:
        return self.overrides / self.decisions if self.decisions else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rate": self.rate}


@dataclass(frozen=True)
class Flag:
    """A finding that explains itself: what was measured, against what, what to do."""

    code: str
    subject: str
    measured: str
    against: str
    action: str
    severity: str = "warning"


@dataclass
class Report:
    week: str
    start: datetime
    end: datetime
    cases: int = 0
    automatic: int = 0
    by_lane: dict[str, int] = field(default_factory=dict)
    human_decisions: int = 0
    overrides: int = 0
    override_by_kind: list[Rate] = field(default_factory=list)
    override_by_lane: list[Rate] = field(default_factory=list)
    override_by_reviewer: list[Rate] = field(default_factory=list)
    override_by_bucket: list[Rate] = field(default_factory=list)
    previous_by_kind: list[Rate] = field(default_factory=list)
    previous_rate: float | None = None
    median_seconds: float | None = None
    p90_seconds: float | None = None
    reviewer_median_seconds: dict[str, float] = field(default_factory=dict)  # the fast ones
    sla_due: int = 0
    sla_met: int = 0
    previous_sla: float | None = None
    queue: dict[str, dict[str, Any]] = field(default_factory=dict)
    reason_codes: dict[str, int] = field(default_factory=dict)
    blind: Rate = field(default_factory=lambda: Rate("blind", 0, 0))
    shown: Rate = field(default_factory=lambda: Rate("shown", 0, 0))
    quorum_cases: int = 0
    quorum_agreed: int = 0
    suggested_threshold: float | None = None
    current_threshold: float | None = None
    flags: list[Flag] = field(default_factory=list)
    reviewer_kinds: list[tuple[str, Rate]] = field(default_factory=list)  # per reviewer, kind
    trend: list[dict[str, Any]] = field(default_factory=list)  # the last 8 weeks, oldest first

    @property
    def automation_rate(self) -> float | None:
        return self.automatic / self.cases if self.cases else None

    @property
    def override_rate(self) -> float | None:
        return self.overrides / self.human_decisions if self.human_decisions else None

    @property
    def sla_compliance(self) -> float | None:
        return self.sla_met / self.sla_due if self.sla_due else None

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (the API's and `--format json`'s shape)."""
        rates = ("override_by_kind", "override_by_lane", "override_by_reviewer")
        return {
            "week": self.week,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "cases": self.cases,
            "automatic": self.automatic,
            "automation_rate": self.automation_rate,
            "escalation_by_lane": {
                lane: {"cases": n, "rate": n / self.cases if self.cases else None}
                for lane, n in sorted(self.by_lane.items())
            },
            "human_decisions": self.human_decisions,
            "overrides": self.overrides,
            "override_rate": self.override_rate,
            "override_rate_previous_week": self.previous_rate,
            **{name: [r.as_dict() for r in getattr(self, name)] for name in rates},
            "override_by_confidence": [r.as_dict() for r in self.override_by_bucket],
            "override_by_kind_previous_week": [r.as_dict() for r in self.previous_by_kind],
            "time_to_decision_seconds": {"median": self.median_seconds, "p90": self.p90_seconds},
            "fast_reviewers_median_seconds": self.reviewer_median_seconds,
            "sla": {
                "due": self.sla_due,
                "met": self.sla_met,
                "compliance": self.sla_compliance,
                "previous_week": self.previous_sla,
            },
            "queue": self.queue,
            "reason_codes": self.reason_codes,
            "blind_review": {"blind": self.blind.as_dict(), "shown": self.shown.as_dict()},
            "quorum": {"cases": self.quorum_cases, "agreed": self.quorum_agreed},
            "calibration": {
                "target_agreement": AGREEMENT_TARGET,
                "suggested_threshold": self.suggested_threshold,
                "current_threshold": self.current_threshold,
            },
            "trend": self.trend,
            "flags": [asdict(f) for f in self.flags],
        }

    def overrides_dict(self) -> dict[str, Any]:
        """Only the override analysis (`GET /v1/reports/overrides`)."""
        full = self.as_dict()
        keep = (
            "week",
            "start",
            "end",
            "human_decisions",
            "overrides",
            "override_rate",
            "override_rate_previous_week",
            "override_by_kind",
            "override_by_lane",
            "override_by_reviewer",
            "override_by_confidence",
            "override_by_kind_previous_week",
            "calibration",
            "trend",
        )
        return {key: full[key] for key in keep} | {
            "flags": [f for f in full["flags"] if f["code"] != "sla_slipping"]
        }


# -- SQL ----------------------------------------------------------------------------


def _seconds(conn: Connection, later: Any, earlier: Any) -> ColumnElement[Any]:
    """`later - earlier` in seconds, on SQLite and PostgreSQL."""
    if conn.dialect.name == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0
    return func.extract("epoch", later - earlier)


def _bucket() -> ColumnElement[int]:
    """The confidence's tenth (0 for [0, 0.1) ... 9 for [0.9, 1]), without `floor`
    (which SQLite may lack) or a cast (which rounds on PostgreSQL)."""
    return case(
        *((decisions.c.confidence < (i + 1) / BUCKETS, i) for i in range(BUCKETS - 1)), else_=9
    )


def _human_in(week: Week) -> ColumnElement[bool]:
    return and_(HUMAN, decisions.c.at >= week.start, decisions.c.at < week.end)


Group = tuple[str, str, str, int, bool]  # kind, lane, reviewer, confidence bucket, blind


def _groups(conn: Connection, week: Week) -> dict[Group, tuple[int, int]]:
    """The week's human decisions and overrides by kind, lane, reviewer, confidence
    bucket and blindness: one grouped query, rolled up in Python (a few thousand rows)
    into each breakdown the report needs."""
    bucket = _bucket()
    query = (
        select(
            decisions.c.kind,
            decisions.c.lane,
            decisions.c.reviewer,
            bucket,
            decisions.c.blind_review,
            func.count(),
            func.sum(case((decisions.c.overrode_ai, 1), else_=0)),
        )
        .where(_human_in(week))
        .group_by(
            decisions.c.kind,
            decisions.c.lane,
            decisions.c.reviewer,
            bucket,
            decisions.c.blind_review,
        )
    )
    return {
        (str(k), str(la), str(r), int(b), bool(bl)): (int(n), int(o or 0))
        for k, la, r, b, bl, n, o in conn.execute(query)
    }


def _rollup(groups: Mapping[Group, tuple[int, int]], key: Callable[[Group], str]) -> list[Rate]:
    totals: dict[str, list[int]] = {}
    for group, (n, o) in groups.items():
        found = totals.setdefault(key(group), [0, 0])
        found[0] += n
        found[1] += o
    return [Rate(k, n, o) for k, (n, o) in sorted(totals.items())]


def _percentiles(conn: Connection, seconds: Any, where: Any, count: int) -> list[float | None]:
    """The median and p90 of `seconds` (nearest rank)."""
    if count == 0:
        return [None, None]
    base = select(seconds.label("s")).where(where)
    if conn.dialect.name == "postgresql":
        row = conn.execute(
            select(
                func.percentile_disc(0.5).within_group(seconds),
                func.percentile_disc(0.9).within_group(seconds),
            ).where(where)
        ).one()
        return [float(row[0]), float(row[1])]
    found: list[float | None] = []
    for q in (0.5, 0.9):
        rank = max(1, math.ceil(q * count))
        sub = base.subquery()
        value = conn.execute(select(sub.c.s).order_by(sub.c.s).offset(rank - 1).limit(1)).scalar()
        found.append(float(value) if value is not None else None)
    return found


def schedule_zone(policy: LoadedPolicy) -> str:
    """The time zone weeks are counted in: the weekly summary's, else UTC."""
    summaries = policy.policy.summaries
    if summaries is None or summaries.weekly is None:
        return "UTC"
    return parse_schedule(summaries.weekly)[3]


async def weekly(engine: AsyncEngine, policy: LoadedPolicy, week: Week, now: datetime) -> Report:
    """Build the report on a pooled connection (on SQLite, aiosqlite's thread), so a big
    week does not hold up the server's event loop."""
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: build(sync, policy, week, now))


def build(conn: Connection, policy: LoadedPolicy, week: Week, now: datetime) -> Report:
    """The report for `week` (run in one read transaction)."""
    report = Report(week.label, week.start, week.end)
    in_week = and_(cases.c.created_at >= week.start, cases.c.created_at < week.end)
    for lane, status, n in conn.execute(
        select(cases.c.lane, cases.c.status, func.count())
        .where(in_week)
        .group_by(cases.c.lane, cases.c.status)
    ):
        report.cases += int(n)
        if status == "auto_decided":
            report.automatic += int(n)
        else:
            report.by_lane[str(lane)] = report.by_lane.get(str(lane), 0) + int(n)

    groups = _groups(conn, week)
    report.override_by_kind = _rollup(groups, lambda g: g[0])
    report.override_by_lane = _rollup(groups, lambda g: g[1])
    report.override_by_reviewer = _rollup(groups, lambda g: g[2])
    report.override_by_bucket = _rollup(groups, lambda g: str(g[3]))
    pairs: dict[tuple[str, str], list[int]] = {}
    for (kind, _, reviewer, _, _), (n, o) in groups.items():
        found = pairs.setdefault((reviewer, kind), [0, 0])
        found[0] += n
        found[1] += o
    report.reviewer_kinds = [(r, Rate(k, n, o)) for (r, k), (n, o) in sorted(pairs.items())]
    report.human_decisions = sum(r.decisions for r in report.override_by_kind)
    report.overrides = sum(r.overrides for r in report.override_by_kind)
    previous = week.previous()
    report.previous_by_kind = _rollup(_groups(conn, previous), lambda g: g[0])
    before = sum(r.decisions for r in report.previous_by_kind)
    report.previous_rate = (
        sum(r.overrides for r in report.previous_by_kind) / before if before else None
    )

    seconds = _seconds(conn, decisions.c.at, decisions.c.case_created_at)
    final = and_(_human_in(week), decisions.c.final.is_(True))
    finals = conn.execute(select(func.count()).where(final)).scalar_one()
    report.median_seconds, report.p90_seconds = _percentiles(conn, seconds, final, int(finals))
    report.reviewer_median_seconds = _fast_reviewers(conn, seconds, week)

    report.sla_due, report.sla_met = _sla(conn, week)
    report.previous_sla = _compliance(*_sla(conn, previous))
    report.queue = _queue(conn, now)
    report.reason_codes = {
        str(code): int(n)
        for code, n in conn.execute(
            select(decisions.c.reason_code, func.count())
            .where(_human_in(week))
            .group_by(decisions.c.reason_code)
            .order_by(func.count().desc())
        )
    }
    by_blind = {r.key: r for r in _rollup(groups, lambda g: "blind" if g[4] else "shown")}
    report.blind = by_blind.get("blind", Rate("blind", 0, 0))
    report.shown = by_blind.get("shown", Rate("shown", 0, 0))
    report.quorum_cases, report.quorum_agreed = _quorum(conn, week)
    report.current_threshold = _current_threshold(policy)
    report.suggested_threshold = suggest_threshold(report.override_by_bucket)
    report.trend = trend(conn, week)
    report.flags = flags(report)
    return report


def trend(conn: Connection, week: Week, weeks: int = 8) -> list[dict[str, Any]]:
    """Volume, automation and overrides for `week` and the `weeks - 1` before it."""
    found: list[dict[str, Any]] = []
    current = week
    for _ in range(weeks):
        total, automatic = conn.execute(
            select(
                func.count(), func.sum(case((cases.c.status == "auto_decided", 1), else_=0))
            ).where(cases.c.created_at >= current.start, cases.c.created_at < current.end)
        ).one()
        made, overrides = conn.execute(
            select(func.count(), func.sum(case((decisions.c.overrode_ai, 1), else_=0))).where(
                _human_in(current)
            )
        ).one()
        found.append(
            {
                "week": current.label,
                "cases": int(total),
                "automatic": int(automatic or 0),
                "decisions": int(made),
                "overrides": int(overrides or 0),
            }
        )
        current = current.previous()
    return found[::-1]


def _fast_reviewers(conn: Connection, seconds: Any, week: Week) -> dict[str, float]:
    """The median time to decide of each reviewer who takes under FAST_SECONDS for most
    of their decisions (at least MIN_SAMPLE): one grouped count finds them, and only
    their medians are computed."""
    found: dict[str, float] = {}
    counts = conn.execute(
        select(
            decisions.c.reviewer,
            func.count(),
            func.sum(case((seconds < FAST_SECONDS, 1), else_=0)),
        )
        .where(_human_in(week))
        .group_by(decisions.c.reviewer)
        .having(func.count() >= MIN_SAMPLE)
    ).all()
    for reviewer, n, fast in counts:
        if 2 * int(fast or 0) <= int(n):
            continue
        median = _percentiles(
            conn, seconds, and_(_human_in(week), decisions.c.reviewer == reviewer), int(n)
        )[0]
        if median is not None:
            found[str(reviewer)] = round(median, 1)
    return found


def _sla(conn: Connection, week: Week) -> tuple[int, int]:
    """Cases with a due time settled in the week (their final decision, a person's or
    the timeout's, falls in it), and how many of them in time."""
    settled = and_(
        decisions.c.final.is_(True),
        decisions.c.at >= week.start,
        decisions.c.at < week.end,
        decisions.c.due_at.is_not(None),
    )
    met = case(
        (and_(decisions.c.decided_by != "timeout", decisions.c.at <= decisions.c.due_at), 1),
        else_=0,
    )
    due, ok = conn.execute(select(func.count(), func.sum(met)).where(settled)).one()
    return int(due), int(ok or 0)


def _compliance(due: int, met: int) -> float | None:
    return met / due if due else None


def waiting_by_lane(conn: Connection, now: datetime) -> list[tuple[str, int, int, datetime]]:
    """What waits for a person now, by lane: how many, how many overdue, and since when
    the oldest waits (the daily digest says the same)."""
    rows = conn.execute(
        select(
            cases.c.lane,
            func.count(),
            func.sum(case((cases.c.due_at < now, 1), else_=0)),
            func.min(cases.c.created_at),
        )
        .where(cases.c.status.in_(OPEN))
        .group_by(cases.c.lane)
        .order_by(cases.c.lane)
    ).all()
    return [
        (str(lane), int(n), int(overdue or 0), read_utc(oldest) or now)
        for lane, n, overdue, oldest in rows
    ]


def _queue(conn: Connection, now: datetime) -> dict[str, dict[str, Any]]:
    return {
        lane: {
            "waiting": n,
            "overdue": overdue,
            "oldest_hours": round((now - oldest).total_seconds() / 3600, 1),
        }
        for lane, n, overdue, oldest in waiting_by_lane(conn, now)
    }


def _quorum(conn: Connection, week: Week) -> tuple[int, int]:
    """Cases decided by several people in the week, and how many of them agreed."""
    decided_in_week = select(decisions.c.case_id).where(_human_in(week))
    per_case = (
        select(
            decisions.c.case_id,
            func.count().label("votes"),
            func.count(func.distinct(decisions.c.action)).label("actions"),
        )
        .where(HUMAN, decisions.c.case_id.in_(decided_in_week))
        .group_by(decisions.c.case_id)
        .having(func.count() >= 2)
        .having(func.max(decisions.c.at) >= week.start)
        .having(func.max(decisions.c.at) < week.end)
        .subquery()
    )
    total, agreed = conn.execute(
        select(func.count(), func.sum(case((per_case.c.actions == 1, 1), else_=0)))
    ).one()
    return int(total), int(agreed or 0)


def _current_threshold(policy: LoadedPolicy) -> float | None:
    """The confidence below which the policy sends cases to a person (its highest
    `confidence_below` routing to a human lane)."""
    found = [
        rule.when.confidence_below
        for rule in policy.policy.rules
        if rule.when is not None
        and rule.when.confidence_below is not None
        and policy.lane(rule.lane) is not None
    ]
    return max(found) if found else None


def suggest_threshold(buckets: Sequence[Rate], target: float = AGREEMENT_TARGET) -> float | None:
    """The lowest confidence from which human agreement stays at or above `target` in
    every bucket up to 1.0 (each bucket with at least MIN_SAMPLE decisions counted)."""
    judged = sorted(((int(r.key), r) for r in buckets if r.decisions >= MIN_SAMPLE), reverse=True)
    threshold = None
    for index, rate in judged:
        if 1 - (rate.rate or 0) < target:
            break
        threshold = index / BUCKETS
    return threshold


# -- flags --------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def two_proportion_p(a: int, n: int, b: int, m: int) -> float:
    """Two-sided p-value that a/n and b/m come from one rate (pooled z-test)."""
    if n == 0 or m == 0:
        return 1.0
    pooled = (a + b) / (n + m)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    if spread == 0:
        return 1.0 if a / n == b / m else 0.0
    z = (a / n - b / m) / spread
    return 2 * (1 - NormalDist().cdf(abs(z)))


def flags(report: Report) -> list[Flag]:
    found: list[Flag] = []
    low, high = HEALTHY
    for rate in report.override_by_kind:
        if rate.decisions < MIN_SAMPLE or rate.rate is None:
            continue
        if rate.rate < RUBBER_STAMP:
            found.append(
                Flag(
                    "rubber_stamp_kind",
                    rate.key,
                    f"override rate {_pct(rate.rate)} ({rate.overrides} of {rate.decisions})",
                    f"under {RUBBER_STAMP:.0%}; healthy is {low:.0%}-{high:.0%}",
                    "Check that reviewers read these cards: run blind reviews on this kind, or "
                    "let the AI decide it alone if its record holds up.",
                )
            )
        elif rate.rate > ADDS_LITTLE:
            found.append(
                Flag(
                    "ai_adds_little",
                    rate.key,
                    f"override rate {_pct(rate.rate)} ({rate.overrides} of {rate.decisions})",
                    f"over {ADDS_LITTLE:.0%}; healthy is {low:.0%}-{high:.0%}",
                    "The AI's recommendation is overturned too often to help: review the model "
                    "or its prompt for this kind, and its reason codes.",
                )
            )
    found += _reviewer_flags(report)
    found += _threshold_flags(report)
    other = report.reason_codes.get("other", 0)
    if report.human_decisions >= MIN_SAMPLE and other / report.human_decisions > OTHER_SHARE:
        found.append(
            Flag(
                "reasons_not_captured",
                "reason codes",
                f"`other` on {_pct(other / report.human_decisions)} of decisions "
                f"({other} of {report.human_decisions})",
                f"over {OTHER_SHARE:.0%}",
                "The reason codes miss what reviewers decide on: read the words given with "
                "`other` and add the codes they describe.",
            )
        )
    compliance = report.sla_compliance
    if compliance is not None and report.sla_due >= MIN_SAMPLE and compliance < SLA_TARGET:
        trend = (
            f", down from {_pct(report.previous_sla)}"
            if report.previous_sla is not None and report.previous_sla > compliance
            else ""
        )
        found.append(
            Flag(
                "sla_slipping",
                "SLA",
                f"{_pct(compliance)} of {report.sla_due} cases decided in time{trend}",
                f"target {SLA_TARGET:.0%}",
                "Add reviewers to the slow lanes, or lengthen their SLA in the policy.",
            )
        )
    if (
        report.blind.decisions >= MIN_SAMPLE
        and report.shown.decisions >= MIN_SAMPLE
        and two_proportion_p(
            report.shown.overrides,
            report.shown.decisions,
            report.blind.overrides,
            report.blind.decisions,
        )
        < OUTLIER_P
        and (report.shown.rate or 0) < (report.blind.rate or 0)
    ):
        found.append(
            Flag(
                "automation_bias",
                "blind review",
                f"reviewers disagree with the AI {_pct(report.blind.rate)} of the time when "
                f"they cannot see it, {_pct(report.shown.rate)} when they can",
                f"p < {OUTLIER_P} that this is chance",
                "Seeing the recommendation sways reviewers: raise `blind_review` in the policy "
                "and coach on reading the evidence first.",
            )
        )
    return found


def expected_against_peers(
    reviewer: str, by_reviewer_kind: Sequence[tuple[str, Rate]]
) -> tuple[int, int, float, float] | None:
    """A reviewer's decisions and overrides on the kinds their peers decide too, the
    overrides expected at the peers' rate on each kind, and that count's variance.
    None when no kind has enough peer decisions to compare with."""
    totals: dict[str, list[int]] = {}
    for _, rate in by_reviewer_kind:
        found = totals.setdefault(rate.key, [0, 0])
        found[0] += rate.decisions
        found[1] += int(rate.overrides)
    n = o = 0
    expected = variance = 0.0
    for who, rate in by_reviewer_kind:
        if who != reviewer:
            continue
        peers_n = totals[rate.key][0] - rate.decisions
        peers_o = totals[rate.key][1] - rate.overrides
        if peers_n < MIN_SAMPLE:
            continue  # nobody else decides this kind enough to compare with
        p = peers_o / peers_n
        n += rate.decisions
        o += rate.overrides
        expected += rate.decisions * p
        variance += rate.decisions * p * (1 - p)
    return (n, o, expected, variance) if n else None


def _reviewer_flags(report: Report) -> list[Flag]:
    """Rubber-stamping by a reviewer (rarely disagreeing, and too fast to have read the
    card), and reviewers far from their peers: the overrides they made against those
    expected at their peers' rate on the same kinds (a z-test on the counts,
    stratified by kind, with at least MIN_SAMPLE decisions on each side)."""
    found: list[Flag] = []
    for rate in report.override_by_reviewer:
        if rate.decisions < MIN_SAMPLE:
            continue
        fast = report.reviewer_median_seconds.get(rate.key)
        stamped = rate.rate is not None and rate.rate < RUBBER_STAMP
        if stamped and fast is not None and fast < FAST_SECONDS:
            found.append(
                Flag(
                    "rubber_stamp_reviewer",
                    rate.key,
                    f"overrode {_pct(rate.rate)} ({rate.overrides} of {rate.decisions}), "
                    f"median {fast:.0f} s from card to decision",
                    f"under {RUBBER_STAMP:.0%} and under {FAST_SECONDS:.0f} s",
                    "Too fast to have read the cards: talk with this reviewer, and give "
                    "them blind reviews for a while.",
                )
            )
            continue
        compared = expected_against_peers(rate.key, report.reviewer_kinds)
        if compared is None:
            continue
        n, o, expected, variance = compared
        if n < MIN_SAMPLE or variance <= 0:
            continue
        z = (o - expected) / math.sqrt(variance)
        p = 2 * (1 - NormalDist().cdf(abs(z)))
        if p < OUTLIER_P:
            direction = "more" if o > expected else "less"
            found.append(
                Flag(
                    "reviewer_outlier",
                    rate.key,
                    f"overrides {_pct(o / n)} ({o} of {n}), {direction} than peers on the "
                    f"same kinds would ({expected:.1f} expected)",
                    f"a z-test on the counts against peers, p = {p:.1e} (flagged under "
                    f"{OUTLIER_P})",
                    "Compare this reviewer's decisions with a peer's on the same cases; one of "
                    "them reads the policy differently.",
                )
            )
    return found


def _threshold_flags(report: Report) -> list[Flag]:
    found: list[Flag] = []
    total_n, total_o = report.human_decisions, report.overrides
    for rate in report.override_by_bucket:
        rest_n, rest_o = total_n - rate.decisions, total_o - rate.overrides
        if rate.decisions < MIN_SAMPLE or rest_n < MIN_SAMPLE or rate.rate is None:
            continue
        rest = rest_o / rest_n
        if (
            rate.rate >= 2 * rest
            and two_proportion_p(rate.overrides, rate.decisions, rest_o, rest_n) < OUTLIER_P
        ):
            low = int(rate.key) / BUCKETS
            band = f"{low:.2f}-{low + 1 / BUCKETS:.2f}"
            found.append(
                Flag(
                    "threshold_miscalibrated",
                    f"confidence {band}",
                    f"overrides {_pct(rate.rate)} ({rate.overrides} of {rate.decisions}) at "
                    f"confidence {band}, against {_pct(rest)} elsewhere",
                    f"two-proportion test, p < {OUTLIER_P}",
                    f"The AI is overconfident in {band}: send that band to the expert lane, "
                    "or retrain on these overrides (signoff export decisions).",
                )
            )
    if (
        report.suggested_threshold is not None
        and report.current_threshold is not None
        and report.suggested_threshold < report.current_threshold
    ):
        found.append(
            Flag(
                "threshold_can_drop",
                "routing threshold",
                f"humans agreed with the AI at least {AGREEMENT_TARGET:.0%} of the time from "
                f"confidence {report.suggested_threshold:.2f} up",
                f"the policy sends cases below {report.current_threshold:.2f} to a person",
                f"Suggested policy change: `confidence_below: {report.suggested_threshold:.2f}` "
                "for the review rule, so fewer routine cases wait for a person.",
                severity="info",
            )
        )
    return found
