"""Discord's connection as operators meet it: buttons and forms that outlive a restart,
a gateway that drops and resumes, a clean stop, a refused token, Discord away at start,
a page by DM, and the daily digest posted to the managers' channel."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest

from bot.errors import ConfigError
from bot.runtime import Runtime
from tests.conftest import case
from tests.discord_harness import (
    ALICE,
    CAROL,
    CHANNELS,
    DISCORD_POLICY,
    OPS1,
    TOKEN,
    discord_server,
    discord_settings,
    discord_world,
)
from tests.test_discord import told
from tests.test_slack_socket import pending_tasks


def page_a_person(tmp_path: Any) -> Any:
    """The test policy, with on-call paged as one person (OPS1) instead of a role."""
    policy = tmp_path / "page-user.yaml"
    policy.write_text(
        DISCORD_POLICY.read_text().replace(
            'discord: "role:300000000000000003"', f'discord: "user:{OPS1}"'
        )
    )
    return policy


async def test_buttons_and_an_open_form_keep_working_across_a_restart(sqlite_url: str) -> None:
    async with discord_server() as api:
        async with discord_world(sqlite_url, server=api) as first:
            one = await first.api.submit(case(title="Before the restart 1"))
            two = await first.api.submit(case(title="Before the restart 2"))
            card_one = await first.card_for(one["id"])
            card_two = await first.card_for(two["id"])
            opened = await first.reviewers.click(card_one, "approve", ALICE)  # form left open
            assert opened.type == 9
        await api.wait_for(lambda d: not d.connected)  # the first process is gone
        async with discord_world(sqlite_url, server=api) as second:
            assert len(api.sessions) >= 2
            # the form opened before the restart still counts
            answer = await second.reviewers.submit(
                opened.data, ALICE, code="policy_match", message=card_one
            )
            assert told(answer) == "Recorded: you approved this case."
            # and a button on a card posted by the first process opens its form
            clicked = await second.reviewers.click(card_two, "reject", CAROL)
            assert clicked.type == 9
            assert clicked.data["custom_id"] == f"signoff:form:reject:{two['id']}"
            done = await second.reviewers.submit(
                clicked.data, CAROL, code="policy_violation", reason="Not a team event."
            )
            assert told(done) == "Recorded: you rejected this case."
            for case_id, status in ((one["id"], "approved"), (two["id"], "rejected")):
                found = (await second.api.get(f"/v1/escalations/{case_id}")).json()
                assert found["status"] == status


@pytest.mark.parametrize("code", [4000, 1001])
async def test_the_gateway_drops_and_clicks_still_arrive(sqlite_url: str, code: int) -> None:
    async with discord_world(sqlite_url) as world:
        submitted = await world.api.submit()
        card = await world.card_for(submitted["id"])
        await world.discord.disconnect(code)
        await world.discord.wait_for(lambda d: d.connected, timeout=15)
        opened = await world.reviewers.click(card, "approve", ALICE)
        assert opened.type == 9
        assert len(world.discord.connections) >= 2


async def test_stop_closes_the_gateway_and_leaves_nothing_running(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with discord_server() as api:
        before = pending_tasks()
        runtime = Runtime(discord_settings(sqlite_url, api.url))
        await runtime.start()
        await api.wait_connected()
        await runtime.stop()
        assert not runtime.started
        await api.wait_for(lambda d: not d.connected)
        assert pending_tasks() - before == set()
        identified = len(api.sessions)
        await asyncio.sleep(0.5)
        assert len(api.sessions) == identified  # and it did not come back
    del runtime
    gc.collect()  # an unclosed aiohttp session warns here, and warnings are errors
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_refused_token_fails_the_start_clearly_and_leaves_nothing_running(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with discord_server() as api:
        before = pending_tasks()
        runtime = Runtime(discord_settings(sqlite_url, api.url, discord_bot_token="wrong-token"))
        with pytest.raises(ConfigError) as refused:
            await runtime.start()
        assert str(refused.value) == (
            "Discord refused SIGNOFF_DISCORD_BOT_TOKEN (401 Unauthorized): copy the token "
            "from the Developer Portal's Bot page"
        )
        assert not runtime.started
        assert api.sessions == []  # it never reached the gateway
        assert pending_tasks() - before == set()
    del runtime
    gc.collect()
    assert "wrong-token" not in caplog.text


async def test_discord_away_at_start_does_not_hold_the_start_up(sqlite_url: str) -> None:
    async with discord_server() as api:
        api.outage(True)
        runtime = Runtime(discord_settings(sqlite_url, api.url))
        await asyncio.wait_for(runtime.start(), 5)
        try:
            assert runtime.started
            submitted = await _submit(runtime)
            api.outage(False)
            await api.wait_for(lambda d: d.connected, timeout=30)
            await api.wait_for(lambda d: d.messages[CHANNELS["review"]], timeout=30)
            assert submitted in str(api.messages[CHANNELS["review"]][0].embeds)
        finally:
            await runtime.stop()


async def _submit(runtime: Runtime) -> str:
    import httpx

    from tests.conftest import Api, http_server

    async with http_server(runtime) as base, httpx.AsyncClient(base_url=base) as client:
        found: dict[str, Any] = await Api(client, runtime).submit()
    return str(found["id"])


async def test_a_page_to_a_person_is_a_dm_with_a_link_to_the_card(
    sqlite_url: str, tmp_path: Any
) -> None:
    policy = page_a_person(tmp_path)
    async with discord_world(sqlite_url, policy=str(policy)) as world:
        submitted = await world.api.submit(case(flags=["data_leakage"]))
        card = await world.card_for(submitted["id"])
        await world.discord.wait_for(lambda d: d.dms.get(OPS1))
        dm = world.discord.dms[OPS1][0]
        assert dm.content.startswith("🚨 You are on call: stop-the-line case **Expense ER")
        link = f"https://discord.com/channels/{world.discord.guild_id}/{card.channel_id}/{card.id}"
        assert dm.content.endswith(link)
        page = next(m for m in world.discord.messages[CHANNELS["oncall"]] if m.message_reference)
        assert page.content.startswith(f"<@{OPS1}> 🚨 Stop the line")
        assert page.mentions == [OPS1]
        assert page.mention_roles == []


async def test_the_daily_digest_reaches_the_discord_managers_channel(
    sqlite_url: str, tmp_path: Any
) -> None:
    policy = tmp_path / "digest.yaml"
    policy.write_text(
        DISCORD_POLICY.read_text().replace(
            '  weekly: "mon 09:00 Europe/Berlin"',
            '  weekly: "mon 09:00 Europe/Berlin"\n  daily: "mon-sun 09:00 UTC"',
        )
    )
    async with discord_world(sqlite_url, policy=str(policy)) as world:
        await world.api.submit(case(title="@everyone waiting"))
        assert await world.runtime.sla.digest() is True
        await world.discord.wait_for(lambda d: d.messages[CHANNELS["managers"]])
        posted = world.discord.messages[CHANNELS["managers"]][0]
        assert posted.embeds[0]["title"].startswith("Waiting for a person on ")
        assert "review" in posted.embeds[0]["description"]
        assert posted.mention_everyone is False
        assert world.discord.violations == []


def test_the_token_is_never_in_the_settings_repr() -> None:
    settings = discord_settings("sqlite://", "http://127.0.0.1:9/api/v10")
    assert TOKEN not in repr(settings)


async def test_a_person_who_takes_no_dms_is_paged_in_the_channel_once(
    sqlite_url: str, tmp_path: Any
) -> None:
    policy = page_a_person(tmp_path)
    async with discord_world(sqlite_url, policy=str(policy)) as world:
        world.discord.close_dms(OPS1)
        submitted = await world.api.submit(case(flags=["data_leakage"]))
        await world.card_for(submitted["id"])

        def pages(d: Any) -> list[Any]:
            return [m for m in d.messages[CHANNELS["oncall"]] if m.message_reference]

        await world.discord.wait_for(lambda d: pages(d))
        await asyncio.sleep(1.0)  # a retried page would ping again by now
        assert len(pages(world.discord)) == 1
        found = (await world.api.get(f"/v1/escalations/{submitted['id']}")).json()
        page = next(d for d in found["deliveries"] if d["kind"] == "page")
        assert page["status"] == "delivered"


async def test_a_stop_lets_a_decision_being_made_finish_and_answer(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with discord_server() as api:
        async with discord_world(sqlite_url, server=api) as world:
            submitted = await world.api.submit()
            card = await world.card_for(submitted["id"])
            opened = await world.reviewers.click(card, "approve", ALICE)
            decide = world.runtime.service.decide

            async def slow(*args: Any, **kwargs: Any) -> Any:
                await asyncio.sleep(0.5)
                return await decide(*args, **kwargs)

            monkeypatch.setattr(world.runtime.service, "decide", slow)
            answer = asyncio.create_task(
                world.reviewers.submit(opened.data, ALICE, code="policy_match")
            )
            await asyncio.sleep(0.2)  # the decision has begun; now the server stops
        assert told(await answer) == "Recorded: you approved this case."
        async with discord_world(sqlite_url, server=api) as again:
            found = (await again.api.get(f"/v1/escalations/{submitted['id']}")).json()
            assert found["status"] == "approved"
            await api.wait_for(lambda d: d.message(card.channel_id, card.id).edits)  # type: ignore[union-attr]
