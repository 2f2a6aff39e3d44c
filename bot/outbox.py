"""The outbox worker: delivers what the store says is owed.

Rows are claimed in batches with a lease (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so
replicas share the work; SQLite: one writer at a time). Everything a batch needs is
read in three queries; rows of one case are delivered in order, different cases in
parallel; then the whole batch is marked in one transaction, which also records
where each new card was posted. A failure is retried with exponential backoff and
jitter (or when the platform's `Retry-After` says); a row older than
`outbox_dead_after` is dead-lettered. The worker wakes on commit, and polls as well
for rows written by other replicas and for retries that come due.

A delivery that succeeded just before a crash, before its row was marked, is made
again after the restart (once its lease runs out): callbacks carry
`X-Signoff-Delivery` (the row's id) so a workflow can drop a repeat. Chat posts are
not repeated: a claim that ran out counts as an attempt, and the adapter, handed the
row's identity (`Delivery`), finds the earlier post of a retried delivery by its
marker instead of posting again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import update
from sqlalchemy.engine import Connection

from bot.callbacks import Callbacks, Resolver
from bot.cards import build_card
from bot.intake import Prepared
from bot.pacing import ChannelPacer, Key
from bot.policy import LoadedPolicy
from bot.protocols import Adapter, Clock, Delivery, DeliveryFailed, MessageRef, Summary
from bot.store.bulk import BulkInsert, Sql
from bot.store.db import Store
from bot.store.tables import cards, cases, decisions, events, outbox

log = logging.getLogger(__name__)
RECEIPT_DELAY = 0.02  # seconds a receipt waits for the next intake transaction
Row = Mapping[Any, Any]

# A row re-claimed after its claim ran out may have reached the platform (the process
# died before the batch settled): that counts as an attempt, so the adapter looks for
# the earlier post before it posts again.
_CLAIM = (
    "UPDATE outbox SET claimed_until = ?,"
    " attempts = attempts + CASE WHEN claimed_until IS NULL THEN 0 ELSE 1 END"
    " WHERE id IN (SELECT id FROM outbox"
    " WHERE status = 'pending' AND next_attempt_at <= ?"
    " AND (claimed_until IS NULL OR claimed_until < ?) ORDER BY id LIMIT ?{lock}) RETURNING *"
)
CLAIM = Sql(_CLAIM.format(lock=""), outbox)
CLAIM_SKIP_LOCKED = Sql(_CLAIM.format(lock=" FOR UPDATE SKIP LOCKED"), outbox)
SOONEST = Sql(
    "SELECT min(next_attempt_at) AS next_attempt_at FROM outbox WHERE status = 'pending'", outbox
)
CASES_IN = Sql("SELECT * FROM cases WHERE id IN (?*)", cases)
DECISIONS_IN = Sql("SELECT * FROM decisions WHERE case_id IN (?*) ORDER BY id", decisions)
CARDS_IN = Sql("SELECT * FROM cards WHERE case_id IN (?*)", cards)
QUESTIONS_IN = Sql(
    "SELECT case_id, detail FROM events WHERE case_id IN (?*) AND type = 'info_requested'"
    " ORDER BY id"
)
DELIVERED = Sql(
    "UPDATE outbox SET status = 'delivered', delivered_at = ?, attempts = attempts + 1,"
    " claimed_until = NULL, last_error = NULL WHERE id = ?"
)
# A card posted twice (a delivery re-claimed after its lease ran out) keeps its first
# record; failing the whole settle would lose the other rows' outcomes.
INSERT_CARDS = BulkInsert(cards, skip_existing=True)
# Chat platforms whose channels take a limited number of messages a second.
PACED_PLATFORMS = frozenset({"slack", "discord"})
CREATES = frozenset({"post_card", "notify", "page", "summary"})  # kinds that post a message
# Seconds a row may wait in this process for its channel's turn; a row whose turn is
# further off goes back to the table, due at its turn, so that it holds neither its lease
# nor the batch (whose other channels' outcomes are recorded when the batch is done).
PACE_HOLD = 2.0


class Deferred(Exception):
    """Not yet: the card this row needs has not been posted."""


@dataclass
class _Batch:
    """What a claimed batch needs, read once, and what became of each row."""

    cases: dict[str, Row]
    decisions: dict[str, list[Row]]
    refs: dict[tuple[str, str, str], MessageRef]
    questions: dict[str, str]
    delivered: list[tuple[Row, MessageRef | None]] = field(default_factory=list)
    retry: list[tuple[Row, str, float, bool]] = field(default_factory=list)
    dead: list[tuple[Row, str]] = field(default_factory=list)
    released: list[int] = field(default_factory=list)


class OutboxWorker:
    def __init__(
        self,
        store: Store,
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
        batch: int = 256,
        concurrency: int = 32,
        callback_hosts: Sequence[str] = (),
        callback_resolver: Resolver | None = None,
        pacer: ChannelPacer | None = None,
    ) -> None:
        self.store = store
        self.engine = store.engine
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
        self._unsettled: _Batch | None = None
        self._dispatched: set[asyncio.Task[Any]] = set()
        self._receipts: list[_Batch] = []
        self._receipt_timer: asyncio.TimerHandle | None = None
        self.callbacks = Callbacks(
            callback_hosts, timeout=callback_timeout, resolver=callback_resolver
        )
        self.pacer = pacer

    def wake(self) -> None:
        self._wake.set()

    def claim_on_insert(self) -> datetime | None:
        """The claim to write new cases' deliveries with, while this worker runs."""
        if self._task is None or self._stopping:
            return None
        return self.clock.now() + self.lease

    def dispatch(self, written: Sequence[Prepared]) -> None:
        """Deliver what new cases owe, from memory: they were written claimed by us."""
        rows: list[Row] = [row for p in written for row in p.outbox_rows]
        if not rows:
            return
        batch = _Batch(
            cases={str(p.case_row["id"]): p.case_row for p in written},
            decisions=defaultdict(
                list, {str(p.case_row["id"]): list(p.decision_rows) for p in written}
            ),
            refs={},
            questions={},
        )
        task = asyncio.create_task(self._deliver_batch(rows, batch), name="signoff-dispatch")
        self._dispatched.add(task)
        task.add_done_callback(self._dispatched.discard)

    async def _deliver_batch(self, rows: Sequence[Row], batch: _Batch) -> None:
        try:
            by_case: dict[Any, list[Row]] = defaultdict(list)
            for row in rows:
                by_case[row["case_id"]].append(row)
            await asyncio.gather(*(self._deliver_in_order(g, batch) for g in by_case.values()))
        except Exception:
            # The rows stay claimed until the claim runs out; then the worker retries them.
            log.exception("delivering %d new rows failed; they will be retried", len(rows))
            return
        # The receipts ride along with the next batch of cases; if none comes soon,
        # they are written on their own.
        self._receipts.append(batch)
        if self._receipt_timer is None:
            self._receipt_timer = asyncio.get_running_loop().call_later(
                RECEIPT_DELAY, self._receipts_due
            )

    def take_receipts(self) -> Callable[[Connection], None] | None:
        """Receipts of delivered new cases, for the intake writer's next transaction."""
        if not self._receipts:
            return None
        taken, self._receipts = self._receipts, []
        now = self.clock.now()

        def record(conn: Connection) -> None:
            for batch in taken:
                _settle_batch(conn, batch, now)

        return record

    def give_back(self, record: Callable[[Connection], None]) -> None:
        """The writer's transaction failed: write these receipts on their own."""
        task = asyncio.create_task(self.store.run_bookkeeping(record))
        self._dispatched.add(task)
        task.add_done_callback(self._dispatched.discard)

    def _receipts_due(self) -> None:
        self._receipt_timer = None
        record = self.take_receipts()
        if record is not None:
            self.give_back(record)

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="signoff-outbox")

    async def stop(self, grace: float = 10.0) -> None:
        """Let deliveries in flight finish and be marked (so none is made twice after a
        restart), then stop; cancel only what is still running after `grace` seconds."""
        for _ in range(3):  # deliveries of new cases, then the receipts they leave
            if self._dispatched:
                await asyncio.wait(list(self._dispatched), timeout=grace)
        if self._receipt_timer is not None:
            self._receipt_timer.cancel()
            self._receipt_timer = None
        record = self.take_receipts()
        if record is not None:
            await self.store.run_bookkeeping(record)
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        await self.callbacks.aclose()

    async def _run(self) -> None:
        try:
            while not self._stopping:
                await self._pass()
        finally:
            await self.flush()

    async def _pass(self) -> None:
        self._wake.clear()
        try:
            count = await self.run_once()
            if not self._wake.is_set():
                await self.flush()
        except Exception:
            log.exception("outbox pass failed; retrying")
            count = 0
            await asyncio.sleep(min(1.0, self.poll_interval))
        if count >= self.batch or self._stopping or self._wake.is_set():
            return  # more was committed while we delivered
        idle = await self._idle_for()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), idle)

    async def _idle_for(self) -> float:
        """Seconds until the next retry comes due, at most the poll interval."""

        def soonest_due(conn: Connection) -> Any:
            return SOONEST.rows(conn)[0]["next_attempt_at"]

        soonest = await self.store.run_read(soonest_due)
        if soonest is None:
            return self.poll_interval
        wait = float((soonest - self.clock.now()).total_seconds())
        return min(self.poll_interval, max(0.01, wait))

    async def run_once(self) -> int:
        """Claim and deliver one batch of due rows; return how many were claimed.

        Under load the outcome of a batch is recorded in the same transaction that
        claims the next one (one trip to the database a batch, and on SQLite one turn
        of the writer); when nothing else is waiting it is recorded at once."""
        previous, self._unsettled = self._unsettled, None
        now = self.clock.now()
        claim = self._claim_statement(now)
        try:
            rows, batch = await self.store.run_bookkeeping(
                lambda conn: _claim_batch(conn, previous, claim, now)
            )
        except BaseException:
            self._unsettled = previous
            raise
        if batch is None:
            return 0
        by_case: dict[str | None, list[Row]] = defaultdict(list)
        for row in rows:
            by_case[row["case_id"]].append(row)
        await asyncio.gather(*(self._deliver_in_order(group, batch) for group in by_case.values()))
        if self._wake.is_set() and not self._stopping and len(rows) < self.batch:
            self._unsettled = batch
        else:
            await self._settle(batch)
        return len(rows)

    async def flush(self) -> None:
        """Record a batch whose outcome is still held back."""
        if self._unsettled is not None:
            batch, self._unsettled = self._unsettled, None
            await self._settle(batch)

    def _claim_statement(self, now: datetime) -> Any:
        claim = CLAIM if self.store.is_sqlite else CLAIM_SKIP_LOCKED
        return lambda conn: claim.rows(conn, now + self.lease, now, now, self.batch)

    async def _deliver_in_order(self, rows: list[Row], batch: _Batch) -> None:
        for index, row in enumerate(rows):
            paced = self._paced(row, batch)
            if paced is None or self.pacer is None:
                async with self._limit:
                    ok = await self._deliver(row, batch)
            elif (delay := self.pacer.estimate(paced[0], int(row["id"]))) > PACE_HOLD:
                self._pace_later(row, batch, paced[0], delay)
                ok = False
            else:
                # The channel's turn is awaited outside the concurrency limit, so a busy
                # channel holds no slot that another channel's delivery could use.
                async with self.pacer.turn(*paced), self._limit:
                    ok = await self._deliver(row, batch)
            if not ok:
                # Later rows of this case wait for this one: release them untouched.
                batch.released += [int(r["id"]) for r in rows[index + 1 :]]
                return

    def _paced(self, row: Row, batch: _Batch) -> tuple[Key, int] | None:
        """The channel a delivery posts a message into, and how many messages, if paced."""
        kind = str(row["kind"])
        platform, _, channel = str(row["target"]).partition(":")
        if self.pacer is None or kind not in CREATES or platform not in PACED_PLATFORMS:
            return None
        case = str(row["case_id"])
        if kind == "page":
            # A page's message in a channel is its reply in the card's thread (its DMs
            # go to a conversation each).
            ref = next(
                (r for (c, p, _), r in batch.refs.items() if (c, p) == (case, platform)), None
            )
            return ((platform, ref.channel), 1) if ref is not None else None
        if kind == "post_card" and (case, platform, channel) in batch.refs:
            return None  # already posted: nothing goes out
        if kind == "summary" and orjson.loads(row["payload"]).get("images"):
            return (platform, channel), 2  # the text, then the charts shared as files
        return (platform, channel), 1

    def _pace_later(self, row: Row, batch: _Batch, key: Key, delay: float) -> None:
        """Send `row` back to the table, due at its channel's turn (no attempt counted)."""
        assert self.pacer is not None
        self.pacer.promise(key, int(row["id"]), delay)
        batch.retry.append(
            (row, f"paced: its turn in channel {key[1]} is in {delay:.1f} s", delay, False)
        )
        asyncio.get_running_loop().call_later(delay, self._wake.set)

    async def _deliver(self, row: Row, batch: _Batch) -> bool:
        try:
            ref = await self._send(row, batch)
        except Deferred:
            batch.retry.append((row, "waiting for the card to be posted", 0.5, False))
            return False
        except DeliveryFailed as exc:
            self._failed(row, batch, exc.message, exc.retry_after, exc.permanent)
            return False
        except Exception as exc:  # an adapter bug must not stop the outbox
            log.exception("delivery %s (%s) raised", row["id"], row["kind"])
            self._failed(row, batch, f"{type(exc).__name__}: {exc}", None, False)
            return False
        batch.delivered.append((row, ref))
        return True

    async def _send(self, row: Row, batch: _Batch) -> MessageRef | None:
        kind = str(row["kind"])
        payload = orjson.loads(row["payload"])
        case = batch.cases.get(str(row["case_id"]))
        if kind == "callback":
            await self._callback(row, payload, str(case["source"]) if case else "default")
            return None
        platform, _, channel = str(row["target"]).partition(":")
        adapter = self.adapters.get(platform)
        if adapter is None:
            raise DeliveryFailed(f"no adapter for platform {platform!r} is running")
        delivery = delivery_of(row)
        if kind == "summary":  # a manager's digest or summary: no case
            images = tuple(
                (str(i["name"]), base64.b64decode(i["png"])) for i in payload.get("images", [])
            )
            summary = Summary(str(payload.get("title", "")), str(payload.get("text", "")), images)
            await adapter.post_summary(channel, summary, delivery=delivery)
            return None
        if case is None:
            raise DeliveryFailed("the case of this delivery is gone", permanent=True)
        card = build_card(
            case,
            orjson.loads(case["body"]),
            batch.decisions.get(str(case["id"]), []),
            self.policy,
            audit=payload.get("mode") == "audit",
            info_question=batch.questions.get(str(case["id"])),
            now=self.clock.now(),
        )
        key = (str(case["id"]), platform, channel)
        ref = batch.refs.get(key)
        if kind == "post_card":
            if ref is not None:
                return None  # already posted (a repeat of a delivered row)
            posted = await adapter.post_card(channel, card, delivery=delivery)
            batch.refs[key] = posted  # later rows of this case in this batch use it
            return posted
        if kind == "page":
            # The card on this platform was posted by an earlier row of the case (rows
            # of a case go in order), so the page can point at it: the card in the
            # case's lane's channel (after an escalation, the new lane's card), else any.
            lane = self.policy.lane(str(case["lane"]))
            here = lane.channels.get(platform) if lane is not None else None
            card_ref = batch.refs.get((key[0], platform, here)) if here else None
            card_ref = card_ref or next(
                (r for (c, p, _), r in batch.refs.items() if c == key[0] and p == platform),
                None,
            )
            await adapter.page(channel, card, card_ref, delivery=delivery)
            return None
        if ref is None:
            raise Deferred()
        if kind == "update_card":
            await adapter.update_card(ref, card)
        elif kind == "notify":
            await adapter.notify(
                ref, str(payload.get("text", "")), payload.get("mentions", []), delivery=delivery
            )
        else:
            raise DeliveryFailed(f"unknown delivery kind {kind!r}", permanent=True)
        return None

    async def _callback(self, row: Row, payload: dict[str, Any], source: str) -> None:
        await self.callbacks.send(
            str(row["target"]),
            payload,
            delivery=str(row["id"]),
            secret=self.secrets.get(source),
            at=int(self.clock.now().timestamp()),
        )

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with equal jitter: between half and all of 2^n seconds, capped."""
        ceiling = min(self.max_backoff, 2.0 ** min(attempts, 30))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto

    def _failed(
        self, row: Row, batch: _Batch, error: str, retry_after: float | None, permanent: bool
    ) -> None:
        age = (self.clock.now() - row["created_at"]).total_seconds()
        if permanent or age >= self.dead_after:
            why = "permanent failure" if permanent else f"undelivered after {int(age)} s"
            log.error(
                "delivery %s (%s to %s) dead: %s; %s",
                row["id"],
                row["kind"],
                row["target"],
                why,
                error,
            )
            batch.dead.append((row, error))
            return
        if retry_after is not None and self.pacer is not None:
            paced = self._paced(row, batch)
            if paced is not None:  # the platform's 429: its channel waits as long
                self.pacer.penalize(paced[0], retry_after)
        delay = retry_after if retry_after is not None else self.backoff(int(row["attempts"]))
        log.warning(
            "delivery %s (%s) failed, retry in %.1f s: %s", row["id"], row["kind"], delay, error
        )
        batch.retry.append((row, error, delay, True))

    async def _settle(self, batch: _Batch) -> None:
        """Record the batch's outcome in one transaction."""
        now = self.clock.now()
        await self.store.run_bookkeeping(lambda conn: _settle_batch(conn, batch, now))


