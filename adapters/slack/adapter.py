"""The Slack review surface: cards, thread replies, pages and lookups over the Web API.

Errors from slack_sdk are mapped to `DeliveryFailed` here, so the outbox decides when
to try again: a 429 says when (`Retry-After`), a 5xx or a dropped connection is tried
again with backoff, and a refusal that retrying cannot mend (our blocks refused, the
message gone) is permanent. `not_in_channel` is *not* permanent: inviting the bot
mends it, and the card is then delivered.

A summary's charts go up with `files_upload_v2` (`files:write`), after its text. When
the text went out but the upload failed, the outbox's next try uploads the charts
without posting the text again (remembered by this process).

`chat.postMessage` has no idempotency key, so every message Signoff creates carries
message metadata naming its delivery (`event_type` `signoff_delivery`, payload:
delivery, case and kind). A retried delivery (the process died after Slack took the
post but before its `ts` was stored, or an answer was lost) first reads the
conversation back (`conversations.history`, or `conversations.replies` in a thread,
with `include_all_metadata`, from a little before the delivery was written) and uses
the message it finds instead of posting again. A first try costs no extra call.
Reading needs the `*:history` scopes; posting metadata needs none beyond
`chat:write` (https://docs.slack.dev/messaging/message-metadata).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import escape, fit, render_card
from adapters.text import plain
from bot.protocols import CardView, Delivery, DeliveryFailed, MessageRef, Summary

log = logging.getLogger(__name__)

T = TypeVar("T")
PERMANENT = frozenset(
    {
        "invalid_blocks",
        "invalid_blocks_format",
        "msg_too_long",
        "msg_blocks_too_long",
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
# Message metadata: https://docs.slack.dev/messaging/message-metadata (an event_type
# is a human-readable alphanumeric name; the payload a flat object of strings).
MARKER = "signoff_delivery"
LOOK_BACK = 120.0  # seconds before a delivery was written that its post may carry (clocks)
HISTORY_PAGE = 200  # messages a page (Slack: default 100, at most 999; 200 recommended)
HISTORY_PAGES = 10  # pages read before giving up and posting (a very busy channel)
# lookup errors after which posting is still right (documented on
# https://docs.slack.dev/reference/methods/conversations.history and .replies)
UNREADABLE = frozenset({"missing_scope", "channel_not_found", "not_in_channel", "thread_not_found"})
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


def marker(delivery: Delivery) -> dict[str, Any]:
    """The metadata that names `delivery` on the message it creates."""
    payload = {"delivery": str(delivery.id), "kind": delivery.kind}
    return {"event_type": MARKER, "event_payload": payload | {"case": delivery.case_id or ""}}


def marked(message: dict[str, Any], delivery: Delivery) -> bool:
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != MARKER:
        return False
    payload = metadata.get("event_payload")
    return isinstance(payload, dict) and payload.get("delivery") == str(delivery.id)


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
        # A post that Slack may have made (the connection dropped, a 5xx) must not be
        # sent again blind by slack_sdk: the outbox retries it, after looking for it.
        # Only a 429, which Slack answers without posting, is retried in place.
        self.poster = copy.copy(client)
        self.poster.retry_handlers = [
            h for h in client.retry_handlers if isinstance(h, AsyncRateLimitErrorRetryHandler)
        ]
        self._members = TtlCache(cache_ttl)
        self._profiles = TtlCache(cache_ttl)
        # summaries whose text was posted but whose charts were not: key -> channel ID
        self._summaries_half_done: dict[tuple[str, str, str], str] = {}

    async def _call(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a Web API method through its typed client function (which encodes it as
        Slack expects) and return the answer's data."""
        client = self.poster if method == "chat.postMessage" else self.client
        function = getattr(client, method.replace(".", "_"))
        try:
            response = await function(**params)
        except (TimeoutError, SlackClientError, aiohttp.ClientError) as exc:
            raise delivery_error(exc, method) from exc
        data: dict[str, Any] = response.data if isinstance(response.data, dict) else {}
        return data

    async def _find(
        self, channel: str, delivery: Delivery, thread_ts: str | None = None
    ) -> str | None:
        """The ts of the message `delivery` posted before in `channel` (in the thread of
        `thread_ts`), if one is there; None on a first try, or when none is found."""
        if not delivery.retried:
            return None
        oldest = delivery.created_at.timestamp() - LOOK_BACK
        params: dict[str, Any] = {
            "channel": channel,
            "include_all_metadata": True,
            "oldest": f"{oldest:.6f}",
            "limit": HISTORY_PAGE,
        }
        method = "conversations.history"
        if thread_ts is not None:
            method, params["ts"] = "conversations.replies", thread_ts
        for _ in range(HISTORY_PAGES):
            try:
                data = await self._call(method, **params)
            except DeliveryFailed as failed:
                cause = failed.__cause__
                error = cause.response.get("error") if isinstance(cause, SlackApiError) else None
                if error not in UNREADABLE:
                    raise  # rate limited, Slack down: try the whole delivery again later
                # Installed before the history scopes were asked for (missing_scope), or
                # a conversation we cannot read: post as before (a repeat is possible)
                # rather than never; the post itself reports what is wrong.
                log.warning("Slack %s in %s: %s; posting without looking", method, channel, error)
                return None
            for message in data.get("messages") or []:
                if isinstance(message, dict) and marked(message, delivery):
                    log.info("delivery %s was posted before (ts %s)", delivery.id, message["ts"])
                    return str(message["ts"])
            cursor = (data.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
            params["cursor"] = cursor
        log.warning(
            "delivery %s: no earlier post in %d pages of %s", delivery.id, HISTORY_PAGES, channel
        )
        return None

    async def _post(
        self,
        delivery: Delivery | None,
        channel: str,
        *,
        thread_ts: str | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """`chat.postMessage`, marked with `delivery`; on a retry, the message the
        delivery posted before (`{"channel", "ts"}`) if there is one."""
        if delivery is not None:
            found = await self._find(channel, delivery, thread_ts)
            if found is not None:
                return {"channel": channel, "ts": found}
            params["metadata"] = marker(delivery)
        if thread_ts is not None:
            params["thread_ts"] = thread_ts
        return await self._call("chat.postMessage", channel=channel, **params)

    async def post_card(
        self, channel: str, card: CardView, *, delivery: Delivery | None = None
    ) -> MessageRef:
        rendered = render_card(card)
        data = await self._post(
            delivery,
            channel,
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

    async def notify(
        self,
        ref: MessageRef,
        text: str,
        mentions: Sequence[str] = (),
        *,
        delivery: Delivery | None = None,
    ) -> None:
        said, _ = fit(text, THREAD_TEXT)
        pings = " ".join(mention(m) for m in mentions)
        await self._post(
            delivery,
            ref.ref.get("channel", ref.channel),
            thread_ts=ref.ref["ts"],
            text=f"{pings} {said}".strip(),
            unfurl_links=False,
            unfurl_media=False,
        )

    async def page(
        self,
        target: str,
        card: CardView,
        ref: MessageRef | None,
        *,
        delivery: Delivery | None = None,
    ) -> None:
        # Each message of a page is looked for on its own on a retry (the channel ping
        # in the card's thread, each DM in its conversation): a retried page pings once.
        title, _ = fit(card.title, 300)
        where = ""
        if ref is not None:
            channel = ref.ref.get("channel", ref.channel)
            await self._post(
                delivery,
                channel,
                thread_ts=ref.ref["ts"],
                reply_broadcast=True,
                text=f"{mention(target)} 🚨 Stop the line: *{title}* needs on-call now. "
                "Acknowledge on the card, then decide.",
            )
            link = await self._call("chat.getPermalink", channel=channel, message_ts=ref.ref["ts"])
            where = f" <{link['permalink']}|Open the card>" if link.get("permalink") else ""
        for user in await self._people(target):
            dm = await self._call("conversations.open", users=user)
            await self._post(
                delivery,
                str(dm["channel"]["id"]),
                text=f"🚨 You are on call: stop-the-line case *{title}* needs you.{where}",
            )

    async def _people(self, target: str) -> list[str]:
        if target in SPECIAL:
            return []
        if target[:1] == "S":
            return sorted(await self._group(target))
        return [target]

    async def post_summary(
        self, channel: str, summary: Summary, *, delivery: Delivery | None = None
    ) -> None:
        """The text as a message, then each image uploaded as a file in the channel."""
        text, _ = fit(f"{summary.title}\n{summary.text}", SUMMARY_TEXT)
        key = (channel, text, summary_digest(summary))
        channel_id = self._summaries_half_done.get(key)
        if channel_id is None:
            posted = await self._post(delivery, channel, text=text)
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
