"""A manager's summary with charts, delivered by the Slack and Discord adapters to the
test servers: the text arrives inert, the PNGs arrive byte for byte, and failures map
to what the outbox needs to try again."""

from __future__ import annotations

import pytest

from bot.analytics.charts import KindRate, WeekPoint, override_rates_png, volume_trend_png
from bot.protocols import DeliveryFailed, Summary
from tests.discord_harness import CHANNELS, discord_world
from tests.slack_harness import slack_world

TITLE = "Weekly summary 2026-W47"
SLACK_TEXT = "<!channel> 3 kinds overrode the AI more than 20% of the time. <@U0ALICE> & co"
DISCORD_TEXT = "@everyone 3 kinds overrode the AI more than 20% of the time. <@400000000000000001>"
SLACK_CHANNEL = "C0MANAGERS"
DISCORD_CHANNEL = CHANNELS["managers"]


def charts() -> list[tuple[str, bytes]]:
    kinds = [
        KindRate("expense_report", 40, 5),
        KindRate("$refund$ <!channel>", 10, 4),
        KindRate("vendor_onboarding", 0, 0),
    ]
    weeks = [
        WeekPoint("2026-W45", 110, 60, 8, 50),
        WeekPoint("2026-W46", 0, 0, 0, 0),
        WeekPoint("2026-W47", 150, 80, 12, 70),
    ]
    return [("overrides.png", override_rates_png(kinds)), ("trend.png", volume_trend_png(weeks))]


async def test_slack_posts_the_text_then_the_charts(sqlite_url: str) -> None:
    images = charts()
    async with slack_world(sqlite_url) as world:
        adapter = world.runtime.adapters["slack"]
        await adapter.post_summary(SLACK_CHANNEL, Summary(TITLE, SLACK_TEXT, images=images))
        [message] = world.slack.messages[SLACK_CHANNEL]
        assert message.text == (
            f"{TITLE}\n&lt;!channel&gt; 3 kinds overrode the AI more than 20% of the time. "
            "&lt;@U0ALICE&gt; &amp; co"
        )
        assert "<!" not in (message.text or "")
        assert "<@" not in (message.text or "")
        files = world.slack.files_in(SLACK_CHANNEL)
        assert [(f.filename, f.title, f.data) for f in files] == [
            (name, name, data) for name, data in images
        ]
        assert world.slack.files == files  # nowhere else
        assert [c.method for c in world.slack.calls if c.method != "auth.test"] == [
            "chat.postMessage",
            "files.getUploadURLExternal",
            "files.getUploadURLExternal",
            "upload",
            "upload",
            "files.completeUploadExternal",
        ]
        completed = world.slack.of("files.completeUploadExternal")[0]
        assert completed.params["channel_id"] == SLACK_CHANNEL
        assert world.slack.of("files.getUploadURLExternal")[0].params["alt_txt"] == (
            f"{TITLE}: overrides.png"
        )
        assert world.slack.violations == []
        assert world.slack.uploads == {}


async def test_slack_summary_without_charts_is_only_a_message(sqlite_url: str) -> None:
    async with slack_world(sqlite_url) as world:
        await world.runtime.adapters["slack"].post_summary(SLACK_CHANNEL, Summary(TITLE, "Quiet"))
        assert [m.text for m in world.slack.messages[SLACK_CHANNEL]] == [f"{TITLE}\nQuiet"]
        assert world.slack.of("files.getUploadURLExternal") == []
        assert world.slack.files == []


async def test_slack_429_on_the_upload_says_when_and_the_retry_posts_no_second_text(
    sqlite_url: str,
) -> None:
    images = charts()
    summary = Summary(TITLE, SLACK_TEXT, images=images)
    async with slack_world(sqlite_url) as world:
        adapter = world.runtime.adapters["slack"]
        # slack_sdk waits out one 429 itself; the second goes to the outbox
        world.slack.fail("files.getUploadURLExternal", status=429, times=2, retry_after=1)
        with pytest.raises(DeliveryFailed) as limited:
            await adapter.post_summary(SLACK_CHANNEL, summary)
        assert limited.value.retry_after == 1.0
        assert not limited.value.permanent
        assert len(world.slack.messages[SLACK_CHANNEL]) == 1
        assert world.slack.files == []

        await adapter.post_summary(SLACK_CHANNEL, summary)  # the outbox's next try
        assert len(world.slack.messages[SLACK_CHANNEL]) == 1
        assert [f.data for f in world.slack.files_in(SLACK_CHANNEL)] == [d for _, d in images]

        await adapter.post_summary(SLACK_CHANNEL, summary)  # delivered again on purpose
        assert len(world.slack.messages[SLACK_CHANNEL]) == 2
        assert len(world.slack.files_in(SLACK_CHANNEL)) == 4
        assert world.slack.violations == []


async def test_slack_failed_upload_url_is_tried_again_later(sqlite_url: str) -> None:
    async with slack_world(sqlite_url) as world:
        adapter = world.runtime.adapters["slack"]
        world.slack.fail("upload", status=503, times=3)  # slack_sdk tries a 5xx twice more
        with pytest.raises(DeliveryFailed) as failed:
            await adapter.post_summary(SLACK_CHANNEL, Summary(TITLE, "t", images=charts()[:1]))
        assert not failed.value.permanent
        assert "503" in failed.value.message
        assert world.slack.files == []
        await adapter.post_summary(SLACK_CHANNEL, Summary(TITLE, "t", images=charts()[:1]))
        assert len(world.slack.files_in(SLACK_CHANNEL)) == 1
        assert len(world.slack.messages[SLACK_CHANNEL]) == 1


async def test_discord_sends_the_text_and_the_charts_in_one_message(sqlite_url: str) -> None:
    images = charts()
    async with discord_world(sqlite_url) as world:
        adapter = world.runtime.adapters["discord"]
        await adapter.post_summary(DISCORD_CHANNEL, Summary(TITLE, DISCORD_TEXT, images=images))
        [message] = world.discord.messages[DISCORD_CHANNEL]
        assert message.embeds[0]["title"] == TITLE
        description = message.embeds[0]["description"]
        assert "\\@everyone" in description
        assert "<@400000000000000001>" not in description
        assert message.mention_everyone is False
        assert message.mentions == []
        assert message.allowed_mentions == {"parse": []}
        assert [(a.filename, a.data) for a in message.attachments] == images
        assert world.discord.violations == []
        assert world.discord.errors == []


async def test_discord_429_is_waited_out_or_handed_to_the_outbox(sqlite_url: str) -> None:
    images = charts()
    summary = Summary(TITLE, DISCORD_TEXT, images=images)
    route = "POST /channels/{channel_id}/messages"
    async with discord_world(sqlite_url) as world:
        adapter = world.runtime.adapters["discord"]
        world.discord.fail(route, status=429, retry_after=0.1)  # discord.py waits it out
        await adapter.post_summary(DISCORD_CHANNEL, summary)
        [message] = world.discord.messages[DISCORD_CHANNEL]
        assert [(a.filename, a.data) for a in message.attachments] == images  # re-sent whole

        world.discord.fail(route, status=429, retry_after=60)  # too long: the outbox waits
        with pytest.raises(DeliveryFailed) as limited:
            await adapter.post_summary(DISCORD_CHANNEL, summary)
        assert limited.value.retry_after == pytest.approx(60, abs=1)
        assert not limited.value.permanent
        assert len(world.discord.messages[DISCORD_CHANNEL]) == 1
        assert world.discord.violations == []
