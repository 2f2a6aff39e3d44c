"""Discord, assembled: a discord.py `Client` in the server's own event loop, the adapter
the outbox delivers through, and the interaction handlers its gateway feeds.

The client asks for no gateway intents at all: interactions arrive whatever the
intents, and with them the clicking member's roles, so neither the privileged
members intent nor a guild cache is needed. REST goes to `SIGNOFF_DISCORD_API_URL`
(discord.py's `Route.BASE`), and the gateway URL is whatever that API's
`GET /gateway/bot` says, so tests and proxies can stand in for discord.com.

At start the bot token is checked once (a token Discord refuses stops the start with
an error naming the setting); if Discord cannot be reached, Signoff starts anyway and
keeps trying in the background, and cards wait in the outbox meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import aiohttp
import discord
import yarl
from discord.gateway import DiscordWebSocket

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.embeds import CardButton
from adapters.discord.interactions import Interaction, Interactions
from adapters.lifecycle import end
from bot.errors import ConfigError
from bot.protocols import Endpoint

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.service import Service

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://discord.com/api/v10"
RETRY_LOGIN = (1.0, 60.0)  # the first and the longest wait between tries to reach Discord


def _no_guilds_intent_warning(record: logging.LogRecord) -> bool:
    """discord.py warns at every start that the guilds intent is off; Signoff needs no
    guild cache (the roles come with each interaction), so it is off on purpose."""
    return not str(record.msg).startswith("Guilds intent seems to be disabled")


class SignoffClient(discord.Client):
    """discord.py's client with Signoff's buttons registered before it connects (so the
    first clicks after a start are not lost) and its forms read from every interaction."""

    def __init__(self, handlers: Interactions | None = None) -> None:
        super().__init__(
            intents=discord.Intents.none(),
            max_ratelimit_timeout=30.0,  # a longer 429 goes back to the outbox's backoff
            chunk_guilds_at_startup=False,
            # With no intents no guild ever arrives on the gateway: nothing to wait for.
            guild_ready_timeout=0.01,
        )
        self.handlers = handlers

    async def setup_hook(self) -> None:
        self.add_dynamic_items(CardButton)

    async def on_card_button(self, interaction: Interaction, verb: str, case_id: str) -> None:
        if self.handlers is not None:
            await self.handlers.click(interaction, verb, case_id)

    async def on_interaction(self, interaction: Interaction) -> None:
        if self.handlers is None:
            return
        if interaction.type is discord.InteractionType.modal_submit:
            await self.handlers.submit(interaction)
        elif interaction.type is discord.InteractionType.component:
            await self.handlers.unknown_button(interaction)


class DiscordSurface(DiscordAdapter):
    def __init__(
        self,
        token: str,
        *,
        api_url: str = DEFAULT_API_URL,
        identities: dict[str, list[str]] | None = None,
    ) -> None:
        # No voice here: no warnings about voice libraries; and no guild cache on purpose.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        logging.getLogger("discord.state").addFilter(_no_guilds_intent_warning)
        client = SignoffClient()
        super().__init__(client, identities=identities)
        self.token = token
        self.api_url = api_url.rstrip("/")
        self.interactions = Interactions(self)
        client.handlers = self.interactions
        self._connecting: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> DiscordSurface:
        assert settings.discord_bot_token is not None
        return cls(
            settings.discord_bot_token.get_secret_value(),
            api_url=settings.discord_api_url,
            identities=settings.discord_identities,
        )

    def routes(self) -> Mapping[str, Endpoint]:
        return {}  # interactions come over the gateway

    @property
    def connected(self) -> bool:
        return self.client.is_ready()

    async def start(self, service: Service) -> None:
        # discord.py reads Route.BASE each time it builds a request, interaction
        # callbacks and webhooks included.
        discord.http.Route.BASE = self.api_url
        self.interactions.bind(service)
        try:
            await self._login()
        except (aiohttp.ClientError, OSError, TimeoutError, discord.HTTPException) as exc:
            log.warning("Discord: cannot reach %s yet (%s); retrying", self.api_url, exc)
            await self._close_http()
            self._connecting = asyncio.create_task(self._keep_trying())
            return
        self._connecting = asyncio.create_task(self._connect())

    async def _login(self) -> None:
        try:
            await asyncio.wait_for(self.client.login(self.token), 10.0)
        except discord.LoginFailure as exc:
            await self._close_http()
            raise ConfigError(
                "Discord refused SIGNOFF_DISCORD_BOT_TOKEN (401 Unauthorized): copy the "
                "token from the Developer Portal's Bot page"
            ) from exc
        self.logged_in = True
        log.info("Discord: logged in as %s", self.client.user)

    async def _close_http(self) -> None:
        """Close the session a failed login opened; the next login opens a new one (with
        a new connector: closing the session closed the old)."""
        await self.client.http.close()
        self.client.http.connector = discord.utils.MISSING

    async def _keep_trying(self) -> None:
        wait = RETRY_LOGIN[0]
        while True:
            await asyncio.sleep(wait)
            try:
                await self._login()
            except ConfigError as exc:
                log.error("Discord: %s", exc)
                return
            except Exception as exc:  # a network error, or one we did not foresee: try on
                log.warning("Discord: still cannot reach %s (%s)", self.api_url, exc)
                await self._close_http()
                wait = min(wait * 2, RETRY_LOGIN[1])
                continue
            await self._connect()
            return

    async def _connect(self) -> None:
        """Connect the gateway (the URL from `GET /gateway/bot`), reconnecting and
        resuming as discord.py does until stopped."""
        while True:
            try:
                _, url, _ = await self.client.http.get_bot_gateway()
                break
            except (discord.DiscordException, aiohttp.ClientError, OSError) as exc:
                log.warning("Discord: GET /gateway/bot failed (%s); retrying", exc)
                await asyncio.sleep(5.0)
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
        log.info("Discord: connecting to the gateway")
        try:
            await self.client.connect(reconnect=True)
        except asyncio.CancelledError:
            raise
        except Exception:  # the gateway gave up (a refused token, intents): say so
            log.exception("Discord: the gateway connection ended")

    async def wait_ready(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        await asyncio.wait_for(self.client.wait_until_ready(), timeout)

    async def stop(self) -> None:
        await self.interactions.drain()  # clicks being handled finish first
        self.interactions.unbind()
        if not self.client.is_closed():
            await self.client.close()
        else:
            await self.client.http.close()
        await end(self._connecting)
        self._connecting = None
        # discord.py's close() leaves the task that waits `guild_ready_timeout` (2 s)
        # after READY for the guilds to arrive (ConnectionState._delay_ready) running,
        # to dispatch `ready` on a closed client: end it here (a private attribute,
        # read defensively).
        ready = getattr(getattr(self.client, "_connection", None), "_ready_task", None)
        if isinstance(ready, asyncio.Task):
            await end(ready)
        self.logged_in = False


__all__ = ["DiscordSurface", "SignoffClient"]
