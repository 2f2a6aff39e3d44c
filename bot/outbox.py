"""The outbox worker: delivers what the store says is owed.

Rows are claimed with a lease (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so replicas
share the work; SQLite: one writer at a time), delivered, and marked delivered in the
transaction that also records the card's message handle. Rows of one case go in
order; different cases go in parallel. A failure is retried with exponential backoff
and jitter (or when the platform's `Retry-After` says); a row older than
`outbox_dead_after` is dead-lettered. The worker wakes on commit, and polls as well
for rows written by other replicas and for retries that come due.

A delivery that succeeded just before a crash, before its row was marked, is made
again after the restart: callbacks carry `X-Signoff-Delivery` (the row's id) so a
workflow can drop a repeat.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import signing
from bot.cards import build_card
from bot.policy import LoadedPolicy
from bot.protocols import Adapter, Clock, DeliveryFailed, MessageRef
from bot.store.tables import cards, cases, decisions, events, outbox

log = logging.getLogger(__name__)

class Deferred(Exception):
    """Not yet: the card this row needs has not been posted."""


class OutboxWorker:
    def __init__(
        self,
        engine: AsyncEngine,
        policy: LoadedPolicy,
        adapters: Mapping[str, Adapter],
        secrets: Mapping[str, str | None],
        clock: Clock,
        *,
        dead_after: float = 86400,
        max_backoff: float = 300,
        poll_interval: float = 2.0,
        callback_timeout: float = 10.0,
        lease: float = 60.0,
        batch: int = 64,
        concurrency: int = 32,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.adapters = adapters
        self.secrets = secrets
        self.clock = clock
        self.dead_after = dead_after
        self.max_backoff = max_backoff
        self.poll_interval = poll_interval
        self.batch = batch
        # A claimed row is left alone this long; after a crash, its delivery resumes then.
        self.lease = timedelta(seconds=max(lease, callback_timeout * 2))
        self._limit = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._http = httpx.AsyncClient(timeout=callback_timeout, follow_redirects=False)
        self.delivered = 0
        self.failed = 0

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="signoff-outbox")

    async def stop(self, grace: float = 10.0) -> None:
        """Let deliveries in flight finish and be marked (so none is made twice after a
        restart), then stop; cancel only what is still running after `grace` seconds."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                self._task.cancel()
                try:
                    await self._task
                except asyncio.CancelledError:
                    pass
            self._task = None
        await self._http.aclose()

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                count = await self.run_once()
            except Exception:
                log.exception("outbox pass failed; retrying")
                count = 0
            if count >= self.batch or self._stopping:
                continue
            idle = await self._idle_for()
            try:
                await asyncio.wait_for(self._wake.wait(), idle)
            except TimeoutError:
                pass

    async def _idle_for(self) -> float:
        """Seconds until the next retry comes due, at most the poll interval."""
        async with self.engine.connect() as conn:
            soonest = (
                await conn.execute(
                    select(func.min(outbox.c.next_attempt_at)).where(outbox.c.status == "pending")
                )
            ).scalar()
        if soonest is None:
            return self.poll_interval
        wait = (soonest - self.clock.now()).total_seconds()
        return min(self.poll_interval, max(0.01, wait))

    async def run_once(self) -> int:
        """Claim and deliver one batch of due rows; return how many were claimed."""
        rows = await self._claim()
        by_case: dict[str | None, list[Mapping[str, Any]]] = defaultdict(list)
        for row in rows:
            by_case[row["case_id"]].append(row)
        await asyncio.gather(*(self._deliver_in_order(group) for group in by_case.values()))
        return len(rows)

    async def _claim(self) -> list[Mapping[str, Any]]:
        now = self.clock.now()
        due = and_(
            outbox.c.status == "pending",
            outbox.c.next_attempt_at <= now,
            or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
        )
        pick = select(outbox.c.id).where(due).order_by(outbox.c.id).limit(self.batch)
        if self.engine.dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(pick.scalar_subquery()))
                .values(claimed_until=now + self.lease)
                .returning(*outbox.c)
            )
            return sorted(result.mappings().all(), key=lambda r: r["id"])

    async def _deliver_in_order(self, rows: list[Mapping[str, Any]]) -> None:
        for index, row in enumerate(rows):
            async with self._limit:
                ok = await self._deliver(row)
            if not ok:
                # Later rows of this case wait for this one: release them untouched.
                await self._release([r["id"] for r in rows[index + 1 :]])
                return

    async def _release(self, ids: list[int]) -> None:
        if ids:
            async with self.engine.begin() as conn:
                await conn.execute(update(outbox).where(outbox.c.id.in_(ids)).values(claimed_until=None))

    async def _deliver(self, row: Mapping[str, Any]) -> bool:
        started = time.perf_counter()
        try:
            ref = await self._send(row)
        except Deferred:
            await self._retry(row, "waiting for the card to be posted", 0.5, count=False)
            return False
        except DeliveryFailed as exc:
            await self._failed(row, exc.message, exc.retry_after, exc.permanent)
            return False
        except Exception as exc:  # an adapter bug must not stop the outbox
            log.exception("delivery %s (%s) raised", row["id"], row["kind"])
            await self._failed(row, f"{type(exc).__name__}: {exc}", None, False)
            return False
        await self._done(row, ref)
        self.delivered += 1
        log.debug("delivered %s %s in %.1f ms", row["kind"], row["id"], (time.perf_counter() - started) * 1e3)
        return True

    async def _send(self, row: Mapping[str, Any]) -> MessageRef | None:
        kind = str(row["kind"])
        payload = orjson.loads(row["payload"])
        if kind == "callback":
            await self._callback(row, payload)
            return None
        platform, _, channel = str(row["target"]).partition(":")
        adapter = self.adapters.get(platform)
        if adapter is None:
            raise DeliveryFailed(f"no adapter for platform {platform!r} is running")
        async with self.engine.connect() as conn:
            case = (await conn.execute(select(cases).where(cases.c.id == row["case_id"]))).mappings().one()
            made = (
                await conn.execute(
                    select(decisions).where(decisions.c.case_id == case["id"]).order_by(decisions.c.id)
                )
            ).mappings().all()
            posted = (
                await conn.execute(
                    select(cards.c.message_ref).where(
                        cards.c.case_id == case["id"], cards.c.platform == platform,
                        cards.c.channel == channel,
                    )  # fmt: skip
                )
            ).scalar()
            question = None
            if case["status"] == "info_requested":
                question = (
                    await conn.execute(
                        select(events.c.detail)
                        .where(events.c.case_id == case["id"], events.c.type == "info_requested")
                        .order_by(events.c.id.desc()).limit(1)
                    )
                ).scalar()
        body = orjson.loads(case["body"])
        asked = orjson.loads(question).get("question") if question else None
        card = build_card(case, body, made, self.policy, audit=payload.get("mode") == "audit",
                          info_question=asked)  # fmt: skip
        ref = MessageRef(platform, channel, orjson.loads(posted)) if posted else None
        if kind == "post_card":
            if ref is not None:
                return None  # already posted (a repeat of a delivered row)
            return await adapter.post_card(channel, card)
        if kind == "page":
            await adapter.page(channel, card, None)
            return None
        if ref is None:
            raise Deferred()
        if kind == "update_card":
            await adapter.update_card(ref, card)
        elif kind == "notify":
            await adapter.notify(ref, str(payload.get("text", "")), payload.get("mentions", []))
        else:
            raise DeliveryFailed(f"unknown delivery kind {kind!r}", permanent=True)
        return None

    async def _callback(self, row: Mapping[str, Any], payload: dict[str, Any]) -> None:
        source = await self._source_of(row["case_id"])
        body = orjson.dumps(payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "signoff",
            "X-Signoff-Delivery": str(row["id"]),
            "X-Signoff-Event": str(payload.get("type", "")),
        }
        secret = self.secrets.get(source)
        if secret:
            headers[signing.HEADER] = signing.sign(secret, body, int(self.clock.now().timestamp()))
        try:
            response = await self._http.post(str(row["target"]), content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"callback failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 410:
            raise DeliveryFailed("the workflow answered 410 Gone", permanent=True)
        if not 200 <= response.status_code < 300:
            after = response.headers.get("Retry-After", "")
            raise DeliveryFailed(
                f"callback answered HTTP {response.status_code}",
                retry_after=float(after) if after.isdigit() else None,
            )

    async def _source_of(self, case_id: str | None) -> str:
        async with self.engine.connect() as conn:
            return str((await conn.execute(select(cases.c.source).where(cases.c.id == case_id))).scalar())

    async def _done(self, row: Mapping[str, Any], ref: MessageRef | None) -> None:
        now = self.clock.now()
        async with self.engine.begin() as conn:
            await conn.execute(
                update(outbox).where(outbox.c.id == row["id"])
                .values(status="delivered", delivered_at=now, attempts=outbox.c.attempts + 1,
                        claimed_until=None, last_error=None)  # fmt: skip
            )
            if ref is not None:
                await conn.execute(
                    cards.insert().values(
                        case_id=row["case_id"], platform=ref.platform, channel=ref.channel,
                        message_ref=orjson.dumps(ref.ref).decode(), posted_at=now,
                    )  # fmt: skip
                )

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with equal jitter: between half and all of 2^n seconds, capped."""
        ceiling = min(self.max_backoff, 2.0 ** min(attempts, 30))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto

    async def _failed(self, row: Mapping[str, Any], error: str, retry_after: float | None, permanent: bool) -> None:
        self.failed += 1
        now = self.clock.now()
        age = (now - row["created_at"]).total_seconds()
        if permanent or age >= self.dead_after:
            why = "permanent failure" if permanent else f"undelivered after {int(age)} s"
            log.error("delivery %s (%s to %s) dead: %s; %s", row["id"], row["kind"], row["target"], why, error)
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(outbox).where(outbox.c.id == row["id"])
                    .values(status="dead", attempts=outbox.c.attempts + 1, claimed_until=None,
                            last_error=error[:2000])  # fmt: skip
                )
                await conn.execute(events.insert().values(
                    case_id=row["case_id"], at=now, type="delivery_dead", actor="outbox",
                    detail=orjson.dumps({"delivery": row["id"], "kind": row["kind"], "error": error[:500]}).decode(),
                    policy_version=None,
                ))  # fmt: skip
            return
        delay = retry_after if retry_after is not None else self.backoff(int(row["attempts"]))
        log.warning("delivery %s (%s) failed, retry in %.1f s: %s", row["id"], row["kind"], delay, error)
        await self._retry(row, error, delay, count=True)

    async def _retry(self, row: Mapping[str, Any], error: str, delay: float, *, count: bool) -> None:
        at: datetime = self.clock.now() + timedelta(seconds=delay)
        values: dict[str, Any] = {"next_attempt_at": at, "claimed_until": None, "last_error": error[:2000]}
        if count:
            values["attempts"] = outbox.c.attempts + 1
        async with self.engine.begin() as conn:
            await conn.execute(update(outbox).where(outbox.c.id == row["id"]).values(**values))


