"""The SLA clock: reminders, escalation, the safe default on timeout, and repeated
pages until on-call acknowledges, fired from the `timers` rows on APScheduler.

An APScheduler interval job sweeps the store. One sweep is one transaction: it claims
the due timers (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas take disjoint
rows; SQLite has one writer), writes what each causes (events, decisions, outbox rows
for thread replies, card updates, pages and callbacks) and marks them fired. Either
all of it commits or none of it does, so a timer fires exactly once however many
replicas sweep and whenever a process stops.

What each timer does, when its case is still waiting for a person:

- `remind:N` (N% of the SLA): a reply in the card's thread mentioning the approvers.
- `breach` (the SLA): the case moves up its lane's `escalate_to` (new cards and timers
  there, a note on the old card); a lane with nowhere to go applies its `on_timeout`
  action, recorded as decided by `timeout`, status `expired`, and the workflow is
  called back.
- `ack` (stop-the-line, `ack_within`): if nobody acknowledged, page again and look
  again after another `ack_within`.

A case waiting on the workflow (`info_requested`) is paused: its timers are moved
later by the time it waited when the answer comes (`Service.answer_info`). Timers of
a case that is no longer open are cleared (marked fired, doing nothing).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Select, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from bot.analytics.report import waiting_by_lane
from bot.calendar import WorkingTime
from bot.intake import targets
from bot.policy import LoadedPolicy
from bot.protocols import Clock
from bot.rows import (
    bump,
    card_targets,
    decision_facts,
    delivery_row,
    event_row,
    lane_timers,
    timer_row,
)
from bot.store.db import Store
from bot.store.tables import cases, decisions, events, outbox, runs, timers
from policies.schema import Lane, parse_schedule

log = logging.getLogger(__name__)

BATCH = 500


Row = Mapping[Any, Any]


def take_run(conn: Connection, key: str, now: datetime) -> bool:
    """Take a scheduled job's run key; False when another replica (or an earlier run)
    has it. Taken in the transaction that does the job's work, so both or neither."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    taken = conn.execute(dialect.insert(runs).values(key=key, at=now).on_conflict_do_nothing())
    return taken.rowcount == 1


def _pointers(place: str, new: list[str]) -> list[str]:
    """The new cards' channels on the platform of `place`, as `#channel` mentions."""
    platform = place.partition(":")[0]
    return ["#" + t.partition(":")[2] for t in new if t.partition(":")[0] == platform]


