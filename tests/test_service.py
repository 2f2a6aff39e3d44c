"""The decision service: who may decide, with what reason, and what happens when
many decide at once. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from adapters.memory import MemoryAdapter
from bot.errors import AlreadyDecided, DecisionRefused, ForbiddenError, NotFound
from bot.intake import prepare
from bot.protocols import Reviewer
from bot.runtime import Runtime
from bot.schemas import CaseIn
from bot.store.tables import cases, decisions, events, outbox
from tests.conftest import MakeRuntime, case

ALICE = Reviewer("memory", "U0ALICE", "Alice")
BOB = Reviewer("memory", "U0BOB", "Bob")
CAROL = Reviewer("memory", "U0CAROL", "Carol")  # in G0REVIEWERS; carol@example.com
MALLORY = Reviewer("memory", "U0MALLORY", "Mallory")  # in no group
OPS = [Reviewer("memory", f"U0OPS{i}", f"Ops {i}") for i in (1, 2, 3)]


@pytest.fixture
async def rt(make_runtime: MakeRuntime, database_url: str) -> Runtime:
    return await make_runtime(database_url, workers=False)


async def submit(rt: Runtime, **changes: Any) -> str:
    body = CaseIn.model_validate(case(**changes))
    accepted = await rt.writer.submit(prepare(body, rt.policy, rt.platforms, rt.clock.now(), None))
    return str(accepted.response["id"])


async def state(rt: Runtime, case_id: str) -> dict[str, Any]:
    async with rt.engine.connect() as conn:
        row = (await conn.execute(select(cases).where(cases.c.id == case_id))).mappings().one()
        made = (
            (await conn.execute(select(decisions).where(decisions.c.case_id == case_id)))
            .mappings()
            .all()
        )
        logged = (
            (
                await conn.execute(
                    select(events).where(events.c.case_id == case_id).order_by(events.c.id)
                )
            )
            .mappings()
            .all()
        )
        owed = (
            (
                await conn.execute(
                    select(outbox).where(outbox.c.case_id == case_id).order_by(outbox.c.id)
                )
            )
            .mappings()
            .all()
        )
    return {
        "case": dict(row),
        "decisions": [dict(d) for d in made],
        "events": [dict(e) for e in logged],
        "outbox": [dict(o) for o in owed],
    }


async def refused(rt: Runtime, case_id: str, code: str, call: Any) -> DecisionRefused:
    before = await state(rt, case_id)
    with pytest.raises(DecisionRefused) as info:
        await call
    assert info.value.code == code, info.value.message
    after = await state(rt, case_id)
    # nothing changed but one audit event saying what was refused
    assert after["case"] == before["case"]
    assert after["decisions"] == before["decisions"]
    assert after["outbox"] == before["outbox"]
    assert len(after["events"]) == len(before["events"]) + 1
    last = after["events"][-1]
    assert last["type"] == "refused"
    assert orjson.loads(last["detail"])["code"] == code
    return info.value


async def test_approve_with_a_reason(rt: Runtime) -> None:
    case_id = await submit(rt, callback_url="http://127.0.0.1:1/cb")
    result = await rt.service.decide(case_id, ALICE, "approve", "policy_match")
    assert (result.outcome, result.status) == ("decided", "approved")
    now = await state(rt, case_id)
    assert now["case"]["status"] == "approved"
    assert now["case"]["decided_at"] is not None
    [made] = now["decisions"]
    assert made["reviewer"] == "memory:U0ALICE"
    assert made["final"]
    assert not made["overrode_ai"]
    assert made["policy_version"] == rt.policy.version
    assert now["events"][-1]["type"] == "decided"
    kinds = [o["kind"] for o in now["outbox"]]
    assert kinds == ["post_card", "update_card", "notify", "callback"]
    callback = orjson.loads(now["outbox"][-1]["payload"])
    assert callback["type"] == "decision"
    assert callback["escalation"]["status"] == "approved"
    assert callback["decision"]["reason_code"] == "policy_match"
    assert callback["decision"]["decided_by"] == "human"


async def test_group_member_may_decide(rt: Runtime) -> None:
    case_id = await submit(rt)
    result = await rt.service.decide(case_id, CAROL, "reject", "policy_violation", "Not in budget")
    assert result.status == "rejected"


async def test_stranger_is_refused(rt: Runtime) -> None:
    case_id = await submit(rt)
    error = await refused(
        rt,
        case_id,
        "not_an_approver",
        rt.service.decide(case_id, MALLORY, "approve", "policy_match"),
    )
    assert "not an approver for the review lane" in error.message


async def test_a_platform_without_approvers_is_refused(rt: Runtime) -> None:
    case_id = await submit(rt)
    await refused(
        rt,
        case_id,
        "not_an_approver",
        rt.service.decide(case_id, Reviewer("slack", "U0ALICE"), "approve", "policy_match"),
    )


async def test_self_approval_is_refused_by_email(rt: Runtime) -> None:
    case_id = await submit(rt, requested_by="CAROL@example.com")
    error = await refused(
        rt, case_id, "self_approval", rt.service.decide(case_id, CAROL, "approve", "policy_match")
    )
    assert "cannot approve it yourself" in error.message
    # rejecting one's own request is allowed (it withdraws it)
    result = await rt.service.decide(
        case_id, CAROL, "reject", "policy_violation", "I filed it wrong"
    )
    assert result.status == "rejected"


async def test_self_approval_is_refused_by_user_id(rt: Runtime) -> None:
    case_id = await submit(rt, requested_by="U0ALICE")
    await refused(
        rt, case_id, "self_approval", rt.service.decide(case_id, ALICE, "approve", "policy_match")
    )


async def test_reason_code_is_required(rt: Runtime) -> None:
    case_id = await submit(rt)
    error = await refused(
        rt, case_id, "reason_code_required", rt.service.decide(case_id, ALICE, "approve", None)
    )
    assert "policy_match" in error.message


async def test_reason_code_must_be_the_kinds(rt: Runtime) -> None:
    case_id = await submit(rt)
    await refused(
        rt,
        case_id,
        "unknown_reason_code",
        rt.service.decide(case_id, ALICE, "approve", "looks_fine"),
    )


async def test_other_kinds_use_the_default_codes(rt: Runtime) -> None:
    case_id = await submit(rt, kind="refund")
    await refused(
        rt,
        case_id,
        "unknown_reason_code",
        rt.service.decide(case_id, ALICE, "approve", "policy_match_x"),
    )
    assert (await rt.service.decide(case_id, ALICE, "approve", "policy_match")).status == "approved"


@pytest.mark.parametrize("words", [None, "", "   "])
async def test_override_needs_words(rt: Runtime, words: str | None) -> None:
    case_id = await submit(rt)
    error = await refused(
        rt,
        case_id,
        "reason_required",
        rt.service.decide(case_id, ALICE, "reject", "policy_violation", words),
    )
    assert "overriding the AI" in error.message


async def test_override_with_words_counts_as_override(rt: Runtime) -> None:
    case_id = await submit(rt)
    await rt.service.decide(case_id, ALICE, "reject", "suspected_fraud", "Receipt is from 2019")
    [made] = (await state(rt, case_id))["decisions"]
    assert made["overrode_ai"]
    assert made["reason"] == "Receipt is from 2019"


async def test_other_needs_words(rt: Runtime) -> None:
    case_id = await submit(rt)
    error = await refused(
        rt, case_id, "reason_required", rt.service.decide(case_id, ALICE, "approve", "other")
    )
    assert "other" in error.message
    assert (
        await rt.service.decide(case_id, ALICE, "approve", "other", "CFO said yes")
    ).status == "approved"


async def test_overlong_reason_is_refused(rt: Runtime) -> None:
    case_id = await submit(rt)
    await refused(
        rt,
        case_id,
        "reason_too_long",
        rt.service.decide(case_id, ALICE, "approve", "other", "x" * 4001),
    )


@pytest.mark.parametrize("action", ["escalate", "request_info", ""])
async def test_action_must_be_allowed(rt: Runtime, action: str) -> None:
    case_id = await submit(rt)
    await refused(
        rt, case_id, "action_not_allowed", rt.service.decide(case_id, ALICE, action, "policy_match")
    )


async def test_request_info_only_when_the_case_allows_it(rt: Runtime) -> None:
    case_id = await submit(rt, actions=["approve", "reject"])
    await refused(
        rt, case_id, "action_not_allowed", rt.service.request_info(case_id, ALICE, "Which hotel?")
    )


async def test_unknown_case(rt: Runtime) -> None:
    with pytest.raises(NotFound):
        await rt.service.decide("nope", ALICE, "approve", "policy_match")


async def test_second_decision_is_told_who_won(rt: Runtime) -> None:
    case_id = await submit(rt)
    await rt.service.decide(case_id, ALICE, "approve", "policy_match")
    with pytest.raises(AlreadyDecided) as info:
        await rt.service.decide(case_id, BOB, "reject", "policy_violation", "no")
    assert info.value.winner == "memory:U0ALICE"
    assert "already approved by memory:U0ALICE" in info.value.message
    now = await state(rt, case_id)
    assert len(now["decisions"]) == 1
    assert now["events"][-1]["type"] == "refused"


async def test_auto_decided_cases_cannot_be_decided(rt: Runtime) -> None:
    case_id = await submit(rt, **{"recommendation.confidence": 0.99})
    with pytest.raises(AlreadyDecided) as info:
        await rt.service.decide(case_id, ALICE, "reject", "policy_violation", "no")
    assert info.value.winner == "policy"


async def test_quorum_of_two_distinct_people(rt: Runtime) -> None:
    case_id = await submit(rt, flags=["data_leakage"])
    first = await rt.service.decide(case_id, OPS[0], "approve", "policy_match")
    assert (first.outcome, first.status, first.votes, first.quorum) == ("vote", "pending", 1, 2)
    await refused(
        rt, case_id, "already_voted", rt.service.decide(case_id, OPS[0], "approve", "policy_match")
    )
    second = await rt.service.decide(case_id, OPS[1], "approve", "policy_match")
    assert (second.outcome, second.status) == ("decided", "approved")
    made = (await state(rt, case_id))["decisions"]
    assert [d["final"] for d in made] == [False, True]


async def test_any_reject_vetoes(rt: Runtime) -> None:
    case_id = await submit(rt, flags=["data_leakage"])
    await rt.service.decide(case_id, OPS[0], "approve", "policy_match")
    result = await rt.service.decide(case_id, OPS[1], "reject", "policy_violation", "Leaks PII")
    assert (result.outcome, result.status) == ("decided", "rejected")


async def test_paged_group_decides_stop_the_line(rt: Runtime) -> None:
    case_id = await submit(rt, flags=["data_leakage"])
    await refused(
        rt, case_id, "not_an_approver", rt.service.decide(case_id, ALICE, "approve", "policy_match")
    )


async def test_acknowledge(rt: Runtime) -> None:
    case_id = await submit(rt, flags=["data_leakage"], callback_url="https://wf.example.com/cb")
    result = await rt.service.acknowledge(case_id, OPS[2])
    assert result.outcome == "acknowledged"
    now = await state(rt, case_id)
    assert now["case"]["acknowledged_by"] == "memory:U0OPS3"
    assert now["case"]["status"] == "pending"
    assert orjson.loads(now["outbox"][-1]["payload"])["type"] == "acknowledged"
    again = await rt.service.acknowledge(case_id, OPS[1])
    assert again.outcome == "acknowledged"
    assert (await state(rt, case_id))["case"]["acknowledged_by"] == "memory:U0OPS3"
    await refused(rt, case_id, "not_an_approver", rt.service.acknowledge(case_id, ALICE))


async def test_request_info_round_trip(rt: Runtime) -> None:
    case_id = await submit(rt, callback_url="https://wf.example.com/cb")
    asked = await rt.service.request_info(case_id, ALICE, "Was the client present?")
    assert asked.status == "info_requested"
    now = await state(rt, case_id)
    callback = orjson.loads(now["outbox"][-1]["payload"])
    assert callback["type"] == "info_requested"
    assert callback["question"] == "Was the client present?"
    await refused(
        rt, case_id, "info_already_requested", rt.service.request_info(case_id, BOB, "And?")
    )
    with pytest.raises(ForbiddenError):
        await rt.service.answer_info(case_id, "billing", "yes", None)
    answered = await rt.service.answer_info(case_id, "default", "Yes, two of them", {"guests": 2})
    assert answered.status == "pending"
    body = orjson.loads((await state(rt, case_id))["case"]["body"])
    assert body["facts"]["guests"] == 2
    assert body["history"][-1]["text"] == "Workflow answered: Yes, two of them"
    assert (await rt.service.decide(case_id, ALICE, "approve", "policy_match")).status == "approved"


async def test_request_info_needs_a_question(rt: Runtime) -> None:
    case_id = await submit(rt)
    await refused(rt, case_id, "question_required", rt.service.request_info(case_id, ALICE, "  "))


async def test_request_info_by_a_stranger(rt: Runtime) -> None:
    case_id = await submit(rt)
    await refused(rt, case_id, "not_an_approver", rt.service.request_info(case_id, MALLORY, "why?"))


async def test_decide_while_info_is_requested(rt: Runtime) -> None:
    case_id = await submit(rt)
    await rt.service.request_info(case_id, ALICE, "Receipt?")
    assert (await rt.service.decide(case_id, BOB, "approve", "policy_match")).status == "approved"
    with pytest.raises(DecisionRefused) as info:
        await rt.service.answer_info(case_id, "default", "late answer", None)
    assert info.value.code == "no_info_requested"


async def test_cancel(rt: Runtime) -> None:
    case_id = await submit(rt)
    assert (await rt.service.cancel(case_id, "default", "dup")).status == "cancelled"
    with pytest.raises(AlreadyDecided):
        await rt.service.decide(case_id, ALICE, "approve", "policy_match")


async def test_many_concurrent_decisions_give_one_outcome(
    make_runtime: MakeRuntime, database_url: str, memory: MemoryAdapter
) -> None:
    reviewers = [Reviewer("memory", f"U0R{i}", f"R{i}") for i in range(24)]
    memory.groups["G0REVIEWERS"] |= {r.user_id for r in reviewers}
    rt = await make_runtime(database_url, workers=False)
    case_id = await submit(rt)
    calls = [
        rt.service.decide(
            case_id,
            r,
            "approve" if i % 2 else "reject",
            "policy_match" if i % 2 else "policy_violation",
            "disagree" if not i % 2 else None,
        )
        for i, r in enumerate(reviewers)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(e, AlreadyDecided) for e in losers), losers
    now = await state(rt, case_id)
    assert len(now["decisions"]) == 1
    assert now["decisions"][0]["final"]
    winner = now["decisions"][0]["reviewer"]
    assert all(e.winner == winner for e in losers if isinstance(e, AlreadyDecided))
    assert now["case"]["status"] == winners[0].status
    assert sum(1 for e in now["events"] if e["type"] == "decided") == 1
    assert sum(1 for o in now["outbox"] if o["kind"] == "update_card") == 1


async def test_concurrent_quorum_votes_are_all_counted(
    make_runtime: MakeRuntime, database_url: str, memory: MemoryAdapter
) -> None:
    many = [Reviewer("memory", f"U0OPSX{i}") for i in range(6)]
    memory.groups["G0ONCALL"] |= {r.user_id for r in many}
    rt = await make_runtime(database_url, workers=False)
    case_id = await submit(rt, flags=["data_leakage"])
    results = await asyncio.gather(
        *(rt.service.decide(case_id, r, "approve", "policy_match") for r in many),
        return_exceptions=True,
    )
    decided = [r for r in results if not isinstance(r, BaseException) and r.outcome == "decided"]
    votes = [r for r in results if not isinstance(r, BaseException) and r.outcome == "vote"]
    assert len(decided) == 1
    assert len(votes) == 1
    assert all(isinstance(r, AlreadyDecided) for r in results if isinstance(r, BaseException))
    now = await state(rt, case_id)
    assert now["case"]["status"] == "approved"
    assert len(now["decisions"]) == 2


@pytest.mark.postgres
async def test_a_burst_of_prechecks_shares_its_reads_on_postgresql(
    make_runtime: MakeRuntime,
) -> None:
    from sqlalchemy import event

    from tests.conftest import pg_url_or_skip, reset_postgres

    url = pg_url_or_skip()
    await reset_postgres(url)
    rt = await make_runtime(url, workers=False)
    ids = [await submit(rt, title=f"burst {n}") for n in range(20)]
    await rt.service.decide(ids[0], ALICE, "approve", "policy_match", None)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM cases" in statement:
            statements.append(statement)

    event.listen(rt.engine.sync_engine, "before_cursor_execute", seen)
    try:
        results = await asyncio.gather(
            *(rt.service.precheck(i, CAROL, "approve") for i in [*ids, "01nosuchcase"]),
            return_exceptions=True,
        )
    finally:
        event.remove(rt.engine.sync_engine, "before_cursor_execute", seen)
    assert isinstance(results[0], AlreadyDecided)
    assert results[0].winner == "memory:U0ALICE"
    assert [r.case_id for r in results[1:20]] == ids[1:]  # type: ignore[union-attr]
    assert isinstance(results[20], NotFound)
    assert len(statements) == 1  # 21 reads, one query
