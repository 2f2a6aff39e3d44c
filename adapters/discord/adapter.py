"""The Discord review surface: cards, thread replies, pages and lookups over REST.

Errors from discord.py are mapped to `DeliveryFailed` here, so the outbox decides when
to try again: a 429 that discord.py would not wait out says when (`retry_after`), a
5xx or a dropped connection is tried again with backoff, and a refusal that retrying
cannot mend (our message refused, the channel or message gone) is permanent. A 403
(missing permissions) is *not* permanent: granting the permission mends it.

Every message Signoff creates carries a `nonce` with `enforce_nonce` (discord.py
sends `enforce_nonce: true` with any nonce), derived from its delivery and the part of
it (a page is a ping and DMs): when a crash lost Discord's answer and the outbox sends
again, Discord returns the first message instead of creating another, within the few
minutes it remembers nonces
(https://discord.com/developers/docs/resources/message#create-message).

Every message is sent with `allowed_mentions` naming exactly who may be pinged: nobody
for cards and summaries, the lane's approvers for a reminder, and the on-call role or
person for a page. Nothing a workflow wrote can ping anyone.
"""

from __future__ import annotations

import hashlib
import io
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import aiohttp
import discord

from adapters.discord.embeds import CONTENT, fit, md, render_card
from adapters.text import plain
from bot.protocols import CardView, Delivery, DeliveryFailed, MessageRef, Summary

log = logging.getLogger(__name__)

T = TypeVar("T")
THREAD_EXISTS = 160004  # "A thread has already been created for this message"
THREAD_NAME = 100
ARCHIVE_AFTER: Literal[10080] = (
    10080  # minutes: a week without messages before Discord hides the thread
)
NOBODY = discord.AllowedMentions.none()
MAX_PEOPLE = 10_000


def delivery_error(exc: Exception, what: str) -> DeliveryFailed:
    """Map what discord.py and aiohttp raise to the outbox's terms."""
    if isinstance(exc, discord.RateLimited):
        return DeliveryFailed(f"Discord {what}: rate limited", retry_after=exc.retry_after)
    if isinstance(exc, discord.HTTPException):
        status = exc.status
        if status == 429:
            after = exc.response.headers.get("Retry-After") if exc.response else None
            return DeliveryFailed(
                f"Discord {what}: rate limited", retry_after=float(after) if after else None
            )
        if status >= 500:
            return DeliveryFailed(f"Discord {what}: HTTP {status}")
        detail = f"HTTP {status} (code {exc.code}): {exc.text}".strip()
        return DeliveryFailed(f"Discord {what}: {detail}", permanent=status in (400, 404))
    return DeliveryFailed(f"Discord {what}: {type(exc).__name__}: {exc}")


NONCE = 25  # characters at most (Create Message, `nonce`)


def nonce_of(delivery: Delivery | None, part: str, fallback: str | None = None) -> str:
    """The nonce of one message (`part`) of `delivery`: 24 hex characters, the same on
    every try of that delivery. Without a delivery (called directly), one from
    `fallback`, or a fresh one (nothing to recognise a repeat by)."""
    seed = f"d{delivery.id}:{part}" if delivery is not None else fallback
    if seed is None:
        return secrets.token_hex(12)
    return hashlib.blake2b(seed.encode(), digest_size=12).hexdigest()[:NONCE]


def _remember(found: set[int], item: int) -> None:
    if len(found) >= MAX_PEOPLE:
        found.clear()
    found.add(item)


def snowflake(text: str) -> int:
    if not text.isdigit():
        raise DeliveryFailed(f"Discord: {text!r} is not a Discord ID", permanent=True)
    return int(text)


def mentions_of(entries: Sequence[str]) -> tuple[str, discord.AllowedMentions]:
    """Approver or on-call entries (`role:ID`, `user:ID`, a bare user ID, `#channel`) as
    deliberate pings, and the allowed mentions that let exactly those through."""
    pings: list[str] = []
    users: list[discord.Object] = []
    roles: list[discord.Object] = []
    for entry in entries:
        kind, _, ident = entry.partition(":") if ":" in entry else ("user", "", entry)
        if entry.startswith("#") and entry[1:].isdigit():
            pings.append(f"<#{entry[1:]}>")
        elif kind == "role" and ident.isdigit():
            pings.append(f"<@&{ident}>")
            roles.append(discord.Object(int(ident)))
        elif kind == "user" and ident.isdigit():
            pings.append(f"<@{ident}>")
            users.append(discord.Object(int(ident)))
    allowed = discord.AllowedMentions(
        everyone=False, users=users or False, roles=roles or False, replied_user=False
    )
    return " ".join(pings), allowed


