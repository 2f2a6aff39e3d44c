"""No duplicate post after a crash: a real `signoff serve` is killed with SIGKILL while
the platform holds its answer to a post it has already made (the message exists; the
server never learns its ID), then started again on the same database. Once the lease
runs out the delivery is claimed again, and the restarted server must find the earlier
post (Slack: by its message metadata in `conversations.history` / `.replies`; Discord:
by the nonce it sends with `enforce_nonce`) instead of posting a second one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text

from bot.protocols import Summary
from bot.store.db import create_engine
from tests.conftest import HERE, SECRET, case, free_port, signed
from tests.discord_api import DiscordApi, discord_api
from tests.slack_api import SlackApi, slack_api

REVIEW, ONCALL = "C0REVIEW", "C0ONCALL"
ON_CALL = ["U0BOB", "U0CAROL"]
USERS = {u: {"name": u.lower(), "email": f"{u.lower()}@example.com"} for u in ON_CALL}
GROUPS = {"S0ONCALL": ON_CALL, "S0REVIEWERS": ["U0ALICE"], "S0EXPERTS": ["U0ALICE"]}
DISCORD_TOKEN = "test-discord-token"
D_REVIEW, D_ONCALL, D_PERSON = "200000000000000001", "200000000000000003", "400000000000000009"
DISCORD_POLICY = f"""
lanes:
  review:
    channels: {{discord: "{D_REVIEW}"}}
    sla: 4h
    approvers: {{discord: ["user:400000000000000001"]}}
  stop_the_line:
    channels: {{discord: "{D_ONCALL}"}}
    page: {{discord: "user:{D_PERSON}"}}
    ack_within: 5m
    sla: 30m
kinds:
  expense_approval:
    reason_codes: [policy_match, other]
rules:
  - if: {{flags_any: [disallowed_content]}}
    lane: stop_the_line
  - if: {{confidence_below: 0.90}}
    lane: review
  - lane: auto
