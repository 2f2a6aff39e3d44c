"""The fake Discord (tests/discord_api.py) answers the real discord.py 2.7.1 client the way
Discord does: login, the gateway (zlib-stream, heartbeats, RESUME), REST, interactions."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Self

import aiohttp
import discord
import discord.gateway
import discord.http
import pytest
import yarl

from tests.discord_api import Callback, DiscordApi, discord_api
from tests.discordkit import check_message, check_modal

TOKEN = "test-discord-token"
APP = "1200000000000000001"
GUILD = "1100000000000000001"
CHANNEL = "1300000000000000001"
ALICE = "1400000000000000001"
ROLE = "1500000000000000001"
Button = discord.ui.Button[discord.ui.View]


@pytest.fixture
async def api() -> AsyncIterator[DiscordApi]:
    async with discord_api(
        token=TOKEN, application_id=APP, guild_id=GUILD, channels=[CHANNEL]
    ) as server:
        server.add_member(ALICE, "alice", roles=[ROLE], global_name="Alice")
        yield server


@pytest.fixture
def redirected(api: DiscordApi) -> Iterator[None]:
    """Point discord.py's class-level REST base and gateway at the fake, then restore them."""
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = api.url
    try:
        yield
    finally:
        discord.http.Route.BASE = base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway


@pytest.fixture
async def client(api: DiscordApi, redirected: None) -> AsyncIterator[discord.Client]:
    # With Intents.none() no GUILD_CREATE follows READY, so discord.py only waits out
    # guild_ready_timeout (2s by default) before it is ready.
    bot = discord.Client(intents=discord.Intents.none(), guild_ready_timeout=0.01)
    await bot.login(TOKEN)
    _, url, _ = await bot.http.get_bot_gateway()
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
    task = asyncio.create_task(bot.connect())
    try:
        async with asyncio.timeout(5):
            await bot.wait_until_ready()
        yield bot
    finally:
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(5):
                await task


def channel_of(bot: discord.Client, channel_id: str = CHANNEL) -> discord.PartialMessageable:
    return bot.get_partial_messageable(
        int(channel_id), guild_id=int(GUILD), type=discord.ChannelType.text
    )


def approval_view() -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(Button(label="Approve", style=discord.ButtonStyle.success, custom_id="ok:1"))
    view.add_item(Button(label="Reject", style=discord.ButtonStyle.danger, custom_id="no:1"))
    view.add_item(Button(label="Docs", url="https://example.com/docs"))
    return view


class ReasonModal(discord.ui.Modal):
    def __init__(self, case: str, seen: list[tuple[list[str], str]]) -> None:
        super().__init__(title=f"Decide {case}", custom_id=f"reason:{case}")
        self.seen = seen
        options = [
            discord.SelectOption(label="Approve", value="approve"),
            discord.SelectOption(label="Reject", value="reject"),
        ]
        self.decision: discord.ui.Select[discord.ui.Modal] = discord.ui.Select(
            custom_id="decision", options=options
        )
        self.reason: discord.ui.TextInput[discord.ui.Modal] = discord.ui.TextInput(
            custom_id="reason", style=discord.TextStyle.paragraph, max_length=500
        )
        self.add_item(discord.ui.Label(text="Decision", component=self.decision))
        self.add_item(discord.ui.Label(text="Reason", component=self.reason))

    async def on_submit(self, interaction: discord.Interaction) -> None:
        self.seen.append((list(self.decision.values), self.reason.value))
        await interaction.response.send_message("Recorded.", ephemeral=True)


SEEN: list[tuple[list[str], str]] = []