def delivery_of(row: Row) -> Delivery:
    """The identity of the outbox row's delivery, as the adapter marks its posts."""
    case_id = row["case_id"]
    return Delivery(
        id=int(row["id"]),
        case_id=str(case_id) if case_id is not None else None,
        kind=str(row["kind"]),
        created_at=row["created_at"],
        attempts=int(row["attempts"] or 0),
    )


def _claim_batch(
    conn: Connection, previous: _Batch | None, claim: Any, now: datetime
) -> tuple[list[Row], _Batch | None]:
    if previous is not None:
        _settle_batch(conn, previous, now)
    rows: list[Row] = sorted(claim(conn), key=lambda r: r["id"])
    if not rows:
        return rows, None
    return rows, load_batch(conn, sorted({str(r["case_id"]) for r in rows if r["case_id"]}))


def load_batch(conn: Connection, ids: list[str]) -> _Batch:
    """Read what building the cards of `ids` needs: cases, decisions, card refs, questions."""
    found: dict[str, Row] = {str(r["id"]): r for r in CASES_IN.rows(conn, ids)}
    made: dict[str, list[Row]] = defaultdict(list)
    for d in DECISIONS_IN.rows(conn, ids):
        made[str(d["case_id"])].append(d)
    refs = {
        (str(c["case_id"]), str(c["platform"]), str(c["channel"])): MessageRef(
            str(c["platform"]), str(c["channel"]), orjson.loads(c["message_ref"])
        )
        for c in CARDS_IN.rows(conn, ids)
    }
    waiting = [i for i, c in found.items() if c["status"] == "info_requested"]
    questions: dict[str, str] = {}
    if waiting:
        for asked in QUESTIONS_IN.rows(conn, waiting):
            questions[str(asked["case_id"])] = str(
                orjson.loads(asked["detail"]).get("question", "")
            )
    return _Batch(found, made, refs, questions)


