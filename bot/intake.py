"""Case intake: route a validated case, then commit it with group commit.

Requests that arrive together are written in one transaction by one writer task:
the case, its audit events, its outbox rows and its SLA timers (and, for the `auto`
and `block` lanes, the decision). The 201 goes out only after that transaction has
committed, so an accepted case is durable; a batch costs one fsync, not one per case.
Idempotency keys are checked inside the same transaction, and a unique constraint
backs them up when another replica races us. So are signatures: a new case's
signature is recorded with it, and a request whose signature is already recorded
(a replay, from this process or another, before or after a restart) gets the first
answer and writes nothing (see `bot.store.replays`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import select, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bot.calendar import WorkingTime
from bot.errors import ConflictError
from bot.ids import new_case_id
from bot.policy import LoadedPolicy, route
from bot.rows import decision_facts, dumps, lane_timers
from bot.schemas import CaseIn
from bot.store import replays
from bot.store.bulk import BulkInsert
from bot.store.db import Store
from bot.store.tables import cases, decisions, events, outbox, timers

log = logging.getLogger(__name__)

AUTO_LANES = {"auto": None, "block": "reject"}
INSERT_CASES = BulkInsert(cases)
INSERT_EVENTS = BulkInsert(events)
INSERT_DECISIONS = BulkInsert(decisions)
INSERT_OUTBOX = BulkInsert(outbox)
INSERT_TIMERS = BulkInsert(timers)
SWEEP_EVERY = 5.0  # seconds between two sweeps of the signatures whose window closed


def sampled(case_id: str, salt: str, rate: float) -> bool:
    """A stable coin flip: the same case always gets the same answer."""
    if rate <= 0:
        return False
    digest = hashlib.sha256(f"{salt}:{case_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


@dataclass
class Prepared:
    """A case ready to write: every row, built before the writer sees it."""

    source: str
    idempotency_key: str | None
    request_hash: str
    response: dict[str, Any]
    case_row: dict[str, Any]
    event_rows: list[dict[str, Any]] = field(default_factory=list)
    decision_rows: list[dict[str, Any]] = field(default_factory=list)
    outbox_rows: list[dict[str, Any]] = field(default_factory=list)
    timer_rows: list[dict[str, Any]] = field(default_factory=list)
    claimed: bool = False  # written with its deliveries claimed for this process
    # the request's signature (a hash of its MAC) and when it stops being accepted;
    # None for a bearer token, which the Idempotency-Key protects instead
    replay_key: str | None = None
    replay_expires_at: datetime | None = None


def prepare(
    case: CaseIn,
    policy: LoadedPolicy,
    platforms: set[str],
    now: datetime,
    idempotency_key: str | None,
) -> Prepared:
    body = case.model_dump_json(exclude={"idempotency_key"})
    request_hash = hashlib.sha256(body.encode()).hexdigest()
    routing = route(policy, case)
    case_id = new_case_id()
    version = policy.version
    lane_name = routing.lane
    lane = policy.lane(lane_name)

    def event(kind: str, actor: str | None, detail: dict[str, Any]) -> dict[str, Any]:
        return {
            "case_id": case_id,
            "at": now,
            "type": kind,
            "actor": actor,
            "detail": dumps(detail),
            "policy_version": version,
        }

    def deliver(kind: str, target: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "case_id": case_id,
            "kind": kind,
            "target": target,
            "payload": dumps(payload or {}),
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "claimed_until": None,
            "last_error": None,
            "delivered_at": None,
        }

    event_rows = [
        event("received", f"source:{case.source}", {"kind": case.kind, "title": case.title})
    ]
    outbox_rows: list[dict[str, Any]] = []
    decision_rows: list[dict[str, Any]] = []
    timer_rows: list[dict[str, Any]] = []
    due_at: datetime | None = None
    decision: dict[str, Any] | None = None
    audit = blind = False

    if lane_name in AUTO_LANES:
        status = "auto_decided"
        action = AUTO_LANES[lane_name] or case.recommendation.action
        reason_code = "auto_policy" if lane_name == "auto" else "blocked_by_policy"
        decision = {
            "action": action,
            "reason_code": reason_code,
            "reason": f"decided by policy rule {routing.rule_label!r}",
            "reviewer": "policy",
            "decided_by": "policy",
            "platform": None,
            "at": now.isoformat(),
            "policy_version": version,
        }
        decision_rows.append(
            {
                **decision,
                "case_id": case_id,
                "final": True,
                "at": now,
                "overrode_ai": action != case.recommendation.action,
            }
        )
        event_rows.append(
            event("decided", "policy", {"action": action, "reason_code": reason_code})
        )
        audit = lane_name == "auto" and sampled(case_id, "audit", routing.audit_sample)
        audit_lane = policy.lane(policy.policy.audit_lane_name() or "") if audit else None
        if audit:
            event_rows.append(event("audit_sampled", "policy", {"rate": routing.audit_sample}))
            audit_targets = targets(audit_lane.channels if audit_lane else {}, platforms, "audit")
            outbox_rows += [deliver("post_card", t, {"mode": "audit"}) for t in audit_targets]
        if case.callback_url:
            escalation = {
                "id": case_id,
                "status": status,
                "lane": lane_name,
                "kind": case.kind,
                "title": case.title,
                "source": case.source,
            }
            callback = {"type": "decision", "escalation": escalation, "decision": decision}
            outbox_rows.append(deliver("callback", case.callback_url, callback))
    else:
        assert lane is not None
        status = "pending"
        blind = sampled(case_id, "blind", policy.policy.blind_review)
        sla = case.sla_seconds() or lane.sla
        if sla:
            due_at = WorkingTime(lane.hours).add(now, sla)
        timer_rows = lane_timers(case_id, lane, sla, now)
        outbox_rows += [
            deliver("post_card", t) for t in targets(lane.channels, platforms, lane_name)
        ]
        if lane.page:
            pages = [f"{p}:{who}" for p, who in lane.page.items() if p in platforms]
            outbox_rows += [deliver("page", t) for t in pages or [f"log:{lane_name}"]]

    routed = {
        "lane": lane_name,
        "rule": routing.rule_label,
        "status": status,
        "due_at": due_at.isoformat() if due_at else None,
    }
    event_rows.insert(1, event("routed", "policy", routed))
    response: dict[str, Any] = {
        "id": case_id,
        "status": status,
        "lane": lane_name,
        "due_at": due_at.isoformat() if due_at else None,
    }
    if decision is not None:
        response["decision"] = {k: v for k, v in decision.items() if k != "case_id"}
    case_row = {
        "id": case_id,
        "source": case.source,
        "kind": case.kind,
        "title": case.title,
        "status": status,
        "lane": lane_name,
        "rule": routing.rule_label,
        "policy_version": version,
        "recommended_action": case.recommendation.action,
        "confidence": case.recommendation.confidence,
        "requested_by": case.requested_by,
        "callback_url": case.callback_url,
        "audit_sampled": audit,
        "blind_review": blind,
        "due_at": due_at,
        "acknowledged_at": None,
        "acknowledged_by": None,
        "claimed_by": None,
        "claimed_at": None,
        "decided_at": now if decision else None,
        "created_at": now,
        "updated_at": now,
        "version": 1,
        "idempotency_key": idempotency_key,
        "request_hash": request_hash,
        "submit_response": dumps(response),
        "body": body,
    }
    for row in decision_rows:
        row.update(decision_facts(case_row))
    return Prepared(
        case.source,
        idempotency_key,
        request_hash,
        response,
        case_row,
        event_rows,
        decision_rows,
        outbox_rows,
        timer_rows,
    )


def targets(channels: dict[str, str], platforms: set[str], fallback: str) -> list[str]:
    """`platform:channel` for each configured platform; the log when none is connected."""
    found = [f"{p}:{c}" for p, c in channels.items() if p in platforms]
    return found or [f"log:{fallback}"]


@dataclass
class Accepted:
    status_code: int
    response: dict[str, Any]
    replayed: bool = False  # the answer to an earlier request with the same signature


class Dispatcher(Protocol):
    """Takes the deliveries of cases just written (the outbox, when it is running)."""

    def claim_on_insert(self) -> datetime | None:
        """Until when new deliveries are claimed for `dispatch`; None to leave them."""
        ...

    def dispatch(self, written: list[Prepared]) -> None: ...

    def take_receipts(self) -> Callable[[Connection], None] | None:
        """Bookkeeping to write in the next intake transaction, if any."""
        ...

    def give_back(self, record: Callable[[Connection], None]) -> None:
        """Bookkeeping taken for a transaction that failed."""
        ...


class IntakeWriter:
    """One task that commits queued cases in batches (group commit).

    On SQLite, a new case's deliveries are written already claimed by this process and
    handed straight to the outbox after the commit (no second trip to the database to
    find them); a crash before they are delivered leaves them to be claimed again when
    the claim runs out."""

    def __init__(
        self,
        store: Store,
        on_commit: Callable[[], None],
        max_batch: int = 512,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self._store = store
        self._on_commit = on_commit
        self._dispatcher = dispatcher
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[Prepared, asyncio.Future[Accepted]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="signoff-intake")
        self._sweeper = asyncio.create_task(self._sweep(), name="signoff-signature-sweep")

    async def _sweep(self) -> None:
        """Forget the signatures whose window has closed (every replica does; a second
        sweep of the same rows finds nothing to do)."""
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            try:
                await replays.sweep_all(self._store, datetime.now(UTC))
            except Exception:
                log.warning("sweeping expired signatures failed; will try again", exc_info=True)

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def submit(self, prepared: Prepared) -> Accepted:
        if self._task is None or self._task.done():
            raise RuntimeError("the intake writer is not running")
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((prepared, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            except Exception as exc:  # a batch must never kill the writer
                log.exception("intake batch of %d failed", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(
        self, batch: list[tuple[Prepared, asyncio.Future[Accepted]]], again: bool = True
    ) -> None:
        try:
            results = await self._commit([p for p, _ in batch])
        except IntegrityError:
            if len(batch) == 1 and not again:
                raise
            # Another replica took one of these idempotency keys or signatures between
            # our check and our insert: write them one at a time, each checked afresh,
            # so that each gets its own answer (the other replica's, for a replay).
            for item in batch:
                await self._write([item], again=len(batch) > 1)
            return
        claimed = [p for p, _ in batch if p.claimed]
        if claimed and self._dispatcher is not None:
            self._dispatcher.dispatch(claimed)
        if len(claimed) < len(batch):
            self._on_commit()
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _commit(self, batch: list[Prepared]) -> list[Accepted | Exception]:
        until = None
        if self._dispatcher is not None and self._store.is_sqlite:
            until = self._dispatcher.claim_on_insert()
        for p in batch:
            p.claimed = False
        receipts = self._dispatcher.take_receipts() if self._dispatcher is not None else None

        def work(conn: Connection) -> list[Accepted | Exception]:
            if receipts is not None:
                receipts(conn)
            return _write_batch(conn, batch, until)

        try:
            results = await self._store.run_write(work)
        except BaseException:
            if receipts is not None and self._dispatcher is not None:
                self._dispatcher.give_back(receipts)
            raise
        return results


def _write_batch(
    conn: Connection, batch: list[Prepared], claim_until: datetime | None = None
) -> list[Accepted | Exception]:
    """One transaction: check the batch's signatures and idempotency keys, then insert
    every new row."""
    answered = _replays(conn, batch)
    keyed = [(p.source, p.idempotency_key) for p in batch if p.idempotency_key]
    known: dict[tuple[str, str], tuple[str, str]] = {}
    if keyed:
        rows = conn.execute(
            select(
                cases.c.source,
                cases.c.idempotency_key,
                cases.c.request_hash,
                cases.c.submit_response,
            ).where(tuple_(cases.c.source, cases.c.idempotency_key).in_(keyed))
        )
        known = {(r[0], r[1]): (r[2], r[3]) for r in rows}
    results: list[Accepted | Exception] = []
    new: list[Prepared] = []
    for p in batch:
        first = answered.get(p.replay_key) if p.replay_key else None
        if first is not None:
            results.append(first)
            continue
        key = (p.source, p.idempotency_key) if p.idempotency_key else None
        prior = known.get(key) if key else None
        if key and prior is not None:
            if prior[0] == p.request_hash:
                results.append(Accepted(200, orjson.loads(prior[1])))
            else:
                results.append(_reused_key(p.idempotency_key or ""))
            continue
        if key:
            known[key] = (p.request_hash, dumps(p.response))
        results.append(Accepted(201, p.response))
        new.append(p)
        if p.replay_key:
            answered[p.replay_key] = Accepted(201, p.response, replayed=True)
    if new:
        times: dict[datetime, Any] = {}
        INSERT_CASES(conn, [p.case_row for p in new], times)
        INSERT_EVENTS(conn, [row for p in new for row in p.event_rows], times)
        INSERT_DECISIONS(conn, [row for p in new for row in p.decision_rows], times)
        owed = [row for p in new for row in p.outbox_rows]
        if claim_until is not None:
            for row in owed:
                row["claimed_until"] = claim_until
        INSERT_OUTBOX(conn, owed, times)
        if claim_until is not None and owed:
            # SQLite numbers rows max(rowid) + 1, and we hold its only write lock: the
            # rows just inserted are the last len(owed) numbers.
            last = int(conn.exec_driver_sql("SELECT last_insert_rowid()").scalar_one())
            for offset, row in enumerate(owed):
                row["id"] = last - len(owed) + 1 + offset
            for p in new:
                p.claimed = True
        INSERT_TIMERS(conn, [row for p in new for row in p.timer_rows], times)
        replays.INSERT(
            conn,
            [
                {
                    "digest": p.replay_key,
                    "source": p.source,
                    "expires_at": p.replay_expires_at,
                    "status": 201,
                    "response": p.case_row["submit_response"],
                }
                for p in new
                if p.replay_key
            ],
            times,
        )
    return results


def _replays(conn: Connection, batch: list[Prepared]) -> dict[str, Accepted | Exception]:
    """The first answers to the requests of `batch` that are replays."""
    signed = [
        (p.replay_expires_at, p.replay_key)
        for p in batch
        if p.replay_key and p.replay_expires_at is not None
    ]
    if not signed:
        return {}
    found: dict[str, Accepted | Exception] = {}
    for digest, answer in replays.known(conn, signed).items():
        # a submit's row always holds its answer; one without is another route's claim
        found[digest] = (
            ConflictError(replays.PENDING)
            if answer is None
            else Accepted(answer.status, orjson.loads(answer.body), replayed=True)
        )
    return found


def _reused_key(key: str) -> ConflictError:
    return ConflictError(
        f"Idempotency-Key {key!r} was already used with a different body; "
        "use a new key for a new case, or resend the original body to get its answer",
        idempotency_key=key,
    )