def _age(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"


class SlaClock:
    def __init__(
        self,
        store: Store,
        policy: LoadedPolicy,
        clock: Clock,
        platforms: Callable[[], Collection[str]],
        on_commit: Callable[..., None],
        *,
        interval: float = 1.0,
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.platforms = platforms
        self.on_commit = on_commit  # called with the ids of the cases that moved
        self._moved: list[str] = []
        self.interval = interval
        self.scheduler: AsyncIOScheduler | None = None
        self._sweeping = asyncio.Lock()
        self._postgres = store.engine.dialect.name == "postgresql"

    def start(self) -> None:
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.scheduler.add_job(
            self._scheduled_sweep,
            IntervalTrigger(seconds=self.interval, timezone=UTC),
            id="sla-sweep",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        daily = self.schedule_trigger("daily")
        if daily is not None:
            self.scheduler.add_job(
                self._scheduled_digest,
                daily,
                id="daily-digest",
                coalesce=True,
                misfire_grace_time=3600,
            )
        weekly = self.schedule_trigger("weekly")
        if weekly is not None:
            self.scheduler.add_job(
                self._scheduled_weekly,
                weekly,
                id="weekly-summary",
                coalesce=True,
                misfire_grace_time=6 * 3600,
            )
        self.scheduler.start()

    def schedule_trigger(self, which: str) -> CronTrigger | None:
        """The cron trigger of `summaries.daily` or `summaries.weekly`, if set."""
        summaries = self.policy.policy.summaries
        schedule = getattr(summaries, which, None) if summaries is not None else None
        if schedule is None:
            return None
        days, hour, minute, zone = parse_schedule(schedule)
        return CronTrigger(
            day_of_week=None if days == "*" else days,
            hour=hour,
            minute=minute,
            timezone=ZoneInfo(zone),
        )

    async def _scheduled_digest(self) -> None:
        try:
            if await self.digest():
                self.on_commit()
        except Exception:
            log.exception("the daily digest failed")

    async def _scheduled_weekly(self) -> None:
        try:
            if await self.weekly_summary():
                self.on_commit()
        except Exception:
            log.exception("the weekly summary failed")

    async def weekly_summary(self) -> bool:
        """Post the last complete week's report, with its charts, to the managers'
        channels, once per week across all replicas (the week's run key). The report,
        the charts and the deliveries are one transaction: a crash leaves the key free."""
        return await self.store.run_write(self._weekly_now)

    def _weekly_now(self, conn: Connection) -> bool:
        import base64

        from bot.analytics import render  # matplotlib: loaded only when a summary is due
        from bot.analytics.report import Week, build, schedule_zone

        summaries = self.policy.policy.summaries
        if summaries is None:
            return False
        now = self.clock.now()
        week = Week.last_complete(now, schedule_zone(self.policy))
        if not take_run(conn, f"weekly:{week.label}", now):
            return False
        report = build(conn, self.policy, week, now)
        images = [
            {"name": name, "png": base64.b64encode(data).decode()}
            for name, data in render.charts(report)
        ]
        payload = {
            "title": f"Signoff weekly summary {week.label}",
            "text": render.summary_text(report),
            "images": images,
        }
        places = targets(summaries.channels, set(self.platforms()), "summaries")
        conn.execute(
            outbox.insert(),
            [{**delivery_row("", "summary", t, payload, now), "case_id": None} for t in places],
        )
        return True

    async def digest(self) -> bool:
        """Post the digest of cases waiting for a person to the managers' channels, once
        per day across all replicas (the first to take the day's run key posts it)."""
        return await self.store.run_write(self._digest_now)

    def _digest_now(self, conn: Connection) -> bool:
        summaries = self.policy.policy.summaries
        if summaries is None:
            return False
        now = self.clock.now()
        zone = parse_schedule(summaries.daily)[3] if summaries.daily else "UTC"
        if not take_run(conn, f"digest:{now.astimezone(ZoneInfo(zone)).date()}", now):
            return False
        lines = [
            f"• {lane}: {count} waiting, {overdue} overdue, the oldest for {_age(now - oldest)}"
            for lane, count, overdue, oldest in waiting_by_lane(conn, now)
        ]
        text = "\n".join(lines) or "Nothing is waiting for a person."
        title = f"Waiting for a person on {now.astimezone(ZoneInfo(zone)):%a %d %b}"
        places = targets(summaries.channels, set(self.platforms()), "summaries")
        conn.execute(
            outbox.insert(),
            [
                {
                    **delivery_row("", "summary", t, {"title": title, "text": text}, now),
                    "case_id": None,
                }
                for t in places
            ],
        )
        return True

    async def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        async with self._sweeping:  # a sweep under way commits or rolls back first
            pass

    async def _scheduled_sweep(self) -> None:
        try:
            await self.sweep()
        except Exception:  # the next interval tries again; nothing was half-written
            log.exception("SLA sweep failed")

    async def sweep(self) -> int:
        """Fire every due timer (in batches); return how many did something."""
        fired = 0
        async with self._sweeping:
            while True:
                self._moved = []
                done, settled = await self.store.run_write(self._sweep_batch)
                fired += done
                if done:
                    self.on_commit(*self._moved)
                if settled < BATCH:
                    return fired

    # -- one transaction -----------------------------------------------------------

    def due_query(self, now: datetime) -> Select[Any]:
        """The claim: due, unfired timers of cases not paused, oldest first; on
        PostgreSQL locked, skipping rows another replica holds."""
        query = (
            select(timers.c.id, timers.c.case_id, timers.c.what)
            .join(cases, cases.c.id == timers.c.case_id)
            .where(
                timers.c.fired_at.is_(None),
                timers.c.due_at <= now,
                cases.c.status != "info_requested",  # paused until the workflow answers
            )
            .order_by(timers.c.due_at, timers.c.id)
            .limit(BATCH)
        )
        if self._postgres:
            query = query.with_for_update(skip_locked=True, of=timers)
        return query

    def _sweep_batch(self, conn: Connection) -> tuple[int, int]:
        """One batch: (timers that did something, timers settled)."""
        now = self.clock.now()
        settled: list[int] = []
        done = 0
        moved: set[str] = set()  # escalated in this batch: their other timers are void
        for timer in conn.execute(self.due_query(now)).mappings().all():
            outcome = False if timer["case_id"] in moved else self._fire(conn, timer, now)
            if outcome and timer["what"] == "breach":
                moved.add(str(timer["case_id"]))
            if outcome is not None:  # None: the case changed under us; next sweep
                settled.append(int(timer["id"]))
                done += outcome
        if settled:
            conn.execute(update(timers).where(timers.c.id.in_(settled)).values(fired_at=now))
        return done, len(settled)

    def _fire(self, conn: Connection, timer: Row, now: datetime) -> bool | None:
        """Do what the timer says: True when it did something, False when there was
        nothing to do (the case is closed, say), None when the case changed under it."""
        case = conn.execute(select(cases).where(cases.c.id == timer["case_id"])).mappings().one()
        lane = self.policy.lane(str(case["lane"]))
        if case["status"] != "pending" or lane is None:
            return False  # decided, cancelled, expired, or a lane the policy no longer has
        what = str(timer["what"])
        if what.startswith("remind:"):
            return self._remind(conn, case, lane, what, now)
        if what == "breach":
            if lane.escalate_to and self.policy.lane(lane.escalate_to) is not None:
                return self._escalate(conn, case, lane, lane.escalate_to, now) or None
            return self._expire(conn, case, lane, now) or None
        if what == "ack":
            return self._repage(conn, case, lane, now)
        log.warning("timer %s has an unknown kind %r", timer["id"], what)
        return False

    def _bump(self, conn: Connection, case: Row, now: datetime, **values: Any) -> bool:
        return conn.execute(bump(case["id"], case["version"], now, **values)).rowcount == 1

    def _whom(self, case: Row, lane: Lane, platform: str) -> list[str]:
        """Who a reminder mentions: the person who claimed the case, else the approvers."""
        claimer = str(case["claimed_by"] or "")
        if claimer.partition(":")[0] == platform:
            return [claimer.partition(":")[2]]
        return lane.approver_entries(platform)

    def _places(self, conn: Connection, case_id: str) -> list[str]:
        """Where the case's cards are (`platform:channel`)."""
        return sorted(r[0] for r in conn.execute(card_targets(case_id)))

    def _event(self, case_id: str, kind: str, detail: dict[str, Any], now: datetime) -> Row:
        return event_row(case_id, kind, "timer", detail, now, self.policy.version)

    # -- what timers do --------------------------------------------------------------

    def _remind(self, conn: Connection, case: Row, lane: Lane, what: str, now: datetime) -> bool:
        point = what.partition(":")[2]
        due = case["due_at"]
        left = f", due {due.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if due else ""
        text = f"⏰ Reminder: {point}% of this case's SLA has passed{left}. It needs a decision."
        places = self._places(conn, case["id"])
        rows = [
            delivery_row(
                case["id"],
                "notify",
                t,
                {"text": text, "mentions": self._whom(case, lane, t.partition(":")[0])},
                now,
            )
            for t in places
        ]
        # and the card, so that it shows the time left as it is now (at risk, say)
        rows += [delivery_row(case["id"], "update_card", t, {}, now) for t in places]
        if rows:
            conn.execute(outbox.insert(), rows)
        conn.execute(events.insert(), [self._event(case["id"], "reminded", {"point": point}, now)])
        return True

    def _escalate(self, conn: Connection, case: Row, lane: Lane, to: str, now: datetime) -> bool:
        target = self.policy.lane(to)
        assert target is not None
        sla = target.sla
        due = WorkingTime(target.hours).add(now, sla) if sla else None
        if not self._bump(conn, case, now, lane=to, due_at=due):
            return False
        old = self._places(conn, case["id"])
        platforms = set(self.platforms())
        new = [t for t in targets(target.channels, platforms, to) if t not in old]
        rows = [delivery_row(case["id"], "post_card", t, {}, now) for t in new]
        rows += [delivery_row(case["id"], "update_card", t, {}, now) for t in old]
        text = f"⏫ The SLA passed without a decision: escalated to the {to} lane."
        rows += [
            delivery_row(
                case["id"], "notify", t, {"text": text, "mentions": _pointers(t, new)}, now
            )
            for t in old
        ]
        pages = [f"{p}:{who}" for p, who in target.page.items() if p in platforms]
        rows += [delivery_row(case["id"], "page", t, {}, now) for t in pages]
        conn.execute(outbox.insert(), rows)
        conn.execute(  # the old lane's clock stops; the new lane's starts
            update(timers)
            .where(timers.c.case_id == case["id"], timers.c.fired_at.is_(None))
            .values(fired_at=now)
        )
        acknowledged = case["acknowledged_at"] is not None
        new_timers = lane_timers(case["id"], target, sla, now, acknowledged=acknowledged)
        if new_timers:
            conn.execute(timers.insert(), new_timers)
        detail = {"from": str(case["lane"]), "to": to, "due_at": due.isoformat() if due else None}
        conn.execute(events.insert(), [self._event(case["id"], "escalated", detail, now)])
        self._moved.append(str(case["id"]))
        return True

    def _expire(self, conn: Connection, case: Row, lane: Lane, now: datetime) -> bool:
        action = lane.on_timeout
        if not self._bump(conn, case, now, status="expired", decided_at=now):
            return False
        decision = {
            "action": action,
            "reason_code": "timeout",
            "reason": f"No decision within the {case['lane']} lane's SLA: the lane's default.",
            "reviewer": "timeout",
            "platform": None,
            "decided_by": "timeout",
            "final": True,
            "overrode_ai": action != case["recommended_action"],
            "policy_version": self.policy.version,
            "at": now,
            **decision_facts(case),
        }
        conn.execute(decisions.insert(), [{"case_id": case["id"], **decision}])
        old = self._places(conn, case["id"])
        rows = [delivery_row(case["id"], "update_card", t, {}, now) for t in old]
        verb = "rejected" if action == "reject" else "approved"
        text = f"⌛ Nobody decided in time: {verb} by default, as the {case['lane']} lane says."
        rows += [delivery_row(case["id"], "notify", t, {"text": text}, now) for t in old]
        if case["callback_url"]:
            body = {
                "type": "expired",
                "escalation": {
                    "id": case["id"],
                    "status": "expired",
                    "lane": case["lane"],
                    "kind": case["kind"],
                    "title": case["title"],
                    "source": case["source"],
                },
                "decision": {**decision, "at": now.isoformat()},
            }
            rows.append(delivery_row(case["id"], "callback", str(case["callback_url"]), body, now))
        if rows:
            conn.execute(outbox.insert(), rows)
        detail = {"action": action, "reason_code": "timeout"}
        conn.execute(events.insert(), [self._event(case["id"], "expired", detail, now)])
        self._moved.append(str(case["id"]))
        return True

    def _repage(self, conn: Connection, case: Row, lane: Lane, now: datetime) -> bool:
        if case["acknowledged_at"] is not None or not lane.ack_within:
            return True
        platforms = set(self.platforms())
        pages = [f"{p}:{who}" for p, who in lane.page.items() if p in platforms]
        rows = [
            delivery_row(case["id"], "page", t, {}, now) for t in pages or [f"log:{case['lane']}"]
        ]
        conn.execute(outbox.insert(), rows)
        again = now + timedelta(seconds=lane.ack_within)
        conn.execute(timers.insert(), [timer_row(case["id"], "ack", again, now)])
        conn.execute(
            events.insert(), [self._event(case["id"], "ack_missed", {"paged_again": pages}, now)]
        )
        return True