def _settle_batch(conn: Connection, batch: _Batch, now: datetime) -> None:
    if batch.delivered:
        DELIVERED.many(conn, [(now, row["id"]) for row, _ in batch.delivered])
        posted = [
            {
                "case_id": row["case_id"],
                "platform": ref.platform,
                "channel": ref.channel,
                "message_ref": orjson.dumps(ref.ref).decode(),
                "posted_at": now,
            }
            for row, ref in batch.delivered
            if ref is not None
        ]
        INSERT_CARDS(conn, posted)
    for row, error, delay, counted in batch.retry:
        values: dict[str, Any] = {
            "next_attempt_at": now + timedelta(seconds=delay),
            "claimed_until": None,
            "last_error": error[:2000],
        }
        if counted:
            values["attempts"] = outbox.c.attempts + 1
        conn.execute(update(outbox).where(outbox.c.id == row["id"]).values(**values))
    for row, error in batch.dead:
        conn.execute(
            update(outbox)
            .where(outbox.c.id == row["id"])
            .values(
                status="dead",
                attempts=outbox.c.attempts + 1,
                claimed_until=None,
                last_error=error[:2000],
            )
        )
        conn.execute(
            events.insert().values(
                case_id=row["case_id"],
                at=now,
                type="delivery_dead",
                actor="outbox",
                detail=orjson.dumps(
                    {"delivery": row["id"], "kind": row["kind"], "error": error[:500]}
                ).decode(),
                policy_version=None,
            )
        )
    if batch.released:
        conn.execute(
            update(outbox).where(outbox.c.id.in_(batch.released)).values(claimed_until=None)
        )
