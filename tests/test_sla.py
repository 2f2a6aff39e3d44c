"""The SLA clock with an injected clock: reminders, escalation, the safe default, the
acknowledgement deadline, the pause while the workflow is asked, restarts, and two
instances sweeping one PostgreSQL. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from bot.clock import FrozenClock
from bot.protocols import Reviewer
from bot.runtime import Runtime
from bot.store.tables import events, outbox, timers
from tests.conftest import SECRET, MakeRuntime, pg_url_or_skip, reset_postgres, wait_for
from tests.receiver import RECEIVER_HOSTS, Receiver, running
from tests.test_service import state
from tests.test_service import submit as submit_now

HOUR = 3600.0
OPS1 = Reviewer("memory", "U0OPS1", "Ops 1")
ALICE = Reviewer("memory", "U0ALICE", "Alice")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def rt(make_runtime: MakeRuntime, database_url: str, clock: FrozenClock) -> Runtime:
    # The scheduler sweeps too (every 0.05 s); tests also sweep by hand, so that each
    # step is settled before it is checked. Either way a timer fires once.
    return await make_runtime(database_url, clock=clock, sla_sweep_interval=0.05)


def kinds(found: dict[str, Any]) -> list[str]:
    return [e["type"] for e in found["events"]]


def owed(found: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [
        {**row, "payload": orjson.loads(row["payload"])}
        for row in found["outbox"]
        if row["kind"] == kind
    ]


async def at(rt: Runtime, clock: FrozenClock, seconds: float) -> None:
    """Move the clock to `seconds` after the start and let the clock sweep."""
    clock.advance(seconds - (clock.now() - START).total_seconds())
    await rt.sla.sweep()


START = FrozenClock().now()


async def submit(rt: Runtime, **changes: Any) -> str:
    """Submit, and give the outbox a moment to post the card and record it, so that a
    jump of the frozen clock does not outrun the card's delivery lease."""
    case_id = await submit_now(rt, **changes)
    await asyncio.sleep(0.05)
    return case_id


async def test_reminders_at_50_and_80_percent_mention_the_approvers_once(
    rt: Runtime, clock: FrozenClock
) -> None:
    case_id = await submit(rt)
    await at(rt, clock, 1.9 * HOUR)
    assert "reminded" not in kinds(await state(rt, case_id))
    await at(rt, clock, 2.0 * HOUR)
    await at(rt, clock, 2.5 * HOUR)
    found = await state(rt, case_id)
    assert kinds(found).count("reminded") == 1
    [note] = owed(found, "notify")
    assert note["target"] == "memory:C0REVIEW"
    assert note["payload"]["mentions"] == ["U0ALICE", "U0BOB", "G0REVIEWERS"]
    assert note["payload"]["text"].startswith("⏰ Reminder: 50% of this case's SLA has passed")
    await at(rt, clock, 3.2 * HOUR)
    await at(rt, clock, 3.3 * HOUR)
    found = await state(rt, case_id)
    assert kinds(found).count("reminded") == 2
    assert "80%" in owed(found, "notify")[1]["payload"]["text"]
    assert found["case"]["status"] == "pending"


async def test_nobody_decides_the_lane_default_is_applied_once_and_the_workflow_told(
    make_runtime: MakeRuntime, database_url: str, clock: FrozenClock
) -> None:
    async with running(Receiver(SECRET)) as hook:
        rt = await make_runtime(
            database_url, clock=clock, sla_sweep_interval=0.05, callback_hosts=RECEIVER_HOSTS
        )
        case_id = await submit(rt, callback_url=hook.url)
        await at(rt, clock, 4 * HOUR)
        await at(rt, clock, 5 * HOUR)
        found = await state(rt, case_id)
        assert found["case"]["status"] == "expired"
        assert kinds(found).count("expired") == 1
        [decision] = found["decisions"]
        assert (decision["action"], decision["decided_by"], decision["reviewer"]) == (
            "reject",
            "timeout",
            "timeout",
        )
        assert decision["final"]
        # the two late reminders refresh the card, then the expiry does
        assert len(owed(found, "update_card")) == 3
        assert "rejected by default" in owed(found, "notify")[-1]["payload"]["text"]
        await wait_for(lambda: len(hook.received) >= 1)
        body = hook.received[0].body
        assert hook.received[0].signature_ok
        assert body["type"] == "expired"
        assert body["decision"]["decided_by"] == "timeout"
        assert body["escalation"]["status"] == "expired"
        # a reviewer who comes too late is told
        with pytest.raises(Exception, match="already expired by timeout"):
            await rt.service.decide(case_id, ALICE, "approve", "policy_match")