@dataclass
class Person:
    """What an interaction told us about someone: their roles and names, with when."""

    roles: frozenset[str]
    names: frozenset[str]
    seen: float = field(default_factory=time.monotonic)


class DiscordAdapter:
    platform = "discord"

    def __init__(
        self, client: discord.Client, *, identities: dict[str, list[str]] | None = None
    ) -> None:
        self.client = client
        self.logged_in = False
        self.mapped = {k: {n.strip().lower() for n in v} for k, v in (identities or {}).items()}
        self.people: dict[str, Person] = {}
        self._threads: set[int] = set()
        self._no_threads: set[int] = set()
        self._guilds: dict[int, int] = {}

    # -- what interactions tell us ----------------------------------------------------

    def saw(self, user: discord.User | discord.Member) -> None:
        """Remember who clicked: their roles (which come with every interaction, so no
        privileged members intent is needed) and the names Discord knows them by."""
        # Without the guild cache (no intents) `Member.roles` resolves nothing; the IDs
        # that came with the interaction are in `_roles`.
        ids = getattr(user, "_roles", None)
        if ids is None:
            ids = [r.id for r in getattr(user, "roles", ())]
        roles = frozenset(str(i) for i in ids)
        names = {user.name, user.global_name}
        if len(self.people) >= MAX_PEOPLE:
            self.people.clear()
        self.people[str(user.id)] = Person(roles, frozenset(n.lower() for n in names if n))

    async def identities(self, user_id: str) -> set[str]:
        known = self.people.get(user_id)
        return set(self.mapped.get(user_id, set())) | (set(known.names) if known else set())

    async def is_member(self, user_id: str, entries: Sequence[str]) -> bool:
        known = self.people.get(user_id)
        roles = known.roles if known else frozenset()
        for entry in entries:
            kind, _, ident = entry.partition(":")
            if (kind == "user" and ident == user_id) or (kind == "role" and ident in roles):
                return True
        return False

    # -- deliveries ---------------------------------------------------------------------

    async def _call(self, what: str, work: Callable[[], Awaitable[T]]) -> T:
        if not self.logged_in:
            raise DeliveryFailed("Discord: not logged in yet")
        try:
            return await work()
        except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise delivery_error(exc, what) from exc

    def _channel(self, channel: str) -> discord.PartialMessageable:
        return self.client.get_partial_messageable(snowflake(channel))

    async def post_card(
        self, channel: str, card: CardView, *, delivery: Delivery | None = None
    ) -> MessageRef:
        rendered = render_card(card)
        # A card's nonce is its case and channel, whichever row posts it: one card per
        # case and channel, also when a second row (or a direct call) posts it again.
        nonce = nonce_of(None, "card", f"{card.case_id}:{channel}")
        sent = await self._call(
            "send card",
            lambda: self._channel(channel).send(
                embed=rendered.embed, view=rendered.view, allowed_mentions=NOBODY, nonce=nonce
            ),
        )
        title = plain(card.title, THREAD_NAME) or f"Case {card.case_id}"
        return MessageRef(
            self.platform, channel, {"channel": channel, "message": str(sent.id), "title": title}
        )

    async def update_card(self, ref: MessageRef, card: CardView) -> None:
        rendered = render_card(card)
        message = self._channel(ref.ref.get("channel", ref.channel)).get_partial_message(
            snowflake(ref.ref["message"])
        )
        await self._call(
            "edit card",
            lambda: message.edit(embed=rendered.embed, view=rendered.view, allowed_mentions=NOBODY),
        )

    async def _thread(self, ref: MessageRef) -> discord.PartialMessageable | None:
        """The case's thread, started from the card on first use (a thread started from
        a message has the message's ID, so nothing more needs storing). None where no
        thread can be started (the bot lacks *Create Public Threads*, or the channel
        takes none): the reply then goes to the channel, as a reply to the card."""
        message_id = snowflake(ref.ref["message"])
        if message_id in self._no_threads:
            return None
        if message_id not in self._threads:
            channel_id = snowflake(ref.ref.get("channel", ref.channel))
            name = " ".join((ref.ref.get("title") or "").split())[:THREAD_NAME] or "Signoff case"
            try:
                await self._call(
                    "start thread",
                    lambda: self.client.http.start_thread_with_message(
                        channel_id, message_id, name=name, auto_archive_duration=ARCHIVE_AFTER
                    ),
                )
            except DeliveryFailed as failed:
                cause = failed.__cause__
                code = cause.code if isinstance(cause, discord.HTTPException) else None
                status = cause.status if isinstance(cause, discord.HTTPException) else None
                if status in (400, 403) and code != THREAD_EXISTS:
                    log.warning(
                        "Discord: no thread on card %s in %s (%s); replying in the channel",
                        message_id,
                        channel_id,
                        failed,
                    )
                    _remember(self._no_threads, message_id)
                    return None
                if code != THREAD_EXISTS:
                    raise
            _remember(self._threads, message_id)
        return self.client.get_partial_messageable(message_id)

    async def notify(
        self,
        ref: MessageRef,
        text: str,
        mentions: Sequence[str] = (),
        *,
        delivery: Delivery | None = None,
    ) -> None:
        thread = await self._thread(ref)
        pings, allowed = mentions_of(mentions)
        said, _ = fit(text, CONTENT - len(pings) - 1)
        content = f"{pings} {said}".strip()
        nonce = nonce_of(delivery, "reply")
        if thread is not None:
            await self._call(
                "thread reply",
                lambda: thread.send(content=content, allowed_mentions=allowed, nonce=nonce),
            )
            return
        await self._reply(ref, "reply", content, allowed, nonce)

    async def _reply(
        self,
        ref: MessageRef,
        what: str,
        content: str,
        allowed: discord.AllowedMentions,
        nonce: str,
    ) -> None:
        """A message in the card's channel, as a reply to the card."""
        channel = self._channel(ref.ref.get("channel", ref.channel))
        card = channel.get_partial_message(snowflake(ref.ref["message"]))
        await self._call(
            what,
            lambda: channel.send(
                content=content,
                allowed_mentions=allowed,
                reference=card.to_reference(fail_if_not_exists=False),
                nonce=nonce,
            ),
        )

    async def page(
        self,
        target: str,
        card: CardView,
        ref: MessageRef | None,
        *,
        delivery: Delivery | None = None,
    ) -> None:
        pings, allowed = mentions_of([target])
        title, _ = fit(card.title, 300)
        if ref is not None:
            text = (
                f"{pings} 🚨 Stop the line: **{title}** needs on-call now. "
                "Acknowledge on the card, then decide."
            )
            nonce = nonce_of(delivery, "page")
            await self._reply(ref, "page", text, allowed, nonce)
        kind, _, ident = target.partition(":")
        if kind == "user" and ident.isdigit():
            where = await self._jump(ref) if ref is not None else ""
            try:
                dm = await self._call(
                    "open DM", lambda: self.client.create_dm(discord.Object(int(ident)))
                )
                dm_nonce = nonce_of(delivery, f"dm:{ident}")
                await self._call(
                    "page by DM",
                    lambda: dm.send(
                        content=f"🚨 You are on call: stop-the-line case **{title}** needs "
                        f"you.{where}",
                        allowed_mentions=NOBODY,
                        nonce=dm_nonce,
                    ),
                )
            except DeliveryFailed as failed:
                if not isinstance(failed.__cause__, discord.Forbidden):
                    raise
                # The person takes no DMs from the server's members: trying again will
                # not change that. The ping in the channel is the page.
                if ref is None:
                    raise DeliveryFailed(
                        f"Discord: cannot page {target} by DM and the lane has no Discord "
                        f"channel ({failed})",
                        permanent=True,
                    ) from failed
                log.warning("Discord: %s takes no DMs; paged in the channel only", target)

    async def _jump(self, ref: MessageRef) -> str:
        """A link to the card, for a DM (the channel's server looked up once)."""
        channel_id = snowflake(ref.ref.get("channel", ref.channel))
        if channel_id not in self._guilds:
            try:
                found: Any = await self.client.fetch_channel(channel_id)
            except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError):
                return ""
            guild = getattr(found, "guild", None)
            if guild is None:
                return ""
            self._guilds[channel_id] = guild.id
        return f" https://discord.com/channels/{self._guilds[channel_id]}/{channel_id}/{ref.ref['message']}"

    async def post_summary(
        self, channel: str, summary: Summary, *, delivery: Delivery | None = None
    ) -> None:
        text, _ = fit(summary.text, 4096)
        embed = discord.Embed(title=plain(summary.title, 256), description=text)
        files = [discord.File(io.BytesIO(data), filename=name) for name, data in summary.images]
        nonce = nonce_of(delivery, "summary")
        await self._call(
            "summary",
            lambda: self._channel(channel).send(
                embed=embed, files=files, allowed_mentions=NOBODY, nonce=nonce
            ),
        )


__all__ = ["DiscordAdapter", "Person", "delivery_error", "md", "mentions_of"]
