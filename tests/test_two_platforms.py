"""One case shown on Slack and on Discord at once: a decision on either platform updates
the card on both, and the other platform's late click is answered, not counted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest

from bot.runtime import Runtime
from tests.conftest import SECRET, Api, case, http_server, wait_for
from tests.discord_api import DiscordApi
from tests.discord_harness import (
    ALICE,
    CHANNELS,
    DISCORD_POLICY,
    IDENTITIES,
    TOKEN,
    custom_ids,
    discord_server,
)
from tests.discord_harness import (
    Reviewers as DiscordReviewers,
)
from tests.receiver import RECEIVER_HOSTS, Receiver, running
from tests.slack_api import SlackApi, slack_api
from tests.slack_harness import GROUPS, SIGNING_SECRET, USERS, Reviewers, slack_settings


@dataclass
class Both:
    runtime: Runtime
    api: Api
    slack: SlackApi
    discord: DiscordApi
    slack_hands: Reviewers
    discord_hands: DiscordReviewers


@asynccontextmanager
async def both_platforms(database_url: str) -> AsyncIterator[Both]:
    async with slack_api(users=USERS, groups=GROUPS) as slack, discord_server() as disc:
        settings = slack_settings(
            database_url,
            slack.url,
            policy=str(DISCORD_POLICY),
            discord_bot_token=TOKEN,
            discord_api_url=disc.url,
            discord_identities=IDENTITIES,
            callback_hosts=RECEIVER_HOSTS,
        )
        runtime = Runtime(settings)
        await runtime.start()
        try:
            async with (
                http_server(runtime) as base,
                httpx.AsyncClient(base_url=base, timeout=30) as client,
            ):
                yield Both(
                    runtime,
                    Api(client, runtime),
                    slack,
                    disc,
                    Reviewers(client, slack, SIGNING_SECRET),
                    DiscordReviewers(disc),
                )
        finally:
            await runtime.stop()


@pytest.fixture
async def both(database_url: str) -> AsyncIterator[Both]:
    async with both_platforms(database_url) as found:
        yield found


async def test_a_decision_in_slack_updates_the_discord_card(both: Both) -> None:
    async with running(Receiver(SECRET)) as hook:
        submitted = await both.api.submit(case(callback_url=hook.url))
        await both.slack.wait_for(lambda s: s.of("chat.postMessage"))
        slack_card = both.slack_hands.card(submitted["id"])
        await both.discord.wait_for(lambda d: d.messages[CHANNELS["review"]])
        discord_card = both.discord_hands.card(submitted["id"])
        assert slack_card.channel == "C0REVIEW"
        stale = both.discord.button_click(
            ALICE, f"signoff:reject:{submitted['id']}", discord_card.id, discord_card.channel_id
        )

        answer = await both.slack_hands.decide(slack_card, "approve", "U0CAROL", "policy_match")
        assert answer.text == ""
        await both.discord.wait_for(
            lambda d: d.message(discord_card.channel_id, discord_card.id).edits
        )
        updated = both.discord.message(discord_card.channel_id, discord_card.id)
        assert updated is not None
        assert custom_ids(updated) == []
        assert "✅ **Approved** by U0CAROL on Slack" in json.dumps(
            updated.embeds, ensure_ascii=False
        )
        await both.discord.wait_for(lambda d: d.thread(discord_card.id))
        assert "Approved by carol" in both.discord.thread(discord_card.id)[0].content

        # a Discord reviewer whose screen had not caught up is told, and nothing counts twice
        late = await both.discord.interact(stale)
        assert late.data["content"] == "This case was already approved by U0CAROL on Slack."
        await wait_for(lambda: len(hook.received) >= 1)
    found = (await both.api.get(f"/v1/escalations/{submitted['id']}")).json()
    assert found["status"] == "approved"
    assert len(found["decisions"]) == 1
    assert both.discord.violations == []
    assert both.slack.violations == []


async def test_a_decision_in_discord_updates_the_slack_card(both: Both) -> None:
    submitted = await both.api.submit()
    await both.slack.wait_for(lambda s: s.of("chat.postMessage"))
    slack_card = both.slack_hands.card(submitted["id"])
    await both.discord.wait_for(lambda d: d.messages[CHANNELS["review"]])
    discord_card = both.discord_hands.card(submitted["id"])
    stale = both.slack_hands.click_payload(slack_card, "approve", "U0CAROL")

    answer = await both.discord_hands.decide(
        discord_card, "reject", ALICE, "policy_violation", "No."
    )
    assert answer.data["content"] == "Recorded: you rejected this case."
    await both.slack.wait_for(lambda s: s.message(slack_card.channel, slack_card.ts).edits >= 1)
    updated = both.slack.message(slack_card.channel, slack_card.ts)
    assert updated is not None
    shown = json.dumps(updated.blocks)
    assert f"Rejected* by {ALICE} on Discord" in shown
    await both.slack.wait_for(lambda s: s.thread(slack_card.channel, slack_card.ts))

    # and a Slack click after it is answered politely
    await both.slack_hands.send(stale)
    await both.slack.wait_for(lambda s: s.of("chat.postEphemeral"))
    said = both.slack.of("chat.postEphemeral")[0].params["text"]
    assert said == f"This case was already rejected by {ALICE} on Discord."


async def test_a_decision_on_the_web_updates_the_slack_and_discord_cards(both: Both) -> None:
    from adapters.web import WebSurface
    from tests.webkit import csrf_of

    submitted = await both.api.submit()
    await both.slack.wait_for(lambda s: s.of("chat.postMessage"))
    slack_card = both.slack_hands.card(submitted["id"])
    await both.discord.wait_for(lambda d: d.messages[CHANNELS["review"]])
    discord_card = both.discord_hands.card(submitted["id"])
    stale = both.discord.button_click(
        ALICE, f"signoff:approve:{submitted['id']}", discord_card.id, discord_card.channel_id
    )

    web = both.runtime.adapters["web"]
    assert isinstance(web, WebSurface)
    token = (await web.login_link("alice@example.com")).split("token=", 1)[1]
    base = str(both.api.client.base_url)
    async with httpx.AsyncClient(base_url=base, timeout=30) as browser:
        assert (await browser.post("/inbox/login", data={"token": token})).status_code == 303
        page = (await browser.get(f"/inbox/cases/{submitted['id']}")).text
        done = await browser.post(
            f"/inbox/cases/{submitted['id']}",
            data={
                "csrf": csrf_of(page),
                "action": "reject",
                "reason_code": "policy_violation",
                "reason": "Over the limit.",
            },
        )
        assert done.status_code == 303, done.text

    await both.slack.wait_for(lambda s: s.message(slack_card.channel, slack_card.ts).edits >= 1)
    updated = both.slack.message(slack_card.channel, slack_card.ts)
    assert updated is not None
    assert "Rejected* by web:alice@example.com" in json.dumps(updated.blocks)
    await both.discord.wait_for(lambda d: d.message(discord_card.channel_id, discord_card.id).edits)
    on_discord = both.discord.message(discord_card.channel_id, discord_card.id)
    assert on_discord is not None
    assert custom_ids(on_discord) == []
    shown = " ".join(
        [str(e.get("description", "")) for e in on_discord.embeds]
        + [str(f["value"]) for e in on_discord.embeds for f in e.get("fields", [])]
    )
    # Discord's markdown is escaped in what the workflow or a reviewer's name brings
    assert r"**Rejected** by web\:alice\@example.com" in shown
    # a Discord click from a screen that had not caught up counts for nothing
    late = await both.discord.interact(stale)
    assert late.data["content"] == r"This case was already rejected by web\:alice\@example.com."
    found = (await both.api.get(f"/v1/escalations/{submitted['id']}")).json()
    assert found["status"] == "rejected"
    assert [d["reviewer"] for d in found["decisions"]] == ["web:alice@example.com"]
    assert both.slack.violations == []
    assert both.discord.violations == []