class DecideButton(discord.ui.DynamicItem[Button], template=r"decide:(?P<case>[A-Z0-9-]+)"):
    def __init__(self, case: str) -> None:
        super().__init__(Button(label="Decide", custom_id=f"decide:{case}"))
        self.case = case

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> Self:
        return cls(match["case"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(ReasonModal(self.case, SEEN))


@contextlib.contextmanager
def on_interaction(
    bot: discord.Client, handler: Callable[[discord.Interaction], Awaitable[None]]
) -> Iterator[None]:
    """A plain Client has no add_listener: set its `on_interaction` event for a while."""
    bot.on_interaction = handler  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del bot.on_interaction  # type: ignore[attr-defined]


def decide_row(case: str) -> list[dict[str, Any]]:
    button = {"type": 2, "style": 1, "label": "Decide", "custom_id": f"decide:{case}"}
    return [{"type": 1, "components": [button]}]


async def test_login_ready_and_heartbeats(api: DiscordApi, client: discord.Client) -> None:
    assert api.connected
    assert client.user is not None
    assert client.user.id == int(APP)
    assert client.user.bot
    assert client.application_id == int(APP)
    assert api.intents == 0
    connection = api.open_connections[0]
    assert connection.compress == discord.utils._ActiveDecompressionContext.COMPRESSION_TYPE
    await api.wait_for(lambda a: a.open_connections[0].acks >= 1)  # discord.py beats on HELLO
    assert connection.received[0]["op"] == 1
    assert connection.received[1]["op"] == 2
    assert [c.key for c in api.calls][:3] == [
        "GET /users/@me",
        "GET /oauth2/applications/@me",
        "GET /gateway/bot",
    ]


async def test_send_then_edit_a_message_with_an_embed_and_buttons(
    api: DiscordApi, client: discord.Client
) -> None:
    embed = discord.Embed(title="Expense ER-1", description="Approve?", colour=0x2B6CB0)
    embed.add_field(name="Amount", value="$120")
    sent = await channel_of(client).send(
        f"<@{ALICE}> please review",
        embed=embed,
        view=approval_view(),
        allowed_mentions=discord.AllowedMentions.none(),
    )
    stored = api.message(CHANNEL, sent.id)
    assert stored is not None
    assert stored.embeds[0]["title"] == "Expense ER-1"
    assert stored.embeds[0]["fields"] == [{"name": "Amount", "value": "$120", "inline": True}]
    buttons = stored.components[0]["components"]
    assert [b.get("custom_id") for b in buttons] == ["ok:1", "no:1", None]
    assert stored.allowed_mentions == {"parse": []}
    assert stored.mentions == []  # the mention is in the text but pings nobody
    assert sent.embeds[0].title == "Expense ER-1"
    assert sent.author.id == int(APP)
    assert [c.custom_id for c in sent.components[0].children] == ["ok:1", "no:1", None]  # type: ignore[union-attr]

    edited = await sent.edit(content="Approved by Alice", embed=None, view=None)
    assert edited.content == "Approved by Alice"
    assert stored.content == "Approved by Alice"
    assert stored.embeds == []
    assert stored.components == []
    assert len(stored.edits) == 1
    assert stored.edited_timestamp is not None
    assert api.violations == []
    assert api.errors == []

    plain = await channel_of(client).send(f"<@{ALICE}>")  # default allowed mentions: pings
    stored_plain = api.message(CHANNEL, plain.id)
    assert stored_plain is not None
    assert stored_plain.mentions == [ALICE]


async def test_limits_are_enforced_with_invalid_form_body(
    api: DiscordApi, client: discord.Client
) -> None:
    too_many = discord.Embed(title="Fields")
    for i in range(26):
        too_many.add_field(name=f"f{i}", value="v")
    with pytest.raises(discord.HTTPException) as refused:
        await channel_of(client).send(embed=too_many)
    assert refused.value.status == 400
    assert refused.value.code == 50035
    assert "In embeds.0.fields" in refused.value.text
    assert api.messages[CHANNEL] == []
    assert len(api.violations) == 1
    assert "embeds.0.fields: must have at most 25 items, got 26" in api.violations[0]

    too_many.remove_field(25)
    sent = await channel_of(client).send(embed=too_many)
    assert len(api.message(CHANNEL, sent.id).embeds[0]["fields"]) == 25  # type: ignore[union-attr]

    with pytest.raises(discord.HTTPException) as empty:
        await channel_of(client).send("   ")
    assert empty.value.code == 50006


async def test_a_429_is_waited_out_and_the_message_lands_once(
    api: DiscordApi, client: discord.Client
) -> None:
    api.fail("POST /channels/{channel_id}/messages", 429, retry_after=0.2)
    started = time.monotonic()
    await channel_of(client).send("after the limit")
    assert time.monotonic() - started >= 0.2
    assert [c.status for c in api.of("POST /channels/{channel_id}/messages")] == [429, 200]
    assert [m.content for m in api.messages[CHANNEL]] == ["after the limit"]
    assert api.errors == []


async def test_an_outage_answers_503_until_it_ends(api: DiscordApi, client: discord.Client) -> None:
    api.outage()
    with pytest.raises(discord.DiscordServerError):
        await channel_of(client).send("down")
    api.outage(on=False)
    await channel_of(client).send("up")
    assert [m.content for m in api.messages[CHANNEL]] == ["up"]


async def test_unknown_channel_and_message(api: DiscordApi, client: discord.Client) -> None:
    with pytest.raises(discord.NotFound) as channel:
        await channel_of(client, "1999999999999999999").send("nowhere")
    assert channel.value.code == 10003
    with pytest.raises(discord.NotFound) as message:
        await channel_of(client).get_partial_message(1999999999999999999).edit(content="x")
    assert message.value.code == 10008


async def test_a_thread_takes_its_message_id_once(api: DiscordApi, client: discord.Client) -> None:
    sent = await channel_of(client).send("Expense ER-2")
    thread = await sent.create_thread(name="ER-2 discussion")
    assert thread.id == sent.id
    assert thread.parent_id == int(CHANNEL)
    assert thread.type is discord.ChannelType.public_thread
    await thread.send("a reply in the thread")
    assert [m.content for m in api.thread(sent.id)] == ["a reply in the thread"]
    with pytest.raises(discord.HTTPException) as again:
        await sent.create_thread(name="again")
    assert again.value.code == 160004


async def test_a_dm_channel_is_reused_and_files_are_uploaded(
    api: DiscordApi, client: discord.Client
) -> None:
    dm = await client.create_dm(discord.Object(int(ALICE)))
    await dm.send("first")
    client._connection._private_channels.clear()  # forget it: the API hands back the same
    again = await client.create_dm(discord.Object(int(ALICE)))
    assert again.id == dm.id
    await again.send("receipt", file=discord.File(io.BytesIO(b"%PDF-1.7"), "receipt.pdf"))
    sent = api.dms[ALICE]
    assert [m.content for m in sent] == ["first", "receipt"]
    assert [(a.filename, a.data) for a in sent[1].attachments] == [("receipt.pdf", b"%PDF-1.7")]
    assert api.of("POST /channels/{channel_id}/messages")[-1].files[0].field == "files[0]"

    seeded = api.seed_message(str(dm.id), "Expense ER-9", components=decide_row("ER-9"))

    async def defer(interaction: discord.Interaction) -> None:
        assert isinstance(interaction.channel, discord.DMChannel)
        assert interaction.guild_id is None
        assert interaction.user.id == int(ALICE)
        await interaction.response.defer()

    with on_interaction(client, defer):
        answer = await api.interact(api.button_click(ALICE, "decide:ER-9", seeded.id, dm.id))
    assert answer.type == 6

    member = await client.http.get_member(int(GUILD), int(ALICE))
    assert member["roles"] == [ROLE]
    with pytest.raises(discord.NotFound) as unknown:
        await client.http.get_member(int(GUILD), 42)
    assert unknown.value.code == 10007


async def test_button_opens_a_modal_whose_submission_reaches_on_submit(
    api: DiscordApi, client: discord.Client
) -> None:
    SEEN.clear()
    client.add_dynamic_items(DecideButton)
    message = api.seed_message(CHANNEL, "Expense ER-3", components=decide_row("ER-3"))

    opened = await api.interact(api.button_click(ALICE, "decide:ER-3", message.id, CHANNEL))
    assert opened.type == 9
    assert opened.data["custom_id"] == "reason:ER-3"
    assert check_modal(opened.data) == []
    assert opened.elapsed < 1

    submitted = api.modal_submit(
        ALICE, "reason:ER-3", {"decision": ["approve"], "reason": "in budget"}, CHANNEL, message.id
    )
    assert submitted["data"]["components"][0]["type"] == 18
    with pytest.raises(ValueError, match="required"):  # Discord's client would not send it
        api.modal_submit(ALICE, "reason:ER-3", {"reason": "no decision"}, CHANNEL)
    with pytest.raises(ValueError, match="no options"):
        api.modal_submit(ALICE, "reason:ER-3", {"decision": ["maybe"], "reason": "x"}, CHANNEL)
    lax = api.modal_submit(ALICE, "reason:ER-3", {"reason": "x"}, CHANNEL, strict=False)
    assert lax["data"]["components"][0]["component"]["values"] == []
    answer = await api.interact(submitted)
    assert SEEN == [(["approve"], "in budget")]
    assert answer.type == 4
    assert answer.flags == 64
    assert answer.data["content"] == "Recorded."
    assert api.callbacks[submitted["id"]] is answer
    assert api.messages[CHANNEL] == [message]  # the ephemeral answer is not in the channel
    assert api.violations == []


async def test_a_second_acknowledgement_gets_40060(api: DiscordApi, client: discord.Client) -> None:
    message = api.seed_message(CHANNEL, "Expense ER-4", components=decide_row("ER-4"))
    payload = api.button_click(ALICE, "decide:ER-4", message.id, CHANNEL)

    async def defer(interaction: discord.Interaction) -> None:
        await interaction.response.defer()

    with on_interaction(client, defer):
        first = await api.interact(payload)
    assert first.type == 6

    replay = discord.Interaction(data=payload, state=client._connection)  # type: ignore[arg-type]
    with pytest.raises(discord.HTTPException) as twice:
        await replay.response.send_message("again")
    assert twice.value.status == 400
    assert twice.value.code == 40060

    async with aiohttp.ClientSession() as session:
        url = f"{api.url}/interactions/1/not-a-token/callback"
        async with session.post(url, json={"type": 6}) as response:
            assert response.status == 404
            assert response.headers["Content-Type"] == "application/json"
            assert (await response.json())["code"] == 10062


async def test_an_update_and_a_followup(api: DiscordApi, client: discord.Client) -> None:
    message = api.seed_message(CHANNEL, "Expense ER-5", components=decide_row("ER-5"))

    async def update(interaction: discord.Interaction) -> None:
        await interaction.response.edit_message(content="Approved", view=None)
        receipt = discord.File(io.BytesIO(b"id,amount\nER-5,120\n"), "er-5.csv")
        await interaction.followup.send("Thanks", ephemeral=True, file=receipt)
        await interaction.edit_original_response(content="Approved by Alice")

    with on_interaction(client, update):
        payload = api.button_click(ALICE, "decide:ER-5", message.id, CHANNEL)
        answer: Callback = await api.interact(payload)
        await api.wait_for(lambda a: len(message.edits) == 2)
    assert answer.type == 7
    assert answer.message is message
    assert message.content == "Approved by Alice"
    assert message.components == []
    assert [m.content for m in api.followups[payload["token"]]] == ["Thanks"]
    followup = api.followups[payload["token"]][0]
    assert followup.ephemeral
    assert [a.filename for a in followup.attachments] == ["er-5.csv"]
    assert api.of("POST /webhooks/{application_id}/{token}")[0].json["content"] == "Thanks"


async def test_a_late_callback_finds_an_unknown_interaction(
    api: DiscordApi, client: discord.Client
) -> None:
    api.ack_deadline = 0.05  # Discord allows 3s
    message = api.seed_message(CHANNEL, "Expense ER-7", components=decide_row("ER-7"))
    codes: list[int] = []

    async def slow(interaction: discord.Interaction) -> None:
        await asyncio.sleep(0.1)
        try:
            await interaction.response.defer()
        except discord.NotFound as error:
            codes.append(error.code)

    with on_interaction(client, slow):
        await api.dispatch(
            "INTERACTION_CREATE", api.button_click(ALICE, "decide:ER-7", message.id, CHANNEL)
        )
        await api.wait_for(lambda a: bool(codes))
    assert codes == [10062]
    assert "answered after" in api.violations[0]


async def test_a_disconnect_is_resumed_and_interactions_still_arrive(
    api: DiscordApi, client: discord.Client
) -> None:
    client.add_dynamic_items(DecideButton)
    message = api.seed_message(CHANNEL, "Expense ER-6", components=decide_row("ER-6"))
    session = api.session
    assert session is not None
    await api.disconnect(4000)
    # sent while the socket is down: kept in the session and replayed on RESUME
    opened = await api.interact(api.button_click(ALICE, "decide:ER-6", message.id, CHANNEL))
    assert opened.type == 9
    assert session.resumes == 1
    assert api.session is session
    assert len(api.connections) == 2
    assert api.connections[0].close_code == 4000
    resume = next(f for f in api.connections[1].received if f["op"] == 6)
    assert resume["d"]["session_id"] == session.id
    assert resume["d"]["seq"] == 1  # READY; the interaction (s 2) is replayed, then RESUMED
    assert [f["t"] for f in api.connections[1].sent if f["op"] == 0][:2] == [
        "INTERACTION_CREATE",
        "RESUMED",
    ]


async def test_an_invalidated_session_identifies_anew(
    api: DiscordApi, client: discord.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def at_once(shard_id: int | None, *, initial: bool = False) -> None:
        pass  # discord.py sleeps 5s before any identify but the first

    monkeypatch.setattr(client, "before_identify_hook", at_once)
    first = api.session
    await api.invalidate_session(resumable=False)
    await api.wait_for(lambda a: a.session is not first and a.connected)
    message = api.seed_message(CHANNEL, "Expense ER-8", components=decide_row("ER-8"))

    async def defer(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)

    with on_interaction(client, defer):
        answer = await api.interact(api.button_click(ALICE, "decide:ER-8", message.id, CHANNEL))
    assert answer.type == 5
    assert answer.flags == 64
    assert len(api.sessions) == 2


async def test_rest_without_the_bot_token_is_unauthorized(
    api: DiscordApi, redirected: None
) -> None:
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bot wrong"}):
            async with session.get(f"{api.url}/users/@me", headers=headers) as response:
                assert response.status == 401
                assert response.headers["Content-Type"] == "application/json"
                assert await response.json() == {"message": "401: Unauthorized", "code": 0}
    bot = discord.Client(intents=discord.Intents.none())
    try:
        with pytest.raises(discord.LoginFailure):
            await bot.login("wrong")
    finally:
        await bot.close()
    assert [c.status for c in api.of("GET /users/@me")] == [401, 401, 401]


def test_the_limits_checker() -> None:
    assert check_message({"content": "x" * 2000}) == []
    assert check_message({"content": "x" * 2001}) == [
        "content: must be at most 2000 characters, got 2001"
    ]
    embeds = [{"description": "d" * 4000}, {"description": "d" * 2001}]
    assert check_message({"embeds": embeds}) == [
        "embeds: must total at most 6000 characters, got 6001"
    ]
    row = {"type": 1, "components": [{"type": 2, "style": 1, "label": "A", "custom_id": "a"}] * 2}
    assert any("duplicates" in p for p in check_message({"components": [row]}))
    link = {"type": 2, "style": 5, "label": "Docs", "custom_id": "x", "url": "https://e.x"}
    assert check_message({"components": [{"type": 1, "components": [link]}]}) == [
        "components.0.components.0.custom_id: a link button cannot have a custom_id"
    ]
    mentions = {"parse": ["roles"], "roles": ["1"]}
    assert check_message({"content": "x", "allowed_mentions": mentions}) == [
        'allowed_mentions: parse "roles" and a roles list are mutually exclusive'
    ]
    text = {"type": 4, "custom_id": "r", "style": 1, "label": "Reason"}
    legacy = {"custom_id": "m", "title": "T", "components": [{"type": 1, "components": [text]}]}
    assert check_modal(legacy) == []
    assert check_modal(legacy | {"title": "t" * 46}) == [
        "title: must be at most 45 characters, got 46"
    ]
