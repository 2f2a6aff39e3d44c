"""A Signoff connected to the Discord-compatible test server through the real discord.py
client, and reviewers' hands: button clicks and modal submissions dispatched over the
server's gateway as INTERACTION_CREATE events (real-shaped, from fixtures/discord/)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import discord
import httpx
from discord.gateway import DiscordWebSocket

from adapters.discord import DiscordSurface
from bot.config import Settings
from bot.protocols import Clock
from bot.runtime import Runtime
from tests.conftest import SECRET, Api, http_server
from tests.discord_api import DiscordApi, Message, discord_api

HERE = Path(__file__).parent
DISCORD_POLICY = HERE / "policies" / "discord.yaml"
TOKEN = "test-discord-token"
APPLICATION = "500000000000000001"
GUILD = "100000000000000001"
CHANNELS = {
    "review": "200000000000000001",
    "expert": "200000000000000002",
    "oncall": "200000000000000003",
    "managers": "200000000000000004",
}
ROLES = {
    "reviewers": "300000000000000001",
    "experts": "300000000000000002",
    "oncall": "300000000000000003",
}
# user ID -> (username, roles)
ALICE, BOB, CAROL, DANA, EVE = (f"40000000000000000{n}" for n in range(1, 6))
OPS1, OPS2, OPS3 = "400000000000000011", "400000000000000012", "400000000000000013"
USERS = {
    ALICE: ("alice", []),  # an approver by user ID
    BOB: ("bob", []),  # nobody's approver
    CAROL: ("carol", [ROLES["reviewers"]]),
    DANA: ("dana", [ROLES["reviewers"]]),
    EVE: ("eve", [ROLES["experts"]]),
    OPS1: ("ops1", [ROLES["oncall"]]),
    OPS2: ("ops2", [ROLES["oncall"]]),
    OPS3: ("ops3", [ROLES["oncall"]]),
}
IDENTITIES = {DANA: ["dana@example.com"]}


def discord_settings(url: str, api_url: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "policy": str(DISCORD_POLICY),
        "webhook_secret": SECRET,
        "discord_bot_token": TOKEN,
        "discord_api_url": api_url,
        "discord_identities": IDENTITIES,
        "outbox_poll_interval": 0.2,
        "outbox_max_backoff": 0.5,
    }
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@asynccontextmanager
async def discord_server() -> AsyncIterator[DiscordApi]:
    """The test server with the guild's channels and members; discord.py's globals (the
    REST base and the gateway) put back afterwards."""
    base, gateway = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    try:
        async with discord_api(
            token=TOKEN,
            application_id=APPLICATION,
            guild_id=GUILD,
            channels=list(CHANNELS.values()),
        ) as api:
            for user, (name, roles) in USERS.items():
                api.add_member(user, name, roles=roles)
            yield api
    finally:
        discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


class Reviewers:
    """Reviewers' hands on Discord."""

    def __init__(self, api: DiscordApi) -> None:
        self.api = api

    def card(self, case_id: str) -> Message:
        """The card of a case: the channel message whose buttons carry its ID."""
        for messages in self.api.messages.values():
            for message in messages:
                if any(case_id in i for i in custom_ids(message)) and not message.message_reference:
                    return message
        raise AssertionError(f"no Discord card for case {case_id}")

    async def click(self, message: Message, verb: str, user: str) -> Any:
        wanted = [i for i in custom_ids(message) if i.startswith(f"signoff:{verb}:")]
        assert wanted, f"the card has no {verb} button: {custom_ids(message)}"
        return await self.api.interact(
            self.api.button_click(user, wanted[0], message.id, message.channel_id)
        )

    async def submit(
        self,
        modal: dict[str, Any],
        user: str,
        *,
        code: str | None = None,
        reason: str | None = None,
        question: str | None = None,
        message: Message | None = None,
        strict: bool = True,
    ) -> Any:
        """Submit `modal` as `user` filled it in. With `strict=False`, also what Discord's
        own client would refuse to send (a required field left empty): a forged request."""
        values: dict[str, str | list[str]] = {}
        for label in modal["components"]:
            component = label.get("component") or {}
            cid = component.get("custom_id")
            if cid == "code":
                values[cid] = [code] if code and component.get("type") == 3 else code or ""
                if component.get("type") == 3 and not code:
                    values[cid] = []
            elif cid == "reason":
                values[cid] = reason or ""
            elif cid == "question":
                values[cid] = question or ""
        return await self.api.interact(
            self.api.modal_submit(
                user,
                modal["custom_id"],
                values,
                message.channel_id if message else CHANNELS["review"],
                message.id if message else None,
                strict=strict,
            )
        )

    async def decide(
        self, message: Message, verb: str, user: str, code: str, reason: str | None = None
    ) -> Any:
        """Click, take the modal, fill it in, submit; the submission's answer."""
        opened = await self.click(message, verb, user)
        assert opened.type == 9, f"expected a modal, got {opened.type}: {opened.data}"
        return await self.submit(opened.data, user, code=code, reason=reason, message=message)


def custom_ids(message: Message) -> list[str]:
    return [
        str(item.get("custom_id"))
        for row in message.components or []
        for item in row.get("components", [])
        if item.get("custom_id")
    ]


class DiscordWorld:
    def __init__(self, runtime: Runtime, api: Api, discord_api: DiscordApi) -> None:
        self.runtime = runtime
        self.api = api
        self.discord = discord_api
        self.reviewers = Reviewers(discord_api)

    @property
    def surface(self) -> DiscordSurface:
        found = self.runtime.adapters["discord"]
        assert isinstance(found, DiscordSurface)
        return found

    async def card_for(self, case_id: str) -> Message:
        def found(_: Any) -> bool:
            try:
                self.reviewers.card(case_id)
            except AssertionError:
                return False
            return True

        await self.discord.wait_for(found)
        return self.reviewers.card(case_id)


@asynccontextmanager
async def discord_world(
    database_url: str,
    clock: Clock | None = None,
    *,
    server: DiscordApi | None = None,
    **extra: Any,
) -> AsyncIterator[DiscordWorld]:
    async with _server(server) as api:
        runtime = Runtime(discord_settings(database_url, api.url, **extra), clock=clock)
        await runtime.start()
        try:
            surface = runtime.adapters["discord"]
            assert isinstance(surface, DiscordSurface)
            await surface.wait_ready()
            async with (
                http_server(runtime) as base,
                httpx.AsyncClient(base_url=base, timeout=30) as client,
            ):
                yield DiscordWorld(runtime, Api(client, runtime), api)
        finally:
            await runtime.stop()


@asynccontextmanager
async def _server(given: DiscordApi | None) -> AsyncIterator[DiscordApi]:
    if given is not None:
        yield given
        return
    async with discord_server() as api:
        yield api