"""
STOP_THE_LINE = {"flags": ["disallowed_content"]}


class Serve:
    """`signoff serve` in a subprocess, started again on the same database after a kill.
    The lease is short so that a delivery in flight at the kill is claimed again in
    about a second."""

    def __init__(self, workdir: Path, database_url: str, extra: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "server.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNOFF_")}
        self.env.update(
            SIGNOFF_DATABASE_URL=database_url,
            SIGNOFF_WEBHOOK_SECRET=SECRET,
            SIGNOFF_PORT=str(self.port),
            SIGNOFF_OUTBOX_LEASE="1",
            SIGNOFF_CALLBACK_TIMEOUT="0.5",
            SIGNOFF_OUTBOX_POLL_INTERVAL="0.1",
            SIGNOFF_OUTBOX_MAX_BACKOFF="0.2",
            SIGNOFF_LOG_LEVEL="INFO",
            **extra,
        )
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        code = "from bot.cli import main; main()"
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", code, "serve", "--port", str(self.port),
                env=self.env, stdout=out, stderr=out,
            )  # fmt: skip
        async with httpx.AsyncClient() as client:
            for _ in range(600):
                if self.proc.returncode is not None:
                    raise AssertionError(f"signoff serve exited:\n{self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.base}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise AssertionError(f"signoff serve did not start:\n{self.tail()}")

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        raw = orjson.dumps(body)
        headers = signed(raw, target=path)
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as client:
            response = await client.post(path, content=raw, headers=headers)
        assert response.status_code in (200, 201), response.text
        found: dict[str, Any] = response.json()
        return found

    async def submit(self, **changes: Any) -> str:
        return str((await self.post("/v1/escalations", case(**changes)))["id"])

    async def cancel(self, case_id: str) -> None:
        await self.post(f"/v1/escalations/{case_id}/cancel", {"reason": "withdrawn"})


async def query(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(text(sql), params)]
    finally:
        await engine.dispose()


async def eventually(
    check: Callable[[], Any], log: Serve | None = None, wait: float = 20.0
) -> None:
    deadline = time.monotonic() + wait
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met" + (f"; log:\n{log.tail()}" if log else ""))
        await asyncio.sleep(0.05)


async def settled(url: str, case_id: str) -> bool:
    rows = await query(url, "SELECT status FROM outbox WHERE case_id = :c", c=case_id)
    return bool(rows) and all(r["status"] == "delivered" for r in rows)


def slack_env(slack: SlackApi) -> dict[str, str]:
    return {
        "SIGNOFF_POLICY": str(HERE / "policies" / "slack.yaml"),
        "SIGNOFF_SLACK_BOT_TOKEN": "xoxb-test",
        "SIGNOFF_SLACK_SIGNING_SECRET": "test-slack-signing-secret",
        "SIGNOFF_SLACK_API_URL": slack.url,
    }


def top_level(slack: SlackApi, channel: str) -> list[Any]:
    return [m for m in slack.messages[channel] if not m.thread_ts and not m.user]


def top_level_posts(slack: SlackApi) -> list[Any]:
    return [c for c in slack.of("chat.postMessage") if not c.params.get("thread_ts")]


# -- Slack ------------------------------------------------------------------------------


async def test_a_slack_card_posted_before_a_kill_is_found_not_posted_again(
    database_url: str, tmp_path: Path
) -> None:
    async with slack_api(users=USERS, groups=GROUPS) as slack:
        slack.epoch = int(time.time())  # ts as Slack's: Unix time, so `oldest` means it
        slack.hold("chat.postMessage", when=lambda p: not p.get("thread_ts"))
        server = Serve(tmp_path, database_url, slack_env(slack))
        await server.start()
        try:
            case_id = await server.submit()
            await eventually(lambda: slack.held, log=server)
            await server.kill()
            assert len(top_level(slack, REVIEW)) == 1  # Slack has the card; we never heard
            await server.start()
            await eventually(lambda: settled(database_url, case_id), log=server)
            await server.cancel(case_id)
            await eventually(lambda: slack.of("chat.update"), log=server)
            await eventually(lambda: settled(database_url, case_id), log=server)
        finally:
            await server.stop()
    [card] = top_level(slack, REVIEW)
    assert len(top_level_posts(slack)) == 1, "the card was posted again after the restart"
    [row] = await query(database_url, "SELECT * FROM cards WHERE case_id = :c", c=case_id)
    assert orjson.loads(row["message_ref"]) == {"channel": REVIEW, "ts": card.ts}
    assert [c.params["ts"] for c in slack.of("chat.update")] == [card.ts]
    assert card.edits == 1
    [withdrawn] = slack.thread(REVIEW, card.ts)
    assert "withdrew" in (withdrawn.text or "")
    [post] = await query(
        database_url, "SELECT * FROM outbox WHERE case_id = :c AND kind = 'post_card'", c=case_id
    )
    assert card.metadata == {
        "event_type": "signoff_delivery",
        "event_payload": {"delivery": str(post["id"]), "kind": "post_card", "case": case_id},
    }
    [looked] = slack.of("conversations.history")  # once, by the restarted server only
    assert looked.params["channel"] == REVIEW
    assert looked.params["include_all_metadata"] in ("1", "true", True)
    assert float(looked.params["oldest"]) < float(card.ts)
    assert 1 <= int(looked.params["limit"]) <= 999


async def test_a_first_try_on_slack_costs_no_lookup(database_url: str, tmp_path: Path) -> None:
    async with slack_api(users=USERS, groups=GROUPS) as slack:
        slack.epoch = int(time.time())
        server = Serve(tmp_path, database_url, slack_env(slack))
        await server.start()
        try:
            case_id = await server.submit()
            await eventually(lambda: settled(database_url, case_id), log=server)
        finally:
            await server.stop()
    assert len(top_level(slack, REVIEW)) == 1
    assert not slack.of("conversations.history")
    assert not slack.of("conversations.replies")


async def test_a_slack_thread_reply_posted_before_a_kill_is_not_replied_again(
    database_url: str, tmp_path: Path
) -> None:
    async with slack_api(users=USERS, groups=GROUPS) as slack:
        slack.epoch = int(time.time())
        slack.hold("chat.postMessage", when=lambda p: bool(p.get("thread_ts")))
        server = Serve(tmp_path, database_url, slack_env(slack))
        await server.start()
        try:
            case_id = await server.submit()
            await eventually(lambda: settled(database_url, case_id), log=server)
            await server.cancel(case_id)
            await eventually(lambda: slack.held, log=server)
            await server.kill()
            await server.start()
            await eventually(lambda: settled(database_url, case_id), log=server)
        finally:
            await server.stop()
    [card] = top_level(slack, REVIEW)
    [reply] = slack.thread(REVIEW, card.ts)
    assert "withdrew" in (reply.text or "")
    assert len([c for c in slack.of("chat.postMessage") if c.params.get("thread_ts")]) == 1
    [looked] = slack.of("conversations.replies")
    assert looked.params["ts"] == card.ts
    assert looked.params["include_all_metadata"] in ("1", "true", True)


async def test_a_slack_page_retried_after_a_kill_pings_each_person_once(
    database_url: str, tmp_path: Path
) -> None:
    """The kill comes while the second DM of the page waits for its answer: the card,
    the ping at the card and the first DM went out; after the restart each is found in
    its own conversation and none is sent again."""
    async with slack_api(users=USERS, groups=GROUPS) as slack:
        slack.epoch = int(time.time())
        slack.hold("chat.postMessage", when=lambda p: p.get("channel") == f"D{ON_CALL[1]}")
        server = Serve(tmp_path, database_url, slack_env(slack))
        await server.start()
        try:
            case_id = await server.submit(**STOP_THE_LINE)
            await eventually(lambda: slack.held, log=server)
            await server.kill()
            await server.start()
            await eventually(lambda: settled(database_url, case_id), log=server)
        finally:
            await server.stop()
    [card] = top_level(slack, ONCALL)
    [ping] = slack.thread(ONCALL, card.ts)
    assert "<!subteam^S0ONCALL>" in (ping.text or "")
    assert ping.reply_broadcast
    for person in ON_CALL:
        [dm] = slack.messages[f"D{person}"]
        assert "on call" in (dm.text or "")
    assert len(slack.of("chat.postMessage")) == 4  # card, ping, two DMs: none twice
    assert {c.params["channel"] for c in slack.of("conversations.history")} >= {
        ONCALL,
        *(f"D{p}" for p in ON_CALL),
    }


async def test_without_the_history_scope_slack_still_gets_the_card(
    database_url: str, tmp_path: Path
) -> None:
    """An app installed before the `*:history` scopes: the lookup is refused
    (`missing_scope`) and the delivery posts as before, rather than never."""
    async with slack_api(users=USERS, groups=GROUPS) as slack:
        slack.epoch = int(time.time())
        slack.scopes = {"chat:write", "im:write", "users:read", "usergroups:read"}
        slack.hold("chat.postMessage", when=lambda p: not p.get("thread_ts"))
        server = Serve(tmp_path, database_url, slack_env(slack))
        await server.start()
        try:
            case_id = await server.submit()
            await eventually(lambda: slack.held, log=server)
            await server.kill()
            await server.start()
            await eventually(lambda: settled(database_url, case_id), log=server)
        finally:
            await server.stop()
    [refused] = slack.of("conversations.history")
    assert refused.response == {
        "ok": False,
        "error": "missing_scope",
        "needed": "channels:history",
        "provided": "chat:write,im:write,usergroups:read,users:read",
    }
    assert len(top_level(slack, REVIEW)) == 2  # the documented cost of not reinstalling
    assert "missing_scope" in server.tail()


# -- Discord ----------------------------------------------------------------------------


def discord_env(tmp_path: Path, api: DiscordApi) -> dict[str, str]:
    policy = tmp_path / "discord.yaml"
    policy.write_text(DISCORD_POLICY)
    return {
        "SIGNOFF_POLICY": str(policy),
        "SIGNOFF_DISCORD_BOT_TOKEN": DISCORD_TOKEN,
        "SIGNOFF_DISCORD_API_URL": api.url,
    }


def creates(api: DiscordApi, channel: str) -> list[Any]:
    return [
        c for c in api.of("POST /channels/{channel_id}/messages") if c.path.split("/")[2] == channel
    ]


async def test_a_discord_card_posted_before_a_kill_is_returned_by_its_nonce(
    database_url: str, tmp_path: Path
) -> None:
    async with discord_api(channels=[D_REVIEW, D_ONCALL]) as api:
        api.hold("POST /channels/{channel_id}/messages")
        server = Serve(tmp_path, database_url, discord_env(tmp_path, api))
        await server.start()
        try:
            case_id = await server.submit()
            await eventually(lambda: api.held, log=server)
            await server.kill()
            await server.start()
            await eventually(lambda: settled(database_url, case_id), log=server)
            await server.cancel(case_id)
            await eventually(lambda: api.of("PATCH /channels/{channel_id}/messages/{message_id}"))
            await eventually(lambda: settled(database_url, case_id), log=server)
        finally:
            await server.stop()
    [card] = [m for m in api.messages[D_REVIEW] if m.embeds]
    first, again = creates(api, D_REVIEW)[:2]
    assert first.json["nonce"] == again.json["nonce"]
    assert again.json["enforce_nonce"] is True
    assert again.response["id"] == card.id  # Discord answered with the first message
    [row] = await query(database_url, "SELECT * FROM cards WHERE case_id = :c", c=case_id)
    assert orjson.loads(row["message_ref"])["message"] == card.id
    [edit] = api.of("PATCH /channels/{channel_id}/messages/{message_id}")
    assert edit.path.endswith(f"/messages/{card.id}")


async def test_a_discord_thread_reply_sent_before_a_kill_is_not_sent_again(
    database_url: str, tmp_path: Path
) -> None:
    async with discord_api(channels=[D_REVIEW, D_ONCALL]) as api:
        api.hold(
            "POST /channels/{channel_id}/messages",
            when=lambda c: c.path.split("/")[2] not in (D_REVIEW, D_ONCALL),  # the thread
        )
        server = Serve(tmp_path, database_url, discord_env(tmp_path, api))
        await server.start()
        try:
            case_id = await server.submit()
            await eventually(lambda: settled(database_url, case_id), log=server)
            await server.cancel(case_id)
            await eventually(lambda: api.held, log=server)
            await server.kill()
            await server.start()
            await eventually(lambda: settled(database_url, case_id), log=server)
        finally:
            await server.stop()
    [card] = [m for m in api.messages[D_REVIEW] if m.embeds]
    [reply] = api.messages[card.id]  # the thread started from the card has its ID
    assert "withdrew" in reply.content
    first, again = creates(api, card.id)
    assert first.json["nonce"] == again.json["nonce"]
    assert again.response["id"] == reply.id


async def test_a_discord_page_retried_after_a_kill_pings_once(
    database_url: str, tmp_path: Path
) -> None:
    """Held: the DM of the page. The card, the ping in the channel and the DM all went
    out; after the restart each create is sent again with its own nonce, and Discord
    returns the first message each time: one ping in the channel, one DM."""
    async with discord_api(channels=[D_REVIEW, D_ONCALL]) as api:
        api.add_member(D_PERSON, "oncall")
        api.hold(
            "POST /channels/{channel_id}/messages",
            when=lambda c: c.path.split("/")[2] not in (D_REVIEW, D_ONCALL),
        )
        server = Serve(tmp_path, database_url, discord_env(tmp_path, api))
        await server.start()
        try:
            case_id = await server.submit(**STOP_THE_LINE)
            await eventually(lambda: api.held, log=server)
            await server.kill()
            await server.start()
            await eventually(lambda: settled(database_url, case_id), log=server)
        finally:
            await server.stop()
    channel = api.messages[D_ONCALL]
    assert len([m for m in channel if m.embeds]) == 1
    assert len([m for m in channel if f"<@{D_PERSON}>" in m.content]) == 1
    [dm_channel] = [c for c in api.channels.values() if c.type == 1]
    [dm] = api.messages[dm_channel.id]
    assert "on call" in dm.content
    nonces = [c.json.get("nonce") for c in api.of("POST /channels/{channel_id}/messages")]
    assert all(isinstance(n, str) and len(n) <= 25 for n in nonces)
    assert len(set(nonces)) == 3  # card, ping, DM: each its own, each sent twice


# -- what the stand-ins enforce, and the adapters' side of it --------------------------


async def test_slack_metadata_and_history_follow_the_documented_rules() -> None:
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    async with slack_api() as slack:
        # this posts a dozen messages into one channel at once: the rules under test
        # here are metadata and history, not the channel's pace (tests/test_pacing.py)
        slack.channel_rate, slack.channel_burst = 50.0, 50
        client = AsyncWebClient(token="xoxb-test", base_url=slack.url, retry_handlers=[])
        for bad, error in [
            ("not json", "invalid_metadata_format"),
            ({"event_type": "a b", "event_payload": {}}, "invalid_metadata_schema"),
            ({"event_type": "x"}, "invalid_metadata_schema"),
        ]:
            with pytest.raises(SlackApiError) as refused:
                await client.chat_postMessage(channel=REVIEW, text="t", metadata=bad)  # type: ignore[arg-type]
            assert refused.value.response["error"] == error
        assert not slack.messages[REVIEW]  # refused, nothing stored
        marker = {"event_type": "signoff_delivery", "event_payload": {"delivery": "1"}}
        posted = [
            await client.chat_postMessage(channel=REVIEW, text=f"m{i}", metadata=marker)
            for i in range(5)
        ]
        await client.chat_postMessage(channel=REVIEW, text="r", thread_ts=posted[0]["ts"])
        plain = await client.conversations_history(channel=REVIEW)
        assert [m["text"] for m in plain["messages"]] == ["m4", "m3", "m2", "m1", "m0"]
        assert all("metadata" not in m for m in plain["messages"])  # not asked for
        seen: list[str] = []
        cursor = None
        while True:
            page = await client.conversations_history(
                channel=REVIEW, include_all_metadata=True, limit=2, cursor=cursor
            )
            assert all(m["metadata"] == marker for m in page["messages"])
            seen += [m["text"] for m in page["messages"]]
            cursor = page["response_metadata"]["next_cursor"]
            assert page["has_more"] == bool(cursor)
            if not cursor:
                break
        assert seen == ["m4", "m3", "m2", "m1", "m0"]
        ts = [p["ts"] for p in posted]
        between = await client.conversations_history(channel=REVIEW, oldest=ts[1], latest=ts[3])
        assert [m["ts"] for m in between["messages"]] == [ts[2]]
        inclusive = await client.conversations_history(
            channel=REVIEW, oldest=ts[1], latest=ts[3], inclusive=True
        )
        assert [m["ts"] for m in inclusive["messages"]] == [ts[3], ts[2], ts[1]]
        thread = await client.conversations_replies(channel=REVIEW, ts=ts[0])
        assert [m["text"] for m in thread["messages"]] == ["m0", "r"]
        slack.outside.add("C0ELSEWHERE")
        for call, error in [
            (client.conversations_history(channel=REVIEW, limit=1000), "invalid_limit"),
            (client.conversations_history(channel=REVIEW, oldest="soon"), "invalid_ts_oldest"),
            (client.conversations_history(channel=REVIEW, cursor="bm9wZQ=="), "invalid_cursor"),
            (client.conversations_history(channel="#review"), "channel_not_found"),
            (client.conversations_history(channel="C0ELSEWHERE"), "not_in_channel"),
            (client.conversations_replies(channel=REVIEW, ts="1.000001"), "thread_not_found"),
        ]:
            with pytest.raises(SlackApiError) as refused:
                await call
            assert refused.value.response["error"] == error


async def test_the_slack_adapter_pages_back_to_an_earlier_post_and_bounds_the_search() -> None:
    from datetime import UTC, datetime

    from slack_sdk.web.async_client import AsyncWebClient

    from adapters.slack.adapter import HISTORY_PAGE, HISTORY_PAGES, SlackAdapter
    from bot.protocols import Delivery
    from tests.slack_api import Message

    async with slack_api() as slack:
        slack.epoch = int(time.time())
        adapter = SlackAdapter(
            AsyncWebClient(token="xoxb-t", base_url=slack.url, retry_handlers=[])
        )
        first = Delivery(7, "c1", "summary", datetime.now(UTC))
        await adapter._post(first, REVIEW, text="the summary")
        for i in range(HISTORY_PAGE + 50):  # a busy channel since: two pages to read
            slack.messages[REVIEW].append(Message(REVIEW, slack.next_ts(), f"chat {i}", None))
        retried = Delivery(7, "c1", "summary", first.created_at, attempts=1)
        found = await adapter._post(retried, REVIEW, text="the summary")
        assert found["ts"] == slack.messages[REVIEW][0].ts
        assert len(slack.of("chat.postMessage")) == 1
        assert len(slack.of("conversations.history")) == 2
        for i in range(HISTORY_PAGE * HISTORY_PAGES):  # busier than the search reads
            slack.messages[REVIEW].append(Message(REVIEW, slack.next_ts(), f"more {i}", None))
        await adapter._post(retried, REVIEW, text="the summary")
        assert len(slack.of("conversations.history")) == 2 + HISTORY_PAGES
        assert len(slack.of("chat.postMessage")) == 2  # given up: posted, never lost


async def test_a_slack_post_answered_with_a_5xx_is_looked_for_not_resent_blind() -> None:
    """Slack made the post but answered 503: slack_sdk's own retry would post it again
    unseen. Only the outbox's retry (which looks first) may send it again."""
    from datetime import UTC, datetime

    from adapters.slack.surface import SlackSurface
    from bot.protocols import Delivery, DeliveryFailed

    async with slack_api() as slack:
        slack.epoch = int(time.time())
        slack.hold("chat.postMessage", status=503)
        surface = SlackSurface("xoxb-t", signing_secret="s", api_url=slack.url)
        first = Delivery(9, "c9", "summary", datetime.now(UTC))
        with pytest.raises(DeliveryFailed):
            await surface.post_summary(REVIEW, Summary("Weekly", "text"), delivery=first)
        assert len(slack.messages[REVIEW]) == 1  # made, though answered 503
        retried = Delivery(9, "c9", "summary", first.created_at, attempts=1)
        await surface.post_summary(REVIEW, Summary("Weekly", "text"), delivery=retried)
    assert len(slack.messages[REVIEW]) == 1
    assert len(slack.of("chat.postMessage")) == 1
    [looked] = slack.of("conversations.history")
    assert looked.params["channel"] == REVIEW