async def test_breach_escalates_up_the_ladder_then_stop_the_line_pages_until_acknowledged(
    rt: Runtime, clock: FrozenClock
) -> None:
    case_id = await submit(rt, **{"recommendation.confidence": 0.6})  # expert lane
    assert (await state(rt, case_id))["case"]["lane"] == "expert"
    await at(rt, clock, 24 * HOUR)
    found = await state(rt, case_id)
    assert found["case"]["lane"] == "stop_the_line"
    assert found["case"]["status"] == "pending"
    escalated = [e for e in found["events"] if e["type"] == "escalated"]
    assert [orjson.loads(e["detail"])["to"] for e in escalated] == ["stop_the_line"]
    posted = [r["target"] for r in owed(found, "post_card")]
    assert posted == ["memory:C0EXPERT", "memory:C0ONCALL"]
    assert [r["target"] for r in owed(found, "page")] == ["memory:G0ONCALL"]
    note = owed(found, "notify")[0]["payload"]
    assert "escalated to the stop_the_line lane" in note["text"]
    assert note["mentions"] == ["#C0ONCALL"]  # the first card points to the new one
    assert found["case"]["due_at"] == clock.now() + _td(30 * 60)

    await at(rt, clock, 24 * HOUR + 5 * 60)  # nobody acknowledged within 5 minutes
    found = await state(rt, case_id)
    assert kinds(found).count("ack_missed") == 1
    assert len(owed(found, "page")) == 2
    await at(rt, clock, 24 * HOUR + 10 * 60)
    assert len(owed(await state(rt, case_id), "page")) == 3

    await rt.service.acknowledge(case_id, OPS1)
    await at(rt, clock, 24 * HOUR + 15 * 60)
    found = await state(rt, case_id)
    assert len(owed(found, "page")) == 3  # acknowledged: no more pages
    await at(rt, clock, 24 * HOUR + 30 * 60)
    found = await state(rt, case_id)
    assert found["case"]["status"] == "expired"  # the top of the ladder: the default
    assert found["decisions"][0]["decided_by"] == "timeout"


async def test_the_clock_pauses_while_the_workflow_is_asked(
    rt: Runtime, clock: FrozenClock
) -> None:
    case_id = await submit(rt)
    await at(rt, clock, 1 * HOUR)
    await rt.service.request_info(case_id, ALICE, "Who attended?")
    await at(rt, clock, 4 * HOUR)  # would be the breach, but the case is paused
    await at(rt, clock, 4.5 * HOUR)
    found = await state(rt, case_id)
    assert found["case"]["status"] == "info_requested"
    assert "reminded" not in kinds(found)
    await rt.service.answer_info(case_id, "default", "The whole team.", None)  # waited 3.5 h
    found = await state(rt, case_id)
    assert found["case"]["due_at"] == START + _td(7.5 * HOUR)
    await at(rt, clock, 5.4 * HOUR)
    assert "reminded" not in kinds(await state(rt, case_id))
    await at(rt, clock, 5.5 * HOUR)  # 50% of the SLA, counting only unpaused time
    assert kinds(await state(rt, case_id)).count("reminded") == 1
    await at(rt, clock, 7.4 * HOUR)
    assert (await state(rt, case_id))["case"]["status"] == "pending"
    await at(rt, clock, 7.5 * HOUR)
    assert (await state(rt, case_id))["case"]["status"] == "expired"


