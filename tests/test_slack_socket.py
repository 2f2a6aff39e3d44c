"""Slack in Socket Mode: with an app token and no signing secret, Signoff dials out to
the Slack-compatible server's WebSocket instead of serving `POST /slack/events`; a
reviewer's clicks and modal submissions arrive as envelopes that Bolt must ack."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import ConfigError
from bot.runtime import Runtime
from tests.conftest import Api, http_server
from tests.slack_api import SlackApi, slack_api
from tests.slack_harness import BOT_TOKEN, GROUPS, USERS, Reviewers, slack_settings

APP_TOKEN = "xapp-test"
PING = 0.2  # the server pings this often; a client that does not pong is dropped


@dataclass
class SocketWorld:
    runtime: Runtime
    api: Api
    slack: SlackApi
    reviewers: Reviewers
    client: httpx.AsyncClient


def pending_tasks() -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if not t.done() and t is not current}


@asynccontextmanager
async def socket_world(database_url: str) -> AsyncIterator[SocketWorld]:
    async with slack_api(users=USERS, groups=GROUPS, ping_interval=PING) as slack:
        settings = slack_settings(
            database_url, slack.url, slack_app_token=APP_TOKEN, slack_signing_secret=None
        )
        runtime = Runtime(settings)
        await runtime.start()
        await slack.wait_for(lambda s: s.socket_connected)
        try:
            async with (
                http_server(runtime) as base,
                httpx.AsyncClient(base_url=base, timeout=30) as client,
            ):
                # Reviewers' signing secret is never used: nothing is posted to /slack/events.
                reviewers = Reviewers(client, slack, "unused")
                yield SocketWorld(runtime, Api(client, runtime), slack, reviewers, client)
        finally:
            if runtime.started:
                await runtime.stop()


@pytest.fixture
async def world(sqlite_url: str) -> AsyncIterator[SocketWorld]:
    async with socket_world(sqlite_url) as found:
        yield found


async def status_of(world: SocketWorld, case_id: str) -> dict[str, Any]:
    response = await world.api.get(f"/v1/escalations/{case_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def test_a_click_and_a_submission_over_the_socket_approve_the_case(
    world: SocketWorld,
) -> None:
    slack = world.slack
    opened = slack.of("apps.connections.open")
    assert len(opened) == 2  # the start's check of the token, then the socket's own
    assert {c.headers["authorization"] for c in opened} == {f"Bearer {APP_TOKEN}"}
    assert slack.socket_connected
    assert slack.sockets[0].ticket in (opened[1].response or {})["url"]

    # No signing secret: Socket Mode only, so Slack's HTTP endpoint is not served.
    events = await world.client.post("/slack/events", content=b"payload=%7B%7D")
    assert events.status_code == 404

    submitted = await world.api.submit()
    await slack.wait_for(lambda s: s.of("chat.postMessage"))
    card = world.reviewers.card(submitted["id"])
    click = world.reviewers.click_payload(card, "approve", "U0CAROL")
    ack = await slack.socket_send("block_actions", click, accepts_response_payload=False)
    assert ack == {"envelope_id": slack.envelopes[-1]["envelope_id"]}
    assert slack.envelopes[-1]["type"] == "interactive"

    await slack.wait_for(lambda s: s.of("views.open"))
    view = world.reviewers.opened_view(click["trigger_id"])
    assert view["callback_id"] == "signoff_decide"

    submission = world.reviewers.submission(view, "U0CAROL", code="policy_match", reason="")
    ack = await slack.socket_send("view_submission", submission)
    assert ack == {"envelope_id": slack.envelopes[-1]["envelope_id"]}  # closes the modal

    assert (await status_of(world, submitted["id"]))["status"] == "approved"
    await slack.wait_for(lambda s: s.of("chat.update"))
    await slack.wait_for(lambda s: getattr(s.message(card.channel, card.ts), "edits", 0) >= 1)
    updated = slack.message(card.channel, card.ts)
    assert updated is not None
    assert "Approved* by <@U0CAROL>" in json.dumps(updated.blocks)
    assert slack.of("chat.update")[0].params["ts"] == card.ts

    # One connection the whole time: the client answered the server's pings.
    assert len(slack.sockets) == 1
    assert len(slack.of("apps.connections.open")) == 2
    assert slack.violations == []


async def test_a_refused_submission_comes_back_in_the_ack_payload(world: SocketWorld) -> None:
    slack = world.slack
    submitted = await world.api.submit()
    await slack.wait_for(lambda s: s.of("chat.postMessage"))
    card = world.reviewers.card(submitted["id"])
    click = world.reviewers.click_payload(card, "reject", "U0ALICE")
    await slack.socket_send("block_actions", click, accepts_response_payload=False)
    await slack.wait_for(lambda s: s.of("views.open"))
    view = world.reviewers.opened_view(click["trigger_id"])

    bare = world.reviewers.submission(view, "U0ALICE", code="policy_violation", reason="")
    ack = await slack.socket_send("view_submission", bare)
    assert ack["payload"]["response_action"] == "errors"
    assert "overriding the AI's recommendation" in ack["payload"]["errors"]["reason"]
    assert (await status_of(world, submitted["id"]))["status"] == "pending"

    reasoned = world.reviewers.submission(
        view, "U0ALICE", code="policy_violation", reason="Dinner was for a private party."
    )
    ack = await slack.socket_send("view_submission", reasoned)
    assert "payload" not in ack
    assert (await status_of(world, submitted["id"]))["status"] == "rejected"
    assert slack.violations == []


@pytest.mark.parametrize("how", ["disconnect_notice", "server_closes"])
async def test_the_client_reconnects_when_slack_drops_the_socket(
    world: SocketWorld, how: str
) -> None:
    slack = world.slack
    if how == "disconnect_notice":
        await slack.socket_disconnect("refresh_requested")
    else:
        await slack.close_sockets(1001)
    await slack.wait_for(lambda s: len(s.sockets) == 2 and s.socket_connected)
    assert slack.sockets[0].closed
    assert len(slack.of("apps.connections.open")) == 3

    submitted = await world.api.submit()
    await slack.wait_for(lambda s: s.of("chat.postMessage"))
    card = world.reviewers.card(submitted["id"])
    click = world.reviewers.click_payload(card, "approve", "U0CAROL")
    ack = await slack.socket_send("block_actions", click, accepts_response_payload=False)
    assert "payload" not in ack
    await slack.wait_for(lambda s: s.of("views.open"))
    assert slack.sockets[1].received == [ack]
    assert slack.violations == []


async def test_stop_closes_the_socket_and_leaves_nothing_running(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with slack_api(users=USERS, groups=GROUPS, ping_interval=PING) as slack:
        before = pending_tasks()
        runtime = Runtime(
            slack_settings(
                sqlite_url, slack.url, slack_app_token=APP_TOKEN, slack_signing_secret=None
            )
        )
        await runtime.start()
        await slack.wait_for(lambda s: s.socket_connected)
        await asyncio.sleep(3 * PING)  # a few server pings, answered
        assert len(slack.sockets) == 1

        await runtime.stop()
        assert not runtime.started
        await slack.wait_for(lambda s: not s.socket_connected)
        assert slack.sockets[0].close_code == 1000  # closed by the client, normally
        assert pending_tasks() - before == set()
        assert len(slack.of("apps.connections.open")) == 2  # and it did not reconnect
    del runtime
    gc.collect()  # an unclosed aiohttp session warns here, and warnings are errors
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_refused_app_token_fails_the_start_clearly_and_leaves_nothing_running(
    sqlite_url: str,
) -> None:
    """slack_sdk's socket client would retry a refused token forever: Signoff asks
    `apps.connections.open` first and refuses to start, naming the setting."""
    async with slack_api(users=USERS, groups=GROUPS) as slack:
        before = pending_tasks()
        runtime = Runtime(
            slack_settings(
                sqlite_url, slack.url, slack_app_token="bad-app-token", slack_signing_secret=None
            )
        )
        with pytest.raises(ConfigError) as refused:
            await runtime.start()
        assert str(refused.value) == (
            "Slack refused SIGNOFF_SLACK_APP_TOKEN (invalid_auth): it must be an app-level "
            "token (xapp-...) with the connections:write scope"
        )
        assert not runtime.started
        assert len(slack.of("apps.connections.open")) == 1
        assert slack.sockets == []
        assert pending_tasks() - before == set()
    del runtime
    gc.collect()


async def test_slack_away_at_start_does_not_hold_the_start_up(sqlite_url: str) -> None:
    async with slack_api(users=USERS, groups=GROUPS) as slack:
        slack.outage(True)
        runtime = Runtime(
            slack_settings(
                sqlite_url, slack.url, slack_app_token=APP_TOKEN, slack_signing_secret=None
            )
        )
        await asyncio.wait_for(runtime.start(), 5)
        try:
            assert runtime.started
            slack.outage(False)
            await slack.wait_for(lambda s: s.socket_connected, timeout=30)
        finally:
            await runtime.stop()


async def test_the_fake_hands_out_sockets_for_app_tokens_only() -> None:
    async with slack_api() as slack:
        bot = AsyncWebClient(token=BOT_TOKEN, base_url=slack.url, retry_handlers=[])
        with pytest.raises(SlackApiError) as refused:
            await bot.apps_connections_open(app_token=BOT_TOKEN)
        assert refused.value.response["error"] == "invalid_auth"
        with pytest.raises(SlackApiError) as wrong:
            await bot.auth_test(token=APP_TOKEN)
        assert wrong.value.response["error"] == "invalid_auth"

        opened = await bot.apps_connections_open(app_token=APP_TOKEN)
        url = opened["url"]
        assert url.startswith(slack.url.replace("http://", "ws://").removesuffix("api/"))
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as unknown:
                await session.ws_connect(url.split("?")[0] + "?ticket=forged")
            assert unknown.value.status == 403
            async with session.ws_connect(url) as ws:
                hello = await ws.receive_json(timeout=5)
                assert hello["type"] == "hello"
                assert hello["num_connections"] == 1
                assert hello["connection_info"] == {"app_id": "A0APP"}
                assert set(hello["debug_info"]) >= {"host", "approximate_connection_time"}
                assert slack.socket_connected

                # Slack's envelope, acked by hand
                sending = asyncio.create_task(
                    slack.socket_send("view_submission", {"type": "view_submission"})
                )
                envelope = await ws.receive_json(timeout=5)
                assert set(envelope) == {
                    "envelope_id",
                    "type",
                    "payload",
                    "accepts_response_payload",
                }
                assert envelope["type"] == "interactive"
                assert envelope["accepts_response_payload"] is True
                answer = {"envelope_id": envelope["envelope_id"], "payload": {"ok": 1}}
                await ws.send_json(answer)
                assert await sending == answer
        await slack.wait_for(lambda s: not s.socket_connected)
        assert slack.violations == []
