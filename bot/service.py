"""The decision service: the only way a case is decided, asked for info, acknowledged
or cancelled.

Each operation checks everything first (the action, the reason, who is asking) and
then writes in one transaction that starts by bumping the case's version with a
compare-and-set. Whoever bumps first wins; the others re-read and are told who won.
A refusal writes an audit event and nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.batching import Coalescer
from bot.calendar import WorkingTime
from bot.cards import build_card
from bot.errors import AlreadyDecided, DecisionRefused, ForbiddenError, NotFound
from bot.outbox import load_batch
from bot.policy import LoadedPolicy
from bot.protocols import Adapter, CardView, Clock, Reviewer
from bot.rows import bump, card_targets, decision_facts, delivery_row, dumps, event_row
from bot.store.db import Store, Writer
from bot.store.tables import cases, decisions, events, outbox, timers
from policies.schema import Lane

log = logging.getLogger(__name__)

OPEN = ("pending", "info_requested")
TERMINAL = ("approved", "rejected", "expired", "cancelled", "auto_decided")
STATUS_OF = {"approve": "approved", "modify": "approved", "reject": "rejected"}
MAX_REASON = 4000
MAX_ARGS_BYTES = 20_000  # as a proposal's own arguments (bot.schemas)
CAS_TRIES = 50


@dataclass(frozen=True)
class Result:
    """What happened: `decided` (the case is settled), `vote` (counted towards a
    quorum), `info_requested`, `acknowledged`, `info_answered` or `cancelled`."""

    outcome: str
    case_id: str
    status: str
    action: str | None = None
    votes: int = 0
    quorum: int = 1


@dataclass
class _Case:
    row: Mapping[Any, Any]
    body: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.row["id"])


def _read_many(conn: Connection, ids: list[str]) -> dict[str, tuple[_Case, AlreadyDecided | None]]:
    """Cases by ID (missing ones left out), each with the refusal to give if it is closed."""
    match = cases.c.id == ids[0] if len(ids) == 1 else cases.c.id.in_(ids)  # `=` is cheaper
    rows = conn.execute(select(cases).where(match)).mappings().all()
    found = {str(r["id"]): _Case(r, orjson.loads(r["body"])) for r in rows}
    closed = [i for i, c in found.items() if c.row["status"] not in OPEN]
    finals: dict[str, Any] = {}
    if closed:
        finals = {
            str(f[0]): f
            for f in conn.execute(
                select(
                    decisions.c.case_id,
                    decisions.c.reviewer,
                    decisions.c.action,
                    decisions.c.decided_by,
                ).where(decisions.c.case_id.in_(closed), decisions.c.final.is_(True))
            )
        }
    out: dict[str, tuple[_Case, AlreadyDecided | None]] = {}
    for case_id, case in found.items():
        status = str(case.row["status"])
        if status in OPEN:
            out[case_id] = (case, None)
        elif case_id not in finals:
            out[case_id] = (case, AlreadyDecided(status, None, f"This case is already {status}."))
        else:
            final = finals[case_id]
            by = final[1] if final[3] == "human" else final[3]
            message = f"This case was already {status} by {by}."
            out[case_id] = (case, AlreadyDecided(status, by, message))
    return out


class Service:
    def __init__(
        self,
        store: Store,
        policy: LoadedPolicy,
        adapters: Mapping[str, Adapter],
        clock: Clock,
        on_commit: Any = None,
    ) -> None:
        self.store = store
        self.engine = store.engine
        self.policy = policy
        self.adapters = adapters
        self.clock = clock
        self._on_commit = on_commit or (lambda *_ids: None)
        self._reads = Coalescer(lambda ids: store.run_read(lambda conn: _read_many(conn, ids)))

    # -- reading -------------------------------------------------------------------

    async def _load(self, conn: AsyncConnection, case_id: str) -> _Case:
        row = (await conn.execute(select(cases).where(cases.c.id == case_id))).mappings().first()
        if row is None:
            raise NotFound(f"no case with id {case_id!r}", case_id=case_id)
        return _Case(row, orjson.loads(row["body"]))

    async def _read(self, case_id: str) -> tuple[_Case, AlreadyDecided | None]:
        """The case, and the refusal to give if it is no longer open. On SQLite the read
        is inline (no thread hop); elsewhere reads asked for in the same moment (a burst
        of clicks) share one query, so a burst costs a few round trips, not one each."""
        if self.store.reads_inline:
            return await self.store.run_read(lambda conn: self._read_now(conn, case_id))
        try:
            return await self._reads.get(case_id)
        except KeyError:
            raise NotFound(f"no case with id {case_id!r}", case_id=case_id) from None

    def _read_now(self, conn: Connection, case_id: str) -> tuple[_Case, AlreadyDecided | None]:
        found = _read_many(conn, [case_id]).get(case_id)
        if found is None:
            raise NotFound(f"no case with id {case_id!r}", case_id=case_id)
        return found

    async def card(self, case_id: str) -> CardView:
        """The case's card as reviewers see it now."""
        batch = await self.store.run_read(lambda conn: load_batch(conn, [case_id]))
        row = batch.cases.get(case_id)
        if row is None:
            raise NotFound(f"no case with id {case_id!r}", case_id=case_id)
        return build_card(
            row,
            orjson.loads(row["body"]),
            batch.decisions.get(case_id, []),
            self.policy,
            info_question=batch.questions.get(case_id),
            now=self.clock.now(),
        )

    # -- the checks ----------------------------------------------------------------

    async def precheck(self, case_id: str, reviewer: Reviewer, action: str) -> CardView:
        """What a click checks before the reviewer is asked for a reason: the case is open,
        the action allowed, the reviewer may act (and is not approving their own request).
        A refusal is audited like any other; the operation itself checks everything again.
        Returns the case's card as far as a form needs it (no votes, no rule explanation)."""
        case, closed = await self._read(case_id)
        try:
            if closed is not None:
                raise closed
            if action in ("approve", "reject", "modify"):
                lane = await self._check_decision(
                    case, reviewer, action, None, None, with_reason=False
                )
                if action == "modify" and lane.quorum > 1:
                    raise DecisionRefused(
                        "modify_needs_one_approver",
                        f"This lane needs {lane.quorum} approvers, who must agree on one "
                        "thing: approve or reject the proposal as it is.",
                    )
                return build_card(case.row, case.body, [], self.policy, with_why=False)
            if action == "request_info":
                self._check_info_request(case)
            elif action != "acknowledge":
                raise DecisionRefused("action_not_allowed", f"{action!r} is not an action.")
            await self._authorize(case, self._lane(case), reviewer)
        except DecisionRefused as exc:
            await self._refuse(case_id, reviewer.key, exc, action)
            raise
        return build_card(case.row, case.body, [], self.policy, with_why=False)

    def _check_info_request(self, case: _Case) -> None:
        if "request_info" not in case.body.get("actions", []):
            raise DecisionRefused(
                "action_not_allowed", "This case does not allow requests for information."
            )
        if case.row["status"] == "info_requested":
            raise DecisionRefused(
                "info_already_requested",
                "Information was already requested; wait for the workflow's answer.",
            )

    def _lane(self, case: _Case) -> Lane:
        lane = self.policy.lane(str(case.row["lane"]))
        if lane is None:
            raise DecisionRefused(
                "not_a_human_lane",
                f"Lane {case.row['lane']!r} is not a human lane in the running policy.",
            )
        return lane

    async def _authorize(self, case: _Case, lane: Lane, reviewer: Reviewer) -> None:
        entries = lane.approver_entries(reviewer.platform)
        adapter = self.adapters.get(reviewer.platform)
        allowed = (
            bool(entries)
            and adapter is not None
            and await adapter.is_member(reviewer.user_id, entries)
        )
        if not allowed:
            raise DecisionRefused(
                "not_an_approver",
                f"You are not an approver for the {case.row['lane']} lane, so you cannot decide "
                "this case. Ask one of the lane's approvers.",
                lane=str(case.row["lane"]),
            )

    async def _is_requester(self, case: _Case, reviewer: Reviewer) -> bool:
        requested_by = case.row["requested_by"]
        if not requested_by:
            return False
        wanted = str(requested_by).strip().lower()
        if wanted in (reviewer.user_id.lower(), reviewer.key.lower()):
            return True
        adapter = self.adapters.get(reviewer.platform)
        return adapter is not None and wanted in await adapter.identities(reviewer.user_id)

    def _check_reason(
        self, case: _Case, action: str, reason_code: str | None, reason: str | None
    ) -> None:
        codes = self.policy.policy.reason_codes(str(case.row["kind"]))
        if not reason_code:
            raise DecisionRefused(
                "reason_code_required",
                f"Pick a reason code: one of {', '.join(codes)}.",
                allowed=codes,
            )
        if reason_code not in codes:
            raise DecisionRefused(
                "unknown_reason_code",
                f"{reason_code!r} is not a reason code for {case.row['kind']}: "
                f"use one of {', '.join(codes)}.",
                allowed=codes,
            )
        words = (reason or "").strip()
        if len(words) > MAX_REASON:
            raise DecisionRefused(
                "reason_too_long", f"Keep the reasoning under {MAX_REASON} characters."
            )
        overriding = action != case.row["recommended_action"]
        if (overriding or reason_code == "other") and not words:
            recommended = case.row["recommended_action"]
            why = (
                "you are changing what the AI proposed"
                if action == "modify"
                else f"you are overriding the AI's recommendation ({recommended})"
                if overriding
                else "the reason code is `other`"
            )
            raise DecisionRefused("reason_required", f"Write your reasoning: {why}.")

    async def _refuse(self, case_id: str, actor: str, error: DecisionRefused, attempt: str) -> None:
        detail = {"attempt": attempt, "code": error.code, "message": error.message}
        async with self.store.write() as conn:
            await conn.execute(events.insert(), [self._event(case_id, "refused", actor, detail)])

    def _event(
        self, case_id: str | None, kind: str, actor: str | None, detail: dict[str, Any]
    ) -> dict[str, Any]:
        return event_row(case_id, kind, actor, detail, self.clock.now(), self.policy.version)

    def _delivery(
        self, case_id: str, kind: str, target: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        return delivery_row(case_id, kind, target, payload, self.clock.now())

    async def _card_targets(self, conn: Writer, case_id: str) -> list[str]:
        return sorted(r[0] for r in await conn.execute(card_targets(case_id)))

    async def _bump(self, conn: Writer, case: _Case, **values: Any) -> bool:
        """Compare-and-set on the case's version; the first write of every transaction."""
        result = await conn.execute(bump(case.id, case.row["version"], self.clock.now(), **values))
        return result.rowcount == 1

    def _callback(
        self, case: _Case, kind: str, extra: dict[str, Any], status: str
    ) -> dict[str, Any] | None:
        url = case.row["callback_url"]
        if not url:
            return None
        body = {
            "type": kind,
            "escalation": {
                "id": case.id,
                "status": status,
                "lane": case.row["lane"],
                "kind": case.row["kind"],
                "title": case.row["title"],
                "source": case.row["source"],
            },
            "decision": None,
            **extra,
        }
        return self._delivery(case.id, "callback", str(url), body)

    # -- operations ----------------------------------------------------------------

    async def decide(
        self,
        case_id: str,
        reviewer: Reviewer,
        action: str,
        reason_code: str | None,
        reason: str | None = None,
        args: Mapping[str, Any] | None = None,
    ) -> Result:
        """Approve, reject or modify (approve with the proposal's arguments changed to
        `args`, the edited ones: the rest keep their values) on behalf of `reviewer`,
        with a reason."""
        for _ in range(CAS_TRIES):
            case, closed = await self._read(case_id)
            try:
                if closed is not None:
                    raise closed
                lane = await self._check_decision(case, reviewer, action, reason_code, reason)
                edited = self._edited_args(case, lane, action, args)
                result = await self._try_decide(
                    case, lane, reviewer, action, reason_code, reason, edited
                )
            except DecisionRefused as exc:
                await self._refuse(case_id, reviewer.key, exc, action)
                raise
            if result is not None:
                self._on_commit(case_id)
                return result
        raise DecisionRefused(
            "busy", "The case is being changed by many people at once; try again."
        )

    async def _check_decision(
        self,
        case: _Case,
        reviewer: Reviewer,
        action: str,
        code: str | None,
        reason: str | None,
        *,
        with_reason: bool = True,
    ) -> Lane:
        if action not in ("approve", "reject", "modify") or action not in case.body.get(
            "actions", []
        ):
            allowed = [a for a in case.body.get("actions", []) if a != "request_info"]
            raise DecisionRefused(
                "action_not_allowed",
                f"{action!r} is not an action this case allows ({', '.join(allowed)}).",
            )
        lane = self._lane(case)
        await self._authorize(case, lane, reviewer)
        if action in ("approve", "modify") and await self._is_requester(case, reviewer):
            raise DecisionRefused(
                "self_approval", "You requested this case, so you cannot approve it yourself."
            )
        if with_reason:
            self._check_reason(case, action, code, reason)
        return lane

    def _edited_args(
        self, case: _Case, lane: Lane, action: str, edits: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        """The proposal's full arguments after a `modify`'s edits; `DecisionRefused`
        naming any argument that is unknown or not editable (nothing is written)."""
        if action != "modify":
            if edits:
                raise DecisionRefused(
                    "args_not_allowed", "Only an edit (modify) carries changed arguments."
                )
            return None
        proposal = case.body.get("proposal")
        if not isinstance(proposal, dict):
            raise DecisionRefused("no_proposal", "This case has no proposal to edit.")
        if lane.quorum > 1:
            raise DecisionRefused(
                "modify_needs_one_approver",
                f"This lane needs {lane.quorum} approvers, who must agree on one thing: "
                "approve or reject the proposal as it is.",
            )
        original: dict[str, Any] = dict(proposal.get("args") or {})
        editable = list(proposal.get("editable") or original)
        if not isinstance(edits, Mapping) or not edits:
            raise DecisionRefused("args_required", "Change at least one argument to edit.")
        unknown = sorted(k for k in edits if k not in original)
        if unknown:
            raise DecisionRefused(
                "unknown_args",
                f"The proposal has no argument {', '.join(map(repr, unknown))}; "
                f"it has {', '.join(original) or 'none'}.",
            )
        fixed = sorted(k for k, v in edits.items() if k not in editable and v != original[k])
        if fixed:
            raise DecisionRefused(
                "args_not_editable",
                f"{', '.join(map(repr, fixed))} may not be edited; "
                f"the editable arguments are {', '.join(editable)}.",
            )
        merged = {**original, **edits}
        try:
            size = len(orjson.dumps(merged))
        except TypeError as exc:
            raise DecisionRefused("args_not_json", "The edited arguments must be JSON.") from exc
        if size > MAX_ARGS_BYTES:
            raise DecisionRefused(
                "args_too_large", f"Keep the edited arguments under {MAX_ARGS_BYTES} bytes."
            )
        if merged == original:
            raise DecisionRefused(
                "args_unchanged",
                "Nothing was changed: approve the proposal as it is, or change an argument.",
            )
        return merged

    async def _try_decide(
        self,
        case: _Case,
        lane: Lane,
        reviewer: Reviewer,
        action: str,
        code: str | None,
        reason: str | None,
        args: dict[str, Any] | None = None,
    ) -> Result | None:
        try:
            return await self.store.run_write(
                lambda conn: self._decide_now(
                    conn, case, lane, reviewer, action, code, reason, args
                )
            )
        except OperationalError as exc:
            if "locked" in str(exc).lower():
                return None  # SQLite's writer lock timed out: try again
            raise

    def _decide_now(
        self,
        conn: Connection,
        case: _Case,
        lane: Lane,
        reviewer: Reviewer,
        action: str,
        code: str | None,
        reason: str | None,
        args: dict[str, Any] | None = None,
    ) -> Result | None:
        """The decision's one transaction (synchronous: `run_write` runs it inline on
        SQLite and in a greenlet on PostgreSQL)."""
        now = self.clock.now()
        if conn.execute(bump(case.id, case.row["version"], now)).rowcount != 1:
            return None  # someone else changed it: re-read and check again
        row = {
            "case_id": case.id,
            "action": action,
            "reason_code": code,
            "reason": (reason or "").strip() or None,
            "args": None if args is None else orjson.dumps(args).decode(),
            "reviewer": reviewer.key,
            "platform": reviewer.platform,
            "decided_by": "human",
            "final": False,
            "overrode_ai": action != case.row["recommended_action"],
            "policy_version": self.policy.version,
            "at": now,
            **decision_facts(case.row),
        }
        voted = conn.execute(
            select(decisions.c.id).where(
                decisions.c.case_id == case.id, decisions.c.reviewer == reviewer.key
            )
        ).first()
        if voted is not None:
            raise DecisionRefused(
                "already_voted",
                "You have already voted on this case; it needs another approver.",
            )
        inserted = conn.execute(decisions.insert().values(**row))
        assert inserted.inserted_primary_key is not None
        decision_id = inserted.inserted_primary_key[0]
        votes = conn.execute(
            select(func.count())
            .select_from(decisions)
            .where(decisions.c.case_id == case.id, decisions.c.action == action)
        ).scalar_one()
        final = votes >= lane.quorum or (action == "reject" and lane.reject_vetoes)
        targets = sorted(r[0] for r in conn.execute(card_targets(case.id)))
        actor = reviewer.key
        if final:
            status = STATUS_OF[action]
            conn.execute(
                update(cases).where(cases.c.id == case.id).values(status=status, decided_at=now)
            )
            conn.execute(update(decisions).where(decisions.c.id == decision_id).values(final=True))
            detail: dict[str, Any] = {"action": action, "reason_code": code, "votes": votes}
            if args is not None:
                detail["args"] = args
            rows = [self._event(case.id, "decided", actor, detail)]
            decision = {k: v for k, v in row.items() if k not in ("case_id", "final", "args")}
            decision["at"] = now.isoformat()
            if args is not None:
                decision["args"] = args
            deliveries = [self._delivery(case.id, "update_card", t, {}) for t in targets]
            verb = {"approve": "Approved", "modify": "Approved with changes"}.get(
                action, "Rejected"
            )
            note = f"{verb} by {reviewer.name or actor}"
            deliveries += [
                self._delivery(
                    case.id,
                    "notify",
                    t,
                    {"text": f"{note} ({code}): {row['reason'] or ''}".rstrip(": ")},
                )
                for t in targets
            ]
            callback = self._callback(case, "decision", {"decision": decision}, status)
            if callback:
                deliveries.append(callback)
        else:
            status = str(case.row["status"])
            detail = {"action": action, "reason_code": code, "votes": votes, "quorum": lane.quorum}
            rows = [self._event(case.id, "vote", actor, detail)]
            deliveries = [self._delivery(case.id, "update_card", t, {}) for t in targets]
        conn.execute(events.insert(), rows)
        if deliveries:
            conn.execute(outbox.insert(), deliveries)
        return Result("decided" if final else "vote", case.id, status, action, votes, lane.quorum)

    async def request_info(self, case_id: str, reviewer: Reviewer, question: str) -> Result:
        """Ask the workflow a question; the case waits in `info_requested` until it answers."""
        question = (question or "").strip()
        for _ in range(CAS_TRIES):
            case, closed = await self._read(case_id)
            try:
                if closed is not None:
                    raise closed
                self._check_info_request(case)
                if not question:
                    raise DecisionRefused(
                        "question_required", "Write the question for the workflow."
                    )
                if len(question) > MAX_REASON:
                    raise DecisionRefused(
                        "reason_too_long", f"Keep the question under {MAX_REASON} characters."
                    )
                lane = self._lane(case)
                await self._authorize(case, lane, reviewer)
            except DecisionRefused as exc:
                await self._refuse(case_id, reviewer.key, exc, "request_info")
                raise
            async with self.store.write() as conn:
                if not await self._bump(conn, case, status="info_requested"):
                    continue
                targets = await self._card_targets(conn, case.id)
                await conn.execute(
                    events.insert(),
                    [self._event(case.id, "info_requested", reviewer.key, {"question": question})],
                )
                deliveries = [self._delivery(case.id, "update_card", t, {}) for t in targets]
                deliveries += [
                    self._delivery(
                        case.id,
                        "notify",
                        t,
                        {"text": f"{reviewer.name or reviewer.key} asks: {question}"},
                    )
                    for t in targets
                ]
                callback = self._callback(
                    case,
                    "info_requested",
                    {"question": question, "asked_by": reviewer.key},
                    "info_requested",
                )
                if callback:
                    deliveries.append(callback)
                await conn.execute(outbox.insert(), deliveries)
            self._on_commit(case.id)
            return Result("info_requested", case.id, "info_requested", "request_info")
        raise DecisionRefused(
            "busy", "The case is being changed by many people at once; try again."
        )

    async def answer_info(
        self, case_id: str, source: str, text: str, facts: dict[str, Any] | None
    ) -> Result:
        """The workflow's answer: the case goes back to `pending` and its card gets the answer."""
        for _ in range(CAS_TRIES):
            async with self.engine.connect() as conn:
                case = await self._load(conn, case_id)
            self._own(case, source)
            if case.row["status"] != "info_requested":
                refusal = DecisionRefused(
                    "no_info_requested",
                    f"Nobody asked for information on this case (it is {case.row['status']}).",
                    case_status=str(case.row["status"]),
                )
                await self._refuse(case_id, f"source:{source}", refusal, "info")
                raise refusal
            body = dict(case.body)
            if facts:
                merged = {**body.get("facts", {}), **facts}
                if len(merged) > 500:
                    raise DecisionRefused("too_many_facts", "A case holds at most 500 facts.")
                body["facts"] = merged
            history = [
                *body.get("history", []),
                {"text": f"Workflow answered: {text}", "actor": f"source:{source}"},
            ]
            body["history"] = history[-100:]
            async with self.store.write() as conn:
                asked = await self._asked_at(conn, case)
                hours = WorkingTime(
                    lane.hours if (lane := self.policy.lane(case.row["lane"])) else None
                )
                due = self._resumed(hours, asked, case.row["due_at"])
                if not await self._bump(conn, case, status="pending", body=dumps(body), due_at=due):
                    continue
                await self._shift_timers(conn, case, hours, asked)
                targets = await self._card_targets(conn, case.id)
                await conn.execute(
                    events.insert(),
                    [
                        self._event(
                            case.id,
                            "info_answered",
                            f"source:{source}",
                            {"text": text, "facts": facts or {}},
                        )
                    ],
                )
                deliveries = [self._delivery(case.id, "update_card", t, {}) for t in targets]
                deliveries += [
                    self._delivery(case.id, "notify", t, {"text": f"The workflow answered: {text}"})
                    for t in targets
                ]
                if deliveries:
                    await conn.execute(outbox.insert(), deliveries)
            self._on_commit(case.id)
            return Result("info_answered", case.id, "pending")
        raise DecisionRefused(
            "busy", "The case is being changed by many people at once; try again."
        )

    async def _asked_at(self, conn: Writer, case: _Case) -> datetime | None:
        """When the workflow was asked: the SLA clock has been paused since."""
        asked: datetime | None = (
            await conn.execute(
                select(events.c.at)
                .where(events.c.case_id == case.id, events.c.type == "info_requested")
                .order_by(events.c.id.desc())
                .limit(1)
            )
        ).scalar()
        return asked

    def _resumed(
        self, hours: WorkingTime, asked: datetime | None, due: datetime | None
    ) -> datetime | None:
        """A due time after the pause: what was left of it when the workflow was asked
        (in working time), counted again from now."""
        if due is None or asked is None:
            return due
        return hours.add(self.clock.now(), hours.between(asked, due))

    async def _shift_timers(
        self, conn: Writer, case: _Case, hours: WorkingTime, asked: datetime | None
    ) -> None:
        """Move the case's pending timers later by the pause."""
        if asked is None:
            return
        pending = await conn.execute(
            select(timers.c.id, timers.c.due_at).where(
                timers.c.case_id == case.id, timers.c.fired_at.is_(None)
            )
        )
        for row in pending.mappings().all():
            await conn.execute(
                update(timers)
                .where(timers.c.id == row["id"])
                .values(due_at=self._resumed(hours, asked, row["due_at"]))
            )

    async def cancel(self, case_id: str, source: str, reason: str | None) -> Result:
        """The workflow withdraws its case; the card says so and loses its buttons."""
        for _ in range(CAS_TRIES):
            case, closed = await self._read(case_id)
            self._own(case, source)
            if closed is not None:
                await self._refuse(case_id, f"source:{source}", closed, "cancel")
                raise closed
            async with self.store.write() as conn:
                if not await self._bump(
                    conn, case, status="cancelled", decided_at=self.clock.now()
                ):
                    continue
                targets = await self._card_targets(conn, case.id)
                await conn.execute(
                    events.insert(),
                    [self._event(case.id, "cancelled", f"source:{source}", {"reason": reason})],
                )
                deliveries = [self._delivery(case.id, "update_card", t, {}) for t in targets]
                text = "The workflow withdrew this case." + (f" Reason: {reason}" if reason else "")
                deliveries += [
                    self._delivery(case.id, "notify", t, {"text": text}) for t in targets
                ]
                if deliveries:
                    await conn.execute(outbox.insert(), deliveries)
            self._on_commit(case.id)
            return Result("cancelled", case.id, "cancelled")
        raise DecisionRefused(
            "busy", "The case is being changed by many people at once; try again."
        )

    async def acknowledge(self, case_id: str, reviewer: Reviewer) -> Result:
        """On-call acknowledges a page. Separate from deciding; a second ack changes nothing."""
        for _ in range(CAS_TRIES):
            async with self.engine.connect() as conn:
                case = await self._load(conn, case_id)
            try:
                if case.row["status"] not in OPEN:
                    raise DecisionRefused("not_open", f"This case is already {case.row['status']}.")
                lane = self._lane(case)
                await self._authorize(case, lane, reviewer)
            except DecisionRefused as exc:
                await self._refuse(case_id, reviewer.key, exc, "acknowledge")
                raise
            if case.row["acknowledged_at"] is not None:
                return Result("acknowledged", case.id, str(case.row["status"]))
            now = self.clock.now()
            async with self.store.write() as conn:
                if not await self._bump(
                    conn, case, acknowledged_at=now, acknowledged_by=reviewer.key
                ):
                    continue
                targets = await self._card_targets(conn, case.id)
                await conn.execute(
                    events.insert(), [self._event(case.id, "acknowledged", reviewer.key, {})]
                )
                deliveries = [self._delivery(case.id, "update_card", t, {}) for t in targets]
                callback = self._callback(
                    case,
                    "acknowledged",
                    {"acknowledged_by": reviewer.key, "at": now.isoformat()},
                    str(case.row["status"]),
                )
                if callback:
                    deliveries.append(callback)
                if deliveries:
                    await conn.execute(outbox.insert(), deliveries)
            self._on_commit(case.id)
            return Result("acknowledged", case.id, str(case.row["status"]))
        raise DecisionRefused(
            "busy", "The case is being changed by many people at once; try again."
        )

    async def claim(self, case_id: str, reviewer: Reviewer) -> Result:
        """Take the case: reminders go to the claimer. Only an approver may; a case
        claimed by someone else must be released by them first."""
        return await self._set_claim(case_id, reviewer, claiming=True)

    async def release(self, case_id: str, reviewer: Reviewer) -> Result:
        """Give the case back to the lane (only the claimer may)."""
        return await self._set_claim(case_id, reviewer, claiming=False)

    async def _set_claim(self, case_id: str, reviewer: Reviewer, *, claiming: bool) -> Result:
        verb = "claim" if claiming else "release"
        for _ in range(CAS_TRIES):
            case, closed = await self._read(case_id)
            holder = case.row["claimed_by"]
            try:
                if closed is not None:
                    raise closed
                await self._authorize(case, self._lane(case), reviewer)
                if claiming and holder not in (None, reviewer.key):
                    raise DecisionRefused(
                        "claimed", f"{holder} has claimed this case; they can release it."
                    )
                if not claiming and holder != reviewer.key:
                    raise DecisionRefused("not_claimed", "You have not claimed this case.")
            except DecisionRefused as exc:
                await self._refuse(case_id, reviewer.key, exc, verb)
                raise
            if claiming and holder == reviewer.key:
                return Result("claimed", case.id, str(case.row["status"]))
            now = self.clock.now()
            async with self.store.write() as conn:
                values: dict[str, Any] = {
                    "claimed_by": reviewer.key if claiming else None,
                    "claimed_at": now if claiming else None,
                }
                if not await self._bump(conn, case, **values):
                    continue
                targets = await self._card_targets(conn, case.id)
                kind = "claimed" if claiming else "released"
                await conn.execute(events.insert(), [self._event(case.id, kind, reviewer.key, {})])
                deliveries = [self._delivery(case.id, "update_card", t, {}) for t in targets]
                if deliveries:
                    await conn.execute(outbox.insert(), deliveries)
            self._on_commit(case.id)
            return Result("claimed" if claiming else "released", case.id, str(case.row["status"]))
        raise DecisionRefused(
            "busy", "The case is being changed by many people at once; try again."
        )

    def _own(self, case: _Case, source: str) -> None:
        if case.row["source"] != source:
            raise ForbiddenError("this case belongs to another source", case_id=case.id)
