"""The Slack review surface: cards, thread replies, pages and lookups over the Web API.

Errors from slack_sdk are mapped to `DeliveryFailed` here, so the outbox decides when
to try again: a 429 says when (`Retry-After`), a 5xx or a dropped connection is tried
again with backoff, and a refusal that retrying cannot mend (our blocks refused, the
message gone) is permanent. `not_in_channel` is *not* permanent: inviting the bot
mends it, and the card is then delivered.

A summary's charts go up with `files_upload_v2` (`files:write`), after its text. When
the text went out but the upload failed, the outbox's next try uploads the charts
without posting the text again (remembered by this process).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import escape, fit, render_card
from adapters.text import plain
from bot.protocols import CardView, DeliveryFailed, MessageRef, Summary

log = logging.getLogger(__name__)

T = TypeVar("T")
PERMANENT = frozenset(
    {
        "invalid_blocks",
        "invalid_blocks_format",
        "msg_too_long",
        "no_text",
        "invalid_arguments",
        "invalid_form_data",
        "message_not_found",
        "cant_update_message",
        "edit_window_closed",
        "is_archived",
    }
)
THREAD_TEXT = 3500
SUMMARY_TEXT = 39_000
ALT_TEXT = 1000  # characters of a file's alt text
SPECIAL = {"here": "<!here>", "@here": "<!here>", "channel": "<!channel>", "@channel": "<!channel>"}


def mention(entry: str) -> str:
    """An approver or on-call entry (user, user group, `@here`) as a deliberate mention."""
    if entry in SPECIAL:
        return SPECIAL[entry]
    if entry[:1] == "S" and entry.isalnum():
        return f"<!subteam^{entry}>"
    if entry[:1] in "UW" and entry.isalnum():
        return f"<@{entry}>"
    if entry[:1] == "#" and entry[1:].isalnum():
        return f"<#{entry[1:]}>"  # a channel (where an escalated case went)
    return escape(entry)


def delivery_error(exc: Exception, method: str) -> DeliveryFailed:
    """Map what slack_sdk and aiohttp raise to the outbox's terms."""
    if isinstance(exc, SlackApiError):
        status = exc.response.status_code
        error = str(exc.response.get("error", "")) if isinstance(exc.response.data, dict) else ""
        if status == 429:
            after = exc.response.headers.get("Retry-After") or exc.response.headers.get(
                "retry-after"
            )
            seconds = float(after[0] if isinstance(after, list) else after) if after else None
            return DeliveryFailed(f"Slack {method}: rate limited", retry_after=seconds)
        if status >= 500:
            return DeliveryFailed(f"Slack {method}: HTTP {status}")
        return DeliveryFailed(
            f"Slack {method}: {error or f'HTTP {status}'}", permanent=error in PERMANENT
        )
    return DeliveryFailed(f"Slack {method}: {type(exc).__name__}: {exc}")


def summary_digest(summary: Summary) -> str:
    digest = hashlib.sha256()
    for name, data in summary.images:
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


