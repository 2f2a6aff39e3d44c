"""Per-channel pacing (bot/pacing.py in front of the outbox) against a Slack-compatible
server that refuses, as Slack does, a channel pushed faster than about one message a
second after a short burst (https://docs.slack.dev/apis/web-api/rate-limits)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import text

from bot.config import Settings
from bot.pacing import ChannelPacer
from bot.runtime import Runtime
from tests.conftest import Api, case, http_server
from tests.discord_harness import CHANNELS as DISCORD_CHANNELS
from tests.discord_harness import TOKEN as DISCORD_TOKEN
from tests.discord_harness import discord_server, discord_world
from tests.slack_api import SlackApi, slack_api
from tests.slack_harness import BOT_TOKEN, GROUPS, USERS, SlackWorld, slack_settings, slack_world

KEY = ("slack", "C1")
DISCORD_REVIEW = DISCORD_CHANNELS["review"]


class Ticks:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def send(pacer: ChannelPacer, ticks: Ticks, took: float = 0.0) -> None:
    assert pacer.wait(KEY) == 0, "the test only sends when the bucket allows it"
    async with pacer.turn(KEY):
        ticks.now += took


# -- the bucket ------------------------------------------------------------------------


async def test_a_burst_goes_at_once_then_one_a_second() -> None:
    ticks = Ticks()
    pacer = ChannelPacer(1.0, 3, clock=ticks)
    for _ in range(3):
        await send(pacer, ticks)
    assert pacer.wait(KEY) == pytest.approx(1.0)
    assert pacer.wait(("slack", "C2")) == 0  # another channel has its own bucket
    assert pacer.wait(("discord", "C1")) == 0  # and so has another platform's
    ticks.now += 0.4
    assert pacer.wait(KEY) == pytest.approx(0.6)
    ticks.now += 0.6
    await send(pacer, ticks)
    assert pacer.wait(KEY) == pytest.approx(1.0)
    ticks.now += 10  # quiet for long: the whole burst again, no more
    for _ in range(3):
        await send(pacer, ticks)
    assert pacer.wait(KEY) == pytest.approx(1.0)


async def test_a_send_is_counted_when_its_answer_comes() -> None:
    """The platform saw the send somewhere between leaving and answering: counting at
    the answer keeps the bucket no fuller than the platform's, whatever the jitter."""
    ticks = Ticks()
    pacer = ChannelPacer(1.0, 1, clock=ticks)
    await send(pacer, ticks, took=0.4)
    assert pacer.wait(KEY) == pytest.approx(1.0)  # one interval from the answer


async def test_a_summary_with_charts_costs_two_messages() -> None:
    ticks = Ticks()
    pacer = ChannelPacer(1.0, 3, clock=ticks)
    async with pacer.turn(KEY, cost=2):
        pass
    assert pacer.wait(KEY) == 0
    assert pacer.wait(KEY, cost=2) == pytest.approx(1.0)


async def test_queued_sends_and_promised_turns_push_an_estimate_back() -> None:
    ticks = Ticks()
    pacer = ChannelPacer(2.0, 1, clock=ticks)
    assert pacer.estimate(KEY, 1) == 0
    pacer.promise(KEY, 1, 3.0)  # row 1 went back to the table, due in 3 s
    assert pacer.estimate(KEY, 2) == pytest.approx(3.5)  # a later row comes after it
    assert pacer.estimate(KEY, 1) == 0  # row 1 itself keeps its turn
    assert pacer.estimate(("slack", "C2"), 3) == 0


async def test_a_429_blocks_the_channel_and_the_refused_send_is_not_counted() -> None:
    ticks = Ticks()
    pacer = ChannelPacer(1.0, 3, clock=ticks)
    async with pacer.turn(KEY):
        pacer.penalize(KEY, 2.0)
    assert pacer.wait(KEY) == pytest.approx(2.0)
    assert pacer.estimate(KEY, 9) == pytest.approx(2.0)
    ticks.now += 2.0
    for _ in range(3):  # the refused send took none of the burst
        await send(pacer, ticks)
    assert pacer.wait(KEY) == pytest.approx(1.0)


def test_a_pacer_needs_a_rate_and_a_burst() -> None:
    with pytest.raises(ValueError, match="above 0"):
        ChannelPacer(0, 3)
    with pytest.raises(ValueError, match="at least 1"):
        ChannelPacer(1.0, 0)


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("channel_rate", 0, "from 0.01 to 50"),
        ("channel_rate", -1, "from 0.01 to 50"),
        ("channel_rate", 51, "from 0.01 to 50"),
        ("channel_rate", "nan", "from 0.01 to 50"),
        ("channel_rate", "fast", "valid number"),
        ("channel_burst", 0, "from 1 to 50"),
        ("channel_burst", 51, "from 1 to 50"),
        ("channel_burst", 2.5, "valid integer"),
    ],
)
def test_pacing_settings_out_of_bounds_are_refused_with_a_clear_error(
    name: str, value: Any, words: str
) -> None:
    with pytest.raises(ValidationError, match=words) as refused:
        Settings(_env_file=None, **{name: value})  # type: ignore[call-arg]
    assert name in str(refused.value)


