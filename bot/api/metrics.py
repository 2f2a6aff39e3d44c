"""Prometheus metrics. Counters and the latency histogram live in the process;
gauges that describe the store (cases by lane and status, the outbox) are read from
it at scrape time, so every replica reports the same truth."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.tables import cases, decisions, events, outbox

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


AGES = ((1, "under_1h"), (4, "1h_to_4h"), (24, "4h_to_1d"), (72, "1d_to_3d"))
OLDEST = "over_3d"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "signoff_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.intake = Counter(
            "signoff_cases_submitted_total",
            "Cases accepted by this process, by lane",
            ["lane"],
            registry=self.registry,
        )
        self.cases = Gauge(
            "signoff_cases",
            "Cases in the store by lane and status",
            ["lane", "status"],
            registry=self.registry,
        )
        self.decisions = Gauge(
            "signoff_decisions",
            "Decisions in the store by action and who made them",
            ["action", "decided_by"],
            registry=self.registry,
        )
        self.outbox = Gauge(
            "signoff_outbox",
            "Outbox rows by kind and status (pending is the backlog; dead was given up)",
            ["kind", "status"],
            registry=self.registry,
        )
        self.open_by_age = Gauge(
            "signoff_open_cases_by_age",
            "Cases waiting for a person (pending or asked), by lane and age",
            ["lane", "age"],
            registry=self.registry,
        )
        self.overdue = Gauge(
            "signoff_open_cases_overdue",
            "Cases waiting for a person past their due time, by lane",
            ["lane"],
            registry=self.registry,
        )
        self.breaches = Gauge(
            "signoff_sla_breaches",
            "SLA breaches so far, by what followed (escalated, or expired to the default)",
            ["outcome"],
            registry=self.registry,
        )
        self.outbox_oldest = Gauge(
            "signoff_outbox_oldest_pending_seconds",
            "Age of the oldest undelivered outbox row",
            registry=self.registry,
        )

    async def render(self, engine: AsyncEngine, now: float) -> bytes:
        async with engine.connect() as conn:
            by_lane = (
                await conn.execute(
                    select(cases.c.lane, cases.c.status, func.count()).group_by(
                        cases.c.lane, cases.c.status
                    )
                )
            ).all()
            made = (
                await conn.execute(
                    select(decisions.c.action, decisions.c.decided_by, func.count())
                    .where(decisions.c.final.is_(True))
                    .group_by(decisions.c.action, decisions.c.decided_by)
                )
            ).all()
            owed = (
                await conn.execute(
                    select(outbox.c.kind, outbox.c.status, func.count())
                    .where(outbox.c.status != "delivered")
                    .group_by(outbox.c.kind, outbox.c.status)
                )
            ).all()
            oldest = (
                await conn.execute(
                    select(func.min(outbox.c.created_at)).where(outbox.c.status == "pending")
                )
            ).scalar()
            at = datetime.fromtimestamp(now, UTC)
            age = case(
                *[(cases.c.created_at > at - timedelta(hours=h), name) for h, name in AGES],
                else_=OLDEST,
            )
            waiting = cases.c.status.in_(("pending", "info_requested"))
            aged = (
                await conn.execute(
                    select(cases.c.lane, age, func.count())
                    .where(waiting)
                    .group_by(cases.c.lane, age)
                )
            ).all()
            late = (
                await conn.execute(
                    select(cases.c.lane, func.count())
                    .where(waiting, cases.c.due_at < at)
                    .group_by(cases.c.lane)
                )
            ).all()
            breached = (
                await conn.execute(
                    select(events.c.type, func.count())
                    .where(events.c.type.in_(("escalated", "expired")), events.c.actor == "timer")
                    .group_by(events.c.type)
                )
            ).all()
        self.open_by_age.clear()
        for lane, bucket, count in aged:
            self.open_by_age.labels(lane, bucket).set(count)
        self.overdue.clear()
        for lane, count in late:
            self.overdue.labels(lane).set(count)
        for outcome in ("escalated", "expired"):
            self.breaches.labels(outcome).set(0)
        for outcome, count in breached:
            self.breaches.labels(outcome).set(count)
        for gauge, rows in ((self.cases, by_lane), (self.decisions, made), (self.outbox, owed)):
            gauge.clear()
            for a, b, count in rows:
                gauge.labels(a, b).set(count)
        for kind in ("post_card", "update_card", "notify", "page", "callback"):
            for status in ("pending", "dead"):
                self.outbox.labels(kind, status).inc(0)
        if isinstance(oldest, str):  # SQLite hands back text for an aggregate
            oldest = datetime.fromisoformat(oldest)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        self.outbox_oldest.set(max(0.0, now - oldest.timestamp()) if oldest else 0.0)
        return generate_latest(self.registry)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def timed(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = [500]

            async def send_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_status)
            finally:
                route = scope.get("route")
                path = getattr(route, "path", "unmatched")
                self.latency.labels(scope["method"], path, str(status[0])).observe(
                    time.perf_counter() - started
                )

        return timed