async def test_discord_nonces_are_checked_and_remembered_for_a_few_minutes() -> None:
    async with discord_api(channels=[D_REVIEW]) as api:
        api.add_member(D_PERSON, "oncall")
        headers = {"Authorization": f"Bot {DISCORD_TOKEN}"}
        async with httpx.AsyncClient(base_url=api.url, headers=headers) as client:

            async def create(channel: str, **body: Any) -> httpx.Response:
                return await client.post(f"/channels/{channel}/messages", json=body)

            long = await create(D_REVIEW, content="x", nonce="n" * 26, enforce_nonce=True)
            assert long.status_code == 400
            assert long.json()["code"] == 50035
            assert not api.messages[D_REVIEW]
            dm = (await client.post("/users/@me/channels", json={"recipient_id": D_PERSON})).json()
            one = await create(dm["id"], content="page", nonce="p" * 25, enforce_nonce=True)
            two = await create(dm["id"], content="page", nonce="p" * 25, enforce_nonce=True)
            assert one.json()["id"] == two.json()["id"]
            assert len(api.messages[dm["id"]]) == 1  # a retried DM pings once
            loose = await create(dm["id"], content="page", nonce="p" * 25)  # not enforced
            assert loose.json()["id"] != one.json()["id"]
            api.messages[dm["id"]][0].timestamp = datetime_ago(api.nonce_window + 1)
            api.messages[dm["id"]][1].timestamp = datetime_ago(api.nonce_window + 1)
            late = await create(dm["id"], content="page", nonce="p" * 25, enforce_nonce=True)
            assert late.json()["id"] not in (one.json()["id"], loose.json()["id"])


def datetime_ago(seconds: float) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) - timedelta(seconds=seconds)