def test_pacing_settings_default_to_slacks_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.channel_rate, settings.channel_burst) == (1.0, 3)
    monkeypatch.setenv("SIGNOFF_CHANNEL_RATE", "0.5")
    monkeypatch.setenv("SIGNOFF_CHANNEL_BURST", "1")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.channel_rate, settings.channel_burst) == (0.5, 1)


# -- the stand-in is as strict as Slack ----------------------------------------------------


async def test_the_stand_in_answers_429_ratelimited_past_the_burst() -> None:
    async with slack_api() as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.url)
        for n in range(3):
            await client.chat_postMessage(channel="C1", text=f"burst {n}")
        with pytest.raises(SlackApiError) as refused:
            await client.chat_postMessage(channel="C1", text="one too many")
        assert refused.value.response.status_code == 429
        assert refused.value.response["error"] == "ratelimited"
        assert refused.value.response.headers.get("retry-after") == "1"
        await client.chat_postMessage(channel="C2", text="another channel is not held")
        posted = slack.messages["C1"][0]
        await client.chat_update(channel="C1", ts=posted.ts, text="an edit is Tier 3, not paced")
        assert [c.params["text"] for c in slack.ratelimited] == ["one too many"]
        await asyncio.sleep(1.05)
        await client.chat_postMessage(channel="C1", text="a second later: one more")


# -- the outbox, paced -------------------------------------------------------------------


@pytest.fixture
async def fast(sqlite_url: str) -> AsyncIterator[SlackWorld]:
    """Bot and stand-in both at 10 messages a second (burst 3): the same rules, quicker."""
    async with slack_world(sqlite_url, channel_rate=10.0, channel_burst=3) as world:
        world.slack.channel_rate = 10.0
        yield world


def cards_in(slack: SlackApi, channel: str) -> list[Any]:
    return [m for m in slack.messages[channel] if m.thread_ts is None and m.user is None]


def one_card_each(slack: SlackApi, ids: list[str]) -> None:
    for case_id in ids:
        found = [
            m
            for messages in slack.messages.values()
            for m in messages
            if m.thread_ts is None and m.user is None and case_id in json.dumps(m.blocks)
        ]
        assert len(found) == 1, f"case {case_id} has {len(found)} cards"


async def submit_all(api: Api, count: int, **changes: Any) -> list[str]:
    bodies = [case(title=f"Expense {n}", **changes) for n in range(count)]
    return [r["id"] for r in await asyncio.gather(*(api.submit(b) for b in bodies))]


async def delivered(runtime: Runtime) -> dict[str, int]:
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(text("SELECT status, count(*) FROM outbox GROUP BY status"))
        return {str(status): int(n) for status, n in rows}


async def test_fifty_cases_into_one_channel_arrive_paced_and_complete(fast: SlackWorld) -> None:
    ids = await submit_all(fast.api, 50)
    await fast.slack.wait_for(lambda s: len(cards_in(s, "C0REVIEW")) >= 50, timeout=30)
    await asyncio.sleep(0.3)  # a doubled post would land by now
    assert fast.slack.ratelimited == []
    one_card_each(fast.slack, ids)
    posts = [c.at for c in fast.slack.of("chat.postMessage") if c.params["channel"] == "C0REVIEW"]
    assert len(posts) == 50
    assert posts[-1] - posts[0] >= (50 - 3) / 10 * 0.95  # paced, not a burst of 50
    assert await delivered(fast.runtime) == {"delivered": 50}
    assert fast.slack.violations == []


async def test_with_slacks_own_limit_a_burst_of_eight_takes_five_seconds(sqlite_url: str) -> None:
    async with slack_world(sqlite_url) as world:  # 1 a second after 3, bot and stand-in
        ids = await submit_all(world.api, 8)
        started = time.monotonic()
        await world.slack.wait_for(lambda s: len(cards_in(s, "C0REVIEW")) >= 8, timeout=15)
        assert time.monotonic() - started >= 4.5
        assert world.slack.ratelimited == []
        one_card_each(world.slack, ids)
        assert await delivered(world.runtime) == {"delivered": 8}


async def test_a_busy_channel_holds_neither_another_channel_nor_a_delivery_slot(
    sqlite_url: str,
) -> None:
    async with slack_world(sqlite_url, channel_rate=2.0) as world:
        world.slack.channel_rate = 2.0
        # One delivery at a time: a row waiting for its channel's turn must not hold it.
        world.runtime.outbox._limit = asyncio.Semaphore(1)
        busy = await submit_all(world.api, 20)  # the review lane: C0REVIEW, 8 s of posts
        await world.slack.wait_for(lambda s: len(cards_in(s, "C0REVIEW")) >= 3)
        started = time.monotonic()
        elsewhere = case(title="Elsewhere", **{"recommendation.confidence": 0.5})
        other = await world.api.submit(elsewhere)  # the expert lane: C0EXPERT
        await world.slack.wait_for(lambda s: cards_in(s, "C0EXPERT"), timeout=3)
        assert time.monotonic() - started < 2.0
        assert len(cards_in(world.slack, "C0REVIEW")) < 20  # the busy channel is still busy
        await world.slack.wait_for(lambda s: len(cards_in(s, "C0REVIEW")) >= 20, timeout=20)
        assert world.slack.ratelimited == []
        one_card_each(world.slack, [*busy, other["id"]])