async def test_the_card_shows_the_time_left_on_time_at_risk_overdue(
    make_runtime: MakeRuntime, database_url: str, clock: FrozenClock
) -> None:
    rt = await make_runtime(database_url, clock=clock, workers=False)
    case_id = await submit_now(rt)
    assert (await rt.service.card(case_id)).sla_state == "on_time"
    clock.advance(3.3 * HOUR)  # 42 minutes of 4 hours left: the last fifth
    assert (await rt.service.card(case_id)).sla_state == "at_risk"
    clock.advance(1 * HOUR)
    assert (await rt.service.card(case_id)).sla_state == "overdue"
    await rt.service.decide(case_id, ALICE, "approve", "policy_match")
    assert (await rt.service.card(case_id)).sla_state is None


async def test_a_decided_case_has_its_timers_cleared_not_fired(
    rt: Runtime, clock: FrozenClock
) -> None:
    case_id = await submit(rt)
    await rt.service.decide(case_id, ALICE, "approve", "policy_match")
    await at(rt, clock, 10 * HOUR)
    found = await state(rt, case_id)
    assert found["case"]["status"] == "approved"
    assert not {"reminded", "expired", "escalated"} & set(kinds(found))
    async with rt.engine.connect() as conn:
        left = (
            await conn.execute(
                select(func.count()).where(timers.c.case_id == case_id, timers.c.fired_at.is_(None))
            )
        ).scalar_one()
    assert left == 0


async def test_the_scheduler_sweeps_by_itself(rt: Runtime, clock: FrozenClock) -> None:
    case_id = await submit(rt)
    clock.advance(4 * HOUR)  # no sweep by hand: APScheduler's interval job does it
    await _eventually(rt, case_id, lambda found: found["case"]["status"] == "expired")


async def test_timers_due_across_a_restart_fire_once(
    make_runtime: MakeRuntime, database_url: str, clock: FrozenClock
) -> None:
    first = await make_runtime(database_url, clock=clock, workers=False)
    ids = [await submit(first, title=f"Expense {n}") for n in range(5)]
    await first.stop()  # stopped with nothing swept
    clock.advance(3.5 * HOUR)  # both reminders are due while it is down
    second = await make_runtime(database_url, clock=clock, sla_sweep_interval=0.05)
    await second.sla.sweep()
    await second.sla.sweep()
    await asyncio.sleep(0.2)  # and the scheduler's own sweeps
    for case_id in ids:
        assert kinds(await state(second, case_id)).count("reminded") == 2


@pytest.mark.postgres
async def test_two_instances_on_one_postgres_fire_each_timer_exactly_once(
    make_runtime: MakeRuntime, clock: FrozenClock
) -> None:
    url = pg_url_or_skip()
    await reset_postgres(url)
    one = await make_runtime(url, clock=clock, sla_sweep_interval=0.01)
    two = await make_runtime(url, clock=clock, sla_sweep_interval=0.01)
    ids = [await submit(one if n % 2 else two, title=f"Expense {n}") for n in range(40)]
    clock.advance(3.5 * HOUR)
    await asyncio.gather(*(rt.sla.sweep() for rt in (one, two) for _ in range(5)))
    await asyncio.sleep(0.3)  # both schedulers sweep meanwhile too
    async with one.engine.connect() as conn:
        reminded = (
            await conn.execute(
                select(events.c.case_id, func.count())
                .where(events.c.type == "reminded")
                .group_by(events.c.case_id)
            )
        ).all()
        notes = (
            await conn.execute(select(func.count()).where(outbox.c.kind == "notify"))
        ).scalar_one()
    assert sorted(dict(reminded)) == sorted(ids)
    assert set(dict(reminded).values()) == {2}
    assert notes == 80


def _td(seconds: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=seconds)