class TtlCache:
    """A small time-bounded cache for lookups (group members, profiles)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._items: dict[str, tuple[float, Any]] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        now = self._clock()
        found = self._items.get(key)
        if found is not None and found[0] > now:
            value: T = found[1]
            return value
        value = await load()
        if len(self._items) > 10_000:
            self._items.clear()
        self._items[key] = (now + self.ttl, value)
        return value


class SlackAdapter:
    platform = "slack"

    def __init__(self, client: AsyncWebClient, *, cache_ttl: float = 60.0) -> None:
        self.client = client
        self._members = TtlCache(cache_ttl)
        self._profiles = TtlCache(cache_ttl)
        # summaries whose text was posted but whose charts were not: key -> channel ID
        self._summaries_half_done: dict[tuple[str, str, str], str] = {}

    async def _call(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a Web API method through its typed client function (which encodes it as
        Slack expects) and return the answer's data."""
        function = getattr(self.client, method.replace(".", "_"))
        try:
            response = await function(**params)
        except (TimeoutError, SlackClientError, aiohttp.ClientError) as exc:
            raise delivery_error(exc, method) from exc
        data: dict[str, Any] = response.data if isinstance(response.data, dict) else {}
        return data

    async def post_card(self, channel: str, card: CardView) -> MessageRef:
        rendered = render_card(card)
        data = await self._call(
            "chat.postMessage",
            channel=channel,
            text=rendered.text,
            blocks=rendered.blocks,
            unfurl_links=False,
            unfurl_media=False,
        )
        return MessageRef(
            self.platform, channel, {"channel": str(data["channel"]), "ts": str(data["ts"])}
        )

    async def update_card(self, ref: MessageRef, card: CardView) -> None:
        rendered = render_card(card)
        await self._call(
            "chat.update",
            channel=ref.ref.get("channel", ref.channel),
            ts=ref.ref["ts"],
            text=rendered.text,
            blocks=rendered.blocks,
        )

    async def notify(self, ref: MessageRef, text: str, mentions: Sequence[str] = ()) -> None:
        said, _ = fit(text, THREAD_TEXT)
        pings = " ".join(mention(m) for m in mentions)
        await self._call(
            "chat.postMessage",
            channel=ref.ref.get("channel", ref.channel),
            thread_ts=ref.ref["ts"],
            text=f"{pings} {said}".strip(),
            unfurl_links=False,
            unfurl_media=False,
        )

    async def page(self, target: str, card: CardView, ref: MessageRef | None) -> None:
        title, _ = fit(card.title, 300)
        where = ""
        if ref is not None:
            channel = ref.ref.get("channel", ref.channel)
            await self._call(
                "chat.postMessage",
                channel=channel,
                thread_ts=ref.ref["ts"],
                reply_broadcast=True,
                text=f"{mention(target)} 🚨 Stop the line: *{title}* needs on-call now. "
                "Acknowledge on the card, then decide.",
            )
            link = await self._call("chat.getPermalink", channel=channel, message_ts=ref.ref["ts"])
            where = f" <{link['permalink']}|Open the card>" if link.get("permalink") else ""
        for user in await self._people(target):
            dm = await self._call("conversations.open", users=user)
            await self._call(
                "chat.postMessage",
                channel=str(dm["channel"]["id"]),
                text=f"🚨 You are on call: stop-the-line case *{title}* needs you.{where}",
            )

    async def _people(self, target: str) -> list[str]:
        if target in SPECIAL:
            return []
        if target[:1] == "S":
            return sorted(await self._group(target))
        return [target]

    async def post_summary(self, channel: str, summary: Summary) -> None:
        """The text as a message, then each image uploaded as a file in the channel."""
        text, _ = fit(f"{summary.title}\n{summary.text}", SUMMARY_TEXT)
        key = (channel, text, summary_digest(summary))
        channel_id = self._summaries_half_done.get(key)
        if channel_id is None:
            posted = await self._call("chat.postMessage", channel=channel, text=text)
            channel_id = str(posted.get("channel") or channel)  # an ID even if given a name
        if not summary.images:
            return
        if len(self._summaries_half_done) > 1000:
            self._summaries_half_done.clear()
        self._summaries_half_done[key] = channel_id
        uploads = [
            {
                "filename": name,
                "content": data,
                "title": name,
                "alt_txt": plain(f"{summary.title}: {name}", ALT_TEXT),  # not mrkdwn
            }
            for name, data in summary.images
        ]
        try:
            await self.client.files_upload_v2(file_uploads=uploads, channel=channel_id)
        except (TimeoutError, SlackClientError, aiohttp.ClientError) as exc:
            raise delivery_error(exc, "files_upload_v2") from exc
        self._summaries_half_done.pop(key, None)

    async def _group(self, group: str) -> set[str]:
        async def load() -> set[str]:
            data = await self._call("usergroups.users.list", usergroup=group)
            return set(data.get("users") or [])

        return await self._members.get(group, load)

    async def identities(self, user_id: str) -> set[str]:
        async def load() -> set[str]:
            data = await self._call("users.info", user=user_id)
            user = data.get("user") or {}
            profile = user.get("profile") or {}
            names = {profile.get("email"), user.get("name")}
            return {str(n).lower() for n in names if n}

        return await self._profiles.get(user_id, load)

    async def is_member(self, user_id: str, entries: Sequence[str]) -> bool:
        if user_id in entries:
            return True
        for entry in entries:
            if entry[:1] == "S" and user_id in await self._group(entry):
                return True
        return False