async def test_a_429_from_slack_is_honoured_for_its_retry_after(sqlite_url: str) -> None:
    async with slack_world(sqlite_url) as world:
        # slack_sdk retries one 429 itself, after its Retry-After (inside the channel's
        # turn); the second reaches the outbox, which must honour it for the channel.
        world.slack.fail("chat.postMessage", status=429, times=2, retry_after=2)
        ids = await submit_all(world.api, 2)
        await world.slack.wait_for(lambda s: len(cards_in(s, "C0REVIEW")) >= 2, timeout=15)
        refused = [c for c in world.slack.rejected if c.status == 429]
        assert len(refused) == 2
        assert refused[1].at - refused[0].at >= 1.9
        posts = [c.at for c in world.slack.of("chat.postMessage")]
        # neither the refused card's retry nor the channel's next card went before it ended
        assert min(posts) - refused[1].at >= 1.9
        one_card_each(world.slack, ids)


async def test_a_restart_mid_burst_loses_and_doubles_nothing(database_url: str) -> None:
    async with slack_api(users=USERS, groups=GROUPS) as slack:
        slack.channel_rate = 5.0
        settings = slack_settings(database_url, slack.url, channel_rate=5.0)
        first = Runtime(settings)
        await first.start()
        async with (
            http_server(first) as base,
            httpx.AsyncClient(base_url=base, timeout=30) as client,
        ):
            ids = await submit_all(Api(client, first), 30)
            await slack.wait_for(lambda s: len(cards_in(s, "C0REVIEW")) >= 8)
        await first.stop()  # mid-burst: rows wait in the table for their turn
        assert len(cards_in(slack, "C0REVIEW")) < 30

        second = Runtime(slack_settings(database_url, slack.url, channel_rate=5.0))
        assert (await delivered(second)).get("pending", 0) > 0
        await second.start()
        try:
            await slack.wait_for(lambda s: len(cards_in(s, "C0REVIEW")) >= 30, timeout=30)
            await asyncio.sleep(0.5)  # a doubled post would land by now
            one_card_each(slack, ids)
            assert len(cards_in(slack, "C0REVIEW")) == 30
            assert await delivered(second) == {"delivered": 30}
            # a fresh process starts with a full bucket while Slack's is not: such a 429
            # is honoured and its card posted once, later
            assert all(c.params["channel"] == "C0REVIEW" for c in slack.ratelimited)
        finally:
            await second.stop()


# -- Discord: its own per-route buckets, kept by discord.py --------------------------------


async def test_the_discord_stand_in_answers_429_past_a_channels_bucket() -> None:
    async with discord_server() as api:
        path = f"{api.url}/channels/{DISCORD_REVIEW}/messages"
        headers = {"Authorization": f"Bot {DISCORD_TOKEN}"}
        async with httpx.AsyncClient() as client:  # raw, without discord.py's buckets
            answers = [
                await client.post(path, json={"content": f"m{n}"}, headers=headers)
                for n in range(6)
            ]
        assert [a.status_code for a in answers] == [200] * 5 + [429]
        assert [a.headers["X-RateLimit-Remaining"] for a in answers[:5]] == [
            "4",
            "3",
            "2",
            "1",
            "0",
        ]
        refused = answers[-1]
        assert refused.headers["Via"]
        assert refused.headers["X-RateLimit-Scope"] == "user"
        assert 0 < float(refused.headers["X-RateLimit-Reset-After"]) <= 5
        body = refused.json()
        assert body["global"] is False
        assert 0 < body["retry_after"] <= 5
        assert len(api.ratelimited) == 1


async def test_discord_posts_keep_to_the_channels_bucket_through_discord_py(
    sqlite_url: str,
) -> None:
    """With Signoff's own pacing lifted, discord.py keeps to the bucket the headers tell
    (5 per 5 s here): every card arrives and no 429 is answered."""
    async with discord_world(sqlite_url, channel_rate=50.0, channel_burst=50) as world:
        ids = await submit_all(world.api, 7)
        review = world.discord.messages[DISCORD_REVIEW]
        await world.discord.wait_for(lambda _: len(review) >= 7, timeout=15)
        assert world.discord.ratelimited == []
        creates = [c.at for c in world.discord.of("POST /channels/{channel_id}/messages")]
        assert creates[-1] - creates[0] >= 4.5  # the 6th waited for the bucket's reset
        for case_id in ids:  # one card each
            assert sum(f"Case {case_id}" in json.dumps(m.embeds) for m in review) == 1