async def _eventually(rt: Runtime, case_id: str, check: Any, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        found = await state(rt, case_id)
        if check(found):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out; case is {found['case']}")
        await asyncio.sleep(0.05)


async def test_metrics_export_open_cases_by_age_overdue_and_breaches(
    make_runtime: MakeRuntime, database_url: str, clock: FrozenClock
) -> None:
    from bot.api.metrics import Metrics

    rt = await make_runtime(database_url, clock=clock, workers=False)
    await submit_now(rt)  # review, 4 h, nowhere to escalate: expires
    await submit_now(rt, **{"recommendation.confidence": 0.6})  # expert, 24 h
    clock.advance(4.5 * HOUR)
    await rt.sla.sweep()
    text = (await Metrics().render(rt.engine, clock.now().timestamp())).decode()
    assert 'signoff_open_cases_by_age{age="4h_to_1d",lane="expert"} 1.0' in text
    assert 'lane="review"' not in text.split("signoff_open_cases_by_age")[-1].split("# HELP")[0]
    assert 'signoff_sla_breaches{outcome="expired"} 1.0' in text
    assert 'signoff_sla_breaches{outcome="escalated"} 0.0' in text
    clock.advance(20 * HOUR)  # 24.5 h: the expert case escalates
    await rt.sla.sweep()
    later = clock.now().timestamp() + 31 * 60  # past its new 30-minute SLA, unswept
    text = (await Metrics().render(rt.engine, later)).decode()
    assert 'signoff_open_cases_by_age{age="1d_to_3d",lane="stop_the_line"} 1.0' in text
    assert 'signoff_open_cases_overdue{lane="stop_the_line"} 1.0' in text
    assert 'signoff_sla_breaches{outcome="escalated"} 1.0' in text


async def test_a_claimed_case_reminds_the_claimer_only(rt: Runtime, clock: FrozenClock) -> None:
    case_id = await submit(rt)
    await rt.service.claim(case_id, ALICE)
    with pytest.raises(Exception, match="memory:U0ALICE has claimed this case"):
        await rt.service.claim(case_id, Reviewer("memory", "U0BOB", "Bob"))
    with pytest.raises(Exception, match="not an approver"):
        await rt.service.claim(case_id, Reviewer("memory", "U0MALLORY", "Mallory"))
    assert (await rt.service.card(case_id)).claimed_by == "memory:U0ALICE"
    await at(rt, clock, 2 * HOUR)
    found = await state(rt, case_id)
    assert owed(found, "notify")[0]["payload"]["mentions"] == ["U0ALICE"]
    await rt.service.release(case_id, ALICE)
    await at(rt, clock, 3.2 * HOUR)
    found = await state(rt, case_id)
    assert owed(found, "notify")[1]["payload"]["mentions"] == ["U0ALICE", "U0BOB", "G0REVIEWERS"]
    assert [e["type"] for e in found["events"] if e["type"] in ("claimed", "released")] == [
        "claimed",
        "released",
    ]


# -- the daily digest: a cron job that runs once per day across replicas --------------

DAILY = '  weekly: "mon 09:00 Europe/Berlin"\n  daily: "mon-fri 09:00 Europe/Berlin"\n'


@pytest.fixture
def digest_policy(tmp_path: Any) -> Any:
    from bot.policy import load_policy
    from tests.conftest import TEST_POLICY

    text = TEST_POLICY.read_text().replace('  weekly: "mon 09:00 Europe/Berlin"\n', DAILY)
    assert "daily:" in text
    path = tmp_path / "digest.yaml"
    path.write_text(text)
    return load_policy(path)


async def digest_runtime(url: str, policy: Any, clock: FrozenClock, memory: Any) -> Runtime:
    from tests.conftest import settings_for

    rt = Runtime(settings_for(url), policy=policy, adapters={"memory": memory}, clock=clock)
    await rt.start()
    return rt


async def test_the_daily_digest_posts_once_a_day_what_is_waiting(
    database_url: str, digest_policy: Any, clock: FrozenClock, memory: Any
) -> None:
    rt = await digest_runtime(database_url, digest_policy, clock, memory)
    try:
        await submit(rt)
        await submit(rt, title="Second")
        await submit(rt, **{"recommendation.confidence": 0.6})  # expert
        clock.advance(5 * HOUR)  # the review cases are overdue (not swept: no expiry)
        assert await rt.sla.digest() is True
        assert await rt.sla.digest() is False  # the day's run key is taken
        await wait_for(lambda: len(memory.of("post_summary")) == 1)
        channel, summary = memory.of("post_summary")[0]
        assert channel == "C0MANAGERS"
        assert summary.title == "Waiting for a person on Mon 16 Nov"
        assert summary.text.splitlines() == [
            "• expert: 1 waiting, 0 overdue, the oldest for 5.0 hours",
            "• review: 2 waiting, 2 overdue, the oldest for 5.0 hours",
        ]
        clock.advance(24 * HOUR)
        assert await rt.sla.digest() is True  # a new day, a new key
    finally:
        await rt.stop()


async def test_the_digest_runs_at_its_cron_time_in_its_zone(
    sqlite_url: str, digest_policy: Any, clock: FrozenClock, memory: Any
) -> None:
    from datetime import UTC, datetime

    rt = await digest_runtime(sqlite_url, digest_policy, clock, memory)
    try:
        trigger = rt.sla.schedule_trigger("daily")
        assert trigger is not None
        saturday = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
        fire = trigger.get_next_fire_time(None, saturday)
        assert fire.astimezone(UTC) == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # Mon 09:00 CET
        assert rt.sla.scheduler is not None
        assert rt.sla.scheduler.get_job("daily-digest") is not None
    finally:
        await rt.stop()


@pytest.mark.postgres
async def test_two_instances_post_one_digest(
    digest_policy: Any, clock: FrozenClock, memory: Any
) -> None:
    url = pg_url_or_skip()
    await reset_postgres(url)
    one = await digest_runtime(url, digest_policy, clock, memory)
    two = await digest_runtime(url, digest_policy, clock, memory)
    try:
        ran = await asyncio.gather(*(rt.sla.digest() for rt in (one, two, one, two)))
        assert sorted(ran) == [False, False, False, True]
    finally:
        await one.stop()
        await two.stop()


async def test_business_hours_count_only_working_time_and_the_pause_in_it(
    database_url: str, tmp_path: Any, memory: Any
) -> None:
    from datetime import UTC, datetime

    from bot.policy import load_policy
    from tests.conftest import TEST_POLICY, settings_for

    text = TEST_POLICY.read_text().replace(
        "    reminders: [50%, 80%]\n",
        "    reminders: [50%]\n    hours: {tz: Europe/Berlin, days: mon-fri, from: '09:00',"
        " to: '17:00'}\n",
        1,
    )
    path = tmp_path / "hours.yaml"
    path.write_text(text)
    clock = FrozenClock(datetime(2026, 11, 20, 15, 0, tzinfo=UTC))  # Friday 16:00 in Berlin
    rt = Runtime(
        settings_for(database_url),
        policy=load_policy(path),
        adapters={"memory": memory},
        clock=clock,
    )
    await rt.start(workers=False)
    try:
        case_id = await submit_now(rt)
        found = await state(rt, case_id)
        # 1 h on Friday, 3 h on Monday: Monday 12:00 in Berlin
        assert found["case"]["due_at"] == datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
        clock.advance(24 * HOUR)  # Saturday: nothing is due
        await rt.sla.sweep()
        assert "reminded" not in kinds(await state(rt, case_id))
        clock.set(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))  # Monday 10:00: 2 h worked
        await rt.sla.sweep()
        assert kinds(await state(rt, case_id)).count("reminded") == 1

        clock.set(datetime(2026, 11, 23, 9, 30, tzinfo=UTC))  # 1.5 h of the SLA left
        await rt.service.request_info(case_id, ALICE, "Who attended?")
        clock.set(datetime(2026, 11, 23, 15, 30, tzinfo=UTC))  # 16:30: 30 min of today
        await rt.service.answer_info(case_id, "default", "The team.", None)
        found = await state(rt, case_id)
        assert found["case"]["due_at"] == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # Tue 10:00
        clock.set(datetime(2026, 11, 24, 8, 59, tzinfo=UTC))
        await rt.sla.sweep()
        assert (await state(rt, case_id))["case"]["status"] == "pending"
        clock.set(datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
        await rt.sla.sweep()
        assert (await state(rt, case_id))["case"]["status"] == "expired"
    finally:
        await rt.stop()
