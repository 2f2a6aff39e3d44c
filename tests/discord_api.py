"""A Discord-compatible API on 127.0.0.1 for tests, driven by the real discord.py client.

REST lives under `/api/v10` (set `discord.http.Route.BASE` to `api.url`); the gateway is a
WebSocket at `/gateway` (`GET /gateway/bot` hands out its URL). The server stores what the
bot posts, checks every message and modal against Discord's documented limits
(tests/discordkit.py, independent of discord.py), answers as Discord does (exact
`Content-Type: application/json`, 429s with `Via` and `retry_after`, error codes such as
10003/10008/10062/40060/50035/160004), and can fail on demand (`fail`, `outage`).

Over the gateway it sends HELLO, answers IDENTIFY with READY and RESUME with a replay and
RESUMED, acks heartbeats, and speaks `compress=zlib-stream` (one zlib stream per
connection, each frame flushed with Z_SYNC_FLUSH) or `zstd-stream` when discord.py asks
for it. `interact` delivers an INTERACTION_CREATE and waits for the bot's callback;
`button_click`, `select_choice` and `modal_submit` build real-shaped interactions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import math
import re
import secrets
import time
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

from tests.conftest import free_port
from tests.discord_limits import LIMITS, most
from tests.discordkit import (
    Problem,
    errors_object,
    errors_tree,
    message_problems,
    modal_problems,
    thread_problems,
)

API_VERSION = 10
DISCORD_EPOCH_MS = 1_420_070_400_000
EPHEMERAL = 1 << 6
LOADING = 1 << 7
HAS_THREAD = 1 << 5
ATTACHMENT_SIZE_LIMIT = most("file.size")  # the default a server without boosts has
PERMISSIONS = "2248473465835073"  # what a member and the app may do in the channel
HEARTBEAT_INTERVAL_MS = 41250
MESSAGE_TYPES = {2, 3}  # interaction types that carry a message component / modal submit
CALLBACK_NAMES = {1: "PONG", 4: "CHANNEL_MESSAGE_WITH_SOURCE", 5: "DEFERRED_CHANNEL_MESSAGE"}
CALLBACK_NAMES |= {6: "DEFERRED_UPDATE_MESSAGE", 7: "UPDATE_MESSAGE", 9: "MODAL"}
# interaction type -> the callback types Discord accepts for it
CALLBACKS_FOR = {3: {4, 5, 6, 7, 9}, 5: {4, 5, 6, 7}, 2: {4, 5, 9}, 4: {8}, 1: {1}}
AUTO_ARCHIVE = {60, 1440, 4320, 10080}
# Create Message: `nonce` is an integer or a string of at most 25 characters; with
# `enforce_nonce` a second create by the same author with the same nonce "in the past
# few minutes" returns the first message
# (https://discord.com/developers/docs/resources/message#create-message). "A few
# minutes" is taken as 2: the shortest reading, so a test cannot lean on more.
NONCE_WINDOW = 120.0  # seconds


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true")


class ApiError(Exception):
    """Answer the request with Discord's error JSON."""

    def __init__(
        self, status: int, code: int, message: str, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message, "code": self.code}
        return out | ({"errors": self.errors} if self.errors else {})


def invalid_form(problems: Sequence[Problem | str]) -> ApiError:
    found = [p for p in problems if isinstance(p, Problem)]
    lines = [p for p in problems if isinstance(p, str)]
    errors = errors_tree(found) if not lines else errors_object([str(p) for p in problems])
    return ApiError(400, 50035, "Invalid Form Body", errors)


@dataclass
class File:
    """A multipart file part (`files[n]`) as the client uploaded it."""

    field: str
    filename: str
    data: bytes
    content_type: str | None = None


@dataclass
class Attachment:
    id: str
    filename: str
    data: bytes
    content_type: str | None = None
    description: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class Call:
    method: str
    route_template: str  # "/channels/{channel_id}/messages", or the path when unknown
    path: str  # below /api/v10
    json: Any
    headers: dict[str, str]  # lower-cased names
    files: list[File] = field(default_factory=list)
    status: int = 200
    query: dict[str, str] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)
    response: Any = None
    injected: bool = False  # answered by fail()/outage()

    @property
    def key(self) -> str:
        return f"{self.method} {self.route_template}"


@dataclass
class Message:
    id: str
    channel_id: str
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    allowed_mentions: dict[str, Any] | None = None
    message_reference: dict[str, Any] | None = None
    attachments: list[Attachment] = field(default_factory=list)
    edits: list[dict[str, Any]] = field(default_factory=list)  # each edit's body, in order
    flags: int = 0
    timestamp: datetime = field(default_factory=now)
    edited_timestamp: datetime | None = None
    mentions: list[str] = field(default_factory=list)  # user ids the message pinged
    mention_roles: list[str] = field(default_factory=list)
    mention_everyone: bool = False
    nonce: str | int | None = None
    interaction_id: str | None = None  # set when an interaction response/follow-up made it
    webhook_id: str | None = None
    thread_id: str | None = None  # the thread started from this message
    deleted: bool = False

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)


@dataclass
class Channel:
    id: str
    type: int  # 0 guild text, 1 DM, 11 public thread
    guild_id: str | None = None
    name: str | None = None
    parent_id: str | None = None
    recipient_id: str | None = None  # a DM's user
    owner_id: str | None = None
    auto_archive_duration: int = 1440
    created: datetime = field(default_factory=now)
    last_message_id: str | None = None
    message_count: int = 0


@dataclass
class Member:
    user_id: str
    username: str
    roles: list[str] = field(default_factory=list)
    global_name: str | None = None
    nick: str | None = None
    joined_at: datetime = field(default_factory=lambda: datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))

    def user(self) -> dict[str, Any]:
        return {
            "id": self.user_id,
            "username": self.username,
            "global_name": self.global_name,
            "discriminator": "0",
            "avatar": None,
            "public_flags": 0,
            "avatar_decoration_data": None,
        }

    def to_dict(self, permissions: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "user": self.user(),
            "roles": list(self.roles),
            "joined_at": iso(self.joined_at),
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "premium_since": None,
            "communication_disabled_until": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
        }
        return out | ({"permissions": permissions} if permissions is not None else {})


@dataclass
class Callback:
    """The bot's answer to an interaction (`POST /interactions/{id}/{token}/callback`)."""

    interaction_id: str
    token: str
    type: int  # 4 message, 5 deferred message, 6 deferred update, 7 update, 9 modal
    data: dict[str, Any]
    files: list[File]
    elapsed: float  # seconds from the INTERACTION_CREATE being sent to the callback
    message: Message | None = None  # the message it created or updated

    @property
    def flags(self) -> int:
        return int(self.data.get("flags") or 0)


@dataclass
class Interaction:
    id: str
    token: str
    payload: dict[str, Any]
    sent_at: float | None = None
    callback: Callback | None = None
    original: Message | None = None  # what `/messages/@original` refers to
    followups: list[Message] = field(default_factory=list)


@dataclass
class Failure:
    status: int
    times: int
    retry_after: float


@dataclass(eq=False)
class Session:
    id: str
    intents: int | None
    seq: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)  # dispatches, for RESUME
    connection: Connection | None = None
    resumes: int = 0


class Compressor:
    """The gateway's transport compression: a single stream per connection."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "zlib-stream":
            self.zlib = zlib.compressobj()
        else:  # zstd-stream: only requested when discord.py itself has a zstd module
            try:
                from zstandard import (  # type: ignore[import-not-found]
                    COMPRESSOBJ_FLUSH_BLOCK,
                    ZstdCompressor,
                )
            except ImportError:  # Python 3.14's compression.zstd
                from compression import zstd  # type: ignore[import-not-found]

                self.stdlib: Any = zstd.ZstdCompressor()
                self.flush_mode: Any = zstd.ZstdCompressor.FLUSH_BLOCK
                self.zstd: Any = None
            else:
                self.zstd = ZstdCompressor().compressobj()
                self.flush_mode = COMPRESSOBJ_FLUSH_BLOCK

    def __call__(self, data: bytes) -> bytes:
        if self.kind == "zlib-stream":
            return self.zlib.compress(data) + self.zlib.flush(zlib.Z_SYNC_FLUSH)
        if self.zstd is not None:
            return bytes(self.zstd.compress(data) + self.zstd.flush(self.flush_mode))
        return bytes(self.stdlib.compress(data, self.flush_mode))


@dataclass(eq=False)
class Connection:
    """One gateway WebSocket, as the server holds it."""

    ws: web.WebSocketResponse
    compress: str | None
    session: Session | None = None
    received: list[dict[str, Any]] = field(default_factory=list)  # the client's frames
    sent: list[dict[str, Any]] = field(default_factory=list)
    heartbeats: int = 0
    acks: int = 0
    closed: bool = False
    close_code: int | None = None  # as we closed it, or as the client did
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    compressor: Compressor | None = None

    def __post_init__(self) -> None:
        if self.compress:
            self.compressor = Compressor(self.compress)

    async def send(self, frame: dict[str, Any]) -> None:
        data = json.dumps(frame, separators=(",", ":"))
        async with self.lock:
            if self.closed or self.ws.closed:
                raise ConnectionResetError("the gateway connection is closed")
            self.sent.append(frame)
            if self.compressor is not None:
                await self.ws.send_bytes(self.compressor(data.encode()))
            else:
                await self.ws.send_str(data)

    async def close(self, code: int, reason: str = "") -> None:
        self.close_code = self.close_code or code
        with contextlib.suppress(Exception):  # the client may be gone already
            await self.ws.close(code=code, message=reason.encode())
        self.closed = True


Handler = Callable[[Call, dict[str, str]], Awaitable[Any]]


@dataclass
class Route:
    method: str
    template: str
    handler: Handler
    auth: bool
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        self.pattern = re.compile(regex)


class Snowflakes:
    """Discord ids: milliseconds since 2015 << 22, worker 1, increment; always increasing."""

    def __init__(self) -> None:
        self.last = 0

    def __call__(self) -> str:
        stamp = int(time.time() * 1000) - DISCORD_EPOCH_MS
        value = max((stamp << 22) | (1 << 17), self.last + 1)
        self.last = value
        return str(value)


def numbered(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The components as Discord returns them: each carries a numeric `id`."""
    out = copy.deepcopy(components)
    counter = 0

    def walk(items: Iterable[Any]) -> None:
        nonlocal counter
        for item in items:
            if not isinstance(item, dict):
                continue
            counter += 1
            item.setdefault("id", counter)
            walk(item.get("components") or [])
            walk([c for c in (item.get("component"), item.get("accessory")) if c])

    walk(out)
    return out


def find_component(components: Iterable[Any], custom_id: str) -> dict[str, Any] | None:
    for item in components:
        if not isinstance(item, dict):
            continue
        if item.get("custom_id") == custom_id:
            return item
        inner = [*(item.get("components") or []), item.get("component"), item.get("accessory")]
        found = find_component([c for c in inner if c], custom_id)
        if found is not None:
            return found
    return None


class DiscordApi:
    """The fake Discord. Build it with `discord_api(...)`, which serves it on a free port."""

    def __init__(
        self,
        token: str = "test-discord-token",  # noqa: S107
        application_id: str = "1200000000000000001",
        guild_id: str = "1100000000000000001",
        channels: Iterable[str | int] | Mapping[str | int, str] = (),
        bot_name: str = "Signoff",
        heartbeat_interval: int = HEARTBEAT_INTERVAL_MS,
    ) -> None:
        self.token = token
        self.application_id = str(application_id)
        self.bot_id = self.application_id  # a bot user shares its application's id
        self.bot_name = bot_name
        self.guild_id = str(guild_id)
        self.heartbeat_interval = heartbeat_interval
        self.url = ""  # http://127.0.0.1:PORT/api/v10, set when served
        self.gateway_url = ""  # ws://127.0.0.1:PORT/gateway
        self.verify_key = secrets.token_hex(32)
        self.snowflake = Snowflakes()
        self.ack_deadline = 3.0  # seconds Discord waits for an interaction callback
        self.delay = 0.0  # seconds to wait before answering any REST call

        self.channels: dict[str, Channel] = {}
        self.members: dict[str, Member] = {}
        self.messages: defaultdict[str, list[Message]] = defaultdict(list)
        self.deleted: list[Message] = []
        self.calls: list[Call] = []
        self.violations: list[str] = []
        self.failures: dict[str, list[Failure]] = {}
        self.down = False
        self.dm_closed: set[str] = set()  # users whose DMs answer 50007

        self.interactions: dict[str, Interaction] = {}
        self.callbacks: dict[str, Callback] = {}  # interaction id -> its callback
        self.followups: defaultdict[str, list[Message]] = defaultdict(list)  # by token
        self.modals: list[dict[str, Any]] = []  # every modal the bot opened
        self.forbidden: set[str] = set()  # routes answering 403 50013 (see forbid)
        self.holds: list[tuple[str, list[int], Callable[[Call], bool] | None]] = []
        self.held: list[Call] = []  # calls done but not answered
        self.released = asyncio.Event()
        self.nonce_window = NONCE_WINDOW
        self.waiters: dict[str, asyncio.Future[Callback]] = {}
        # Rate limits (https://discord.com/developers/docs/topics/rate-limits): per-route
        # buckets, counted per top-level resource (channel_id), told in X-RateLimit-*
        # headers. Discord publishes no numbers ("should not be hard coded"); creating
        # messages is 5 per 5 s per channel as observed (discord/discord-api-docs#20), and
        # every bot request counts against the global 50 a second.
        self.message_limit, self.message_window = 5, 5.0
        self.global_limit = 50  # requests a second, interactions excepted
        self.buckets: dict[tuple[str, str], list[float]] = {}  # (route, id) -> [reset, used]
        self.global_window: list[float] = [0.0, 0.0]  # [reset, used]
        self.ratelimited: list[Call] = []  # answered 429 for a limit (not fail())

        self.sessions: list[Session] = []
        self.connections: list[Connection] = []  # every gateway connection, open or closed
        self.intents: int | None = None  # as last identified

        self.routes = self.build_routes()
        names = channels.items() if isinstance(channels, Mapping) else ((c, None) for c in channels)
        for number, (channel_id, name) in enumerate(names, 1):
            self.add_channel(channel_id, name=name or f"channel-{number}")

    # -- registries ----------------------------------------------------------------------

    def add_channel(self, channel_id: str | int, name: str | None = None, type: int = 0) -> Channel:
        """A guild text channel (type 0) of `guild_id` that the bot may post to."""
        channel = Channel(str(channel_id), type, guild_id=self.guild_id, name=name)
        self.channels[channel.id] = channel
        return channel

    def add_member(
        self,
        user_id: str | int,
        username: str,
        roles: Iterable[str | int] = (),
        global_name: str | None = None,
        nick: str | None = None,
    ) -> Member:
        member = Member(str(user_id), username, [str(r) for r in roles], global_name, nick)
        self.members[member.user_id] = member
        return member

    def seed_message(
        self,
        channel_id: str | int,
        content: str = "",
        embeds: list[dict[str, Any]] | None = None,
        components: list[dict[str, Any]] | None = None,
    ) -> Message:
        """A message the bot posted before the test began (say, before a restart)."""
        channel = self.channels[str(channel_id)]
        message = Message(self.snowflake(), channel.id, content, embeds or [], components or [])
        self.store(message)
        return message

    def close_dms(self, user_id: str | int) -> None:
        """Messages to this user's DM channel get 403 50007, as when they block DMs."""
        self.dm_closed.add(str(user_id))

    # -- assertions ----------------------------------------------------------------------

    def of(self, route: str) -> list[Call]:
        """Calls of `"METHOD /template"`, e.g. `"POST /channels/{channel_id}/messages"`."""
        return [call for call in self.calls if call.key == route]

    @property
    def errors(self) -> list[Call]:
        """Calls Discord refused (4xx/5xx) other than those fail()/outage() injected."""
        return [call for call in self.calls if call.status >= 400 and not call.injected]

    def message(self, channel_id: str | int, message_id: str | int) -> Message | None:
        return next((m for m in self.messages[str(channel_id)] if m.id == str(message_id)), None)

    def thread(self, message_id: str | int) -> list[Message]:
        """Messages in the thread started from `message_id` (its id is the thread's)."""
        channel = self.channels.get(str(message_id))
        return list(self.messages[channel.id]) if channel and channel.type == 11 else []

    @property
    def dms(self) -> dict[str, list[Message]]:
        """User id -> the messages in the bot's DM channel with them."""
        out: dict[str, list[Message]] = {}
        for channel in self.channels.values():
            if channel.type == 1 and channel.recipient_id:
                out[channel.recipient_id] = list(self.messages[channel.id])
        return out

    def dm_channel(self, user_id: str | int) -> Channel | None:
        return next(
            (c for c in self.channels.values() if c.type == 1 and c.recipient_id == str(user_id)),
            None,
        )

    async def wait_for(self, predicate: Callable[[DiscordApi], Any], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                seen = ", ".join(f"{c.key}:{c.status}" for c in self.calls)
                raise AssertionError(
                    f"Discord API condition not met within {timeout}s; calls: [{seen}]; "
                    f"violations: {self.violations}"
                )
            await asyncio.sleep(0.01)

    # -- failure injection ---------------------------------------------------------------

    def fail(
        self, route: str = "*", status: int = 429, times: int = 1, retry_after: float = 0.2
    ) -> None:
        """Answer the next `times` calls of `"METHOD /template"` ("*" = any) with `status`."""
        if status not in (429, 500, 502, 503, 504):
            raise ValueError(f"fail() injects 429 or 5xx, not {status}")
        self.failures.setdefault(route, []).append(Failure(status, times, retry_after))

    def forbid(self, route: str, on: bool = True) -> None:
        """`"METHOD /template"` answers 403 Missing Permissions (50013), as when the bot's
        role lacks a permission, until allowed again."""
        if on:
            self.forbidden.add(route)
        else:
            self.forbidden.discard(route)

    def hold(self, route: str, times: int = 1, when: Callable[[Call], bool] | None = None) -> None:
        """Do the next `times` calls of `route` (that pass `when`) but keep their answer
        back until `release`: the message is stored, the client never hears, as when
        the connection dies after Discord took the request."""
        self.holds.append((route, [times], when))

    def holding(self, call: Call) -> bool:
        for route, left, when in self.holds:
            if route == call.key and left[0] > 0 and (when is None or when(call)):
                left[0] -= 1
                return True
        return False

    def release(self) -> None:
        self.holds.clear()
        self.released.set()

    def nonced(self, nonce: str | int) -> Message | None:
        """The bot's message created with `nonce` within the nonce window, if any."""
        since = now().timestamp() - self.nonce_window
        for messages in self.messages.values():
            for message in messages:
                if message.nonce == nonce and message.timestamp.timestamp() >= since:
                    return message
        return None

    def outage(self, on: bool = True) -> None:
        """Every REST call answers 503 until turned off; the gateway stays up."""
        self.down = on

    def injected(self, key: str) -> Failure | None:
        if self.down:
            return Failure(503, 1, 0)
        for route in (key, "*"):
            queue = self.failures.get(route, [])
            if queue:
                queue[0].times -= 1
                return queue.pop(0) if queue[0].times <= 0 else queue[0]
        return None

    # -- HTTP ----------------------------------------------------------------------------

    def build_routes(self) -> list[Route]:
        table: list[tuple[str, str, Handler, bool]] = [
            ("GET", "/gateway", self.get_gateway, False),
            ("GET", "/gateway/bot", self.get_gateway_bot, True),
            ("GET", "/users/@me", self.get_me, True),
            ("GET", "/oauth2/applications/@me", self.get_application, True),
            ("POST", "/users/@me/channels", self.create_dm, True),
            ("GET", "/channels/{channel_id}", self.get_channel, True),
            ("POST", "/channels/{channel_id}/messages", self.create_message, True),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self.get_message, True),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self.edit_message, True),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self.delete_message, True),
            (
                "POST",
                "/channels/{channel_id}/messages/{message_id}/threads",
                self.start_thread,
                True,
            ),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member, True),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self.callback, False),
            ("POST", "/webhooks/{application_id}/{token}", self.create_followup, False),
        ]
        webhook_message = "/webhooks/{application_id}/{token}/messages/{message_id}"
        table += [
            ("GET", webhook_message, self.get_webhook_message, False),
            ("PATCH", webhook_message, self.edit_webhook_message, False),
            ("DELETE", webhook_message, self.delete_webhook_message, False),
        ]
        return [Route(*row) for row in table]

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """The route for `path`, its parameters, and whether the path exists at all."""
        exists = False
        for route in self.routes:
            found = route.pattern.fullmatch(path)
            if found:
                exists = True
                if route.method == method:
                    return route, found.groupdict(), True
        return None, {}, exists

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/gateway":
            return await self.gateway(request)
        prefix = f"/api/v{API_VERSION}"
        if not request.path.startswith(prefix + "/"):
            return reply(404, {"message": "404: Not Found", "code": 0})
        path = request.path.removeprefix(prefix)
        route, params, exists = self.match(request.method, path)
        headers = {k.lower(): v for k, v in request.headers.items()}
        call = Call(request.method, route.template if route else path, path, None, headers)
        call.query = dict(request.query)
        self.calls.append(call)
        if self.delay:
            await asyncio.sleep(self.delay)
        try:
            call.json, call.files = await read_body(request)
        except ApiError as error:
            return self.answer(call, error.status, error.body())
        failure = self.injected(call.key)
        if failure is not None:
            call.injected = True
            return self.inject(call, failure)
        if route is None:
            if exists:
                return self.answer(call, 405, {"message": "405: Method Not Allowed", "code": 0})
            return self.answer(call, 404, {"message": "404: Not Found", "code": 0})
        if route.auth and headers.get("authorization") != f"Bot {self.token}":
            return self.answer(call, 401, {"message": "401: Unauthorized", "code": 0})
        if call.key in self.forbidden:
            return self.answer(call, 403, {"message": "Missing Permissions", "code": 50013})
        if route.auth and (limited := self.over_limit(call, params)) is not None:
            return limited
        try:
            body = await route.handler(call, params)
        except ApiError as error:
            return self.answer(call, error.status, error.body())
        if self.holding(call):
            self.held.append(call)
            await self.released.wait()  # the client may be gone by then
        return self.answer(call, 200 if body is not None else 204, body)

    def bucket_of(self, call: Call, params: Mapping[str, str]) -> tuple[str, str] | None:
        """The limited bucket a call counts against, if any: message creation per channel."""
        if call.key == "POST /channels/{channel_id}/messages":
            return call.key, params.get("channel_id", "")
        return None

    def over_limit(self, call: Call, params: Mapping[str, str]) -> web.Response | None:
        """Count `call` against the global limit and its route's bucket; a 429 past
        either, with the documented body {message, retry_after, global} and headers."""
        now = time.monotonic()
        if now >= self.global_window[0]:
            self.global_window[:] = [now + 1.0, 0.0]
        if self.global_window[1] >= self.global_limit:
            wait = self.global_window[0] - now
            headers = {"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"}
            return self.limited(call, wait, True, headers)
        key = self.bucket_of(call, params)
        if key is not None:
            window = self.buckets.setdefault(key, [now + self.message_window, 0.0])
            if now >= window[0]:
                window[:] = [now + self.message_window, 0.0]
            if window[1] >= self.message_limit:
                headers = self.limit_headers(call, key) | {"X-RateLimit-Scope": "user"}
                return self.limited(call, window[0] - now, False, headers)
            window[1] += 1
        self.global_window[1] += 1
        return None

    def limit_headers(self, call: Call, key: tuple[str, str]) -> dict[str, str]:
        reset, used = self.buckets[key]
        after = max(0.0, reset - time.monotonic())
        return {
            "X-RateLimit-Limit": str(self.message_limit),
            "X-RateLimit-Remaining": str(max(0, self.message_limit - int(used))),
            "X-RateLimit-Reset": f"{time.time() + after:.3f}",
            "X-RateLimit-Reset-After": f"{after:.3f}",
            "X-RateLimit-Bucket": f"{abs(hash(call.route_template)) % 16**12:012x}",
        }

    def limited(
        self, call: Call, wait: float, is_global: bool, headers: dict[str, str]
    ) -> web.Response:
        self.ratelimited.append(call)
        body = {"message": "You are being rate limited.", "retry_after": round(wait, 3)}
        body |= {"global": is_global, "code": 0}
        call.status, call.response = 429, body
        # `Via` marks a 429 from Discord's API rather than from Cloudflare (discord.py
        # checks for it).
        headers |= {"Via": "1.1 google", "Retry-After": str(max(1, math.ceil(wait)))}
        return reply(429, body, headers)

    def answer(self, call: Call, status: int, body: Any) -> web.Response:
        call.status, call.response = status, body
        bucket = f"{abs(hash(call.route_template)) % 16**12:012x}"
        route, params, _ = self.match(call.method, call.path)
        key = self.bucket_of(call, params) if route is not None else None
        if key is not None and key in self.buckets:
            return reply(status, body, self.limit_headers(call, key))
        headers = {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "49",
            "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
            "X-RateLimit-Reset-After": "1.000",
            "X-RateLimit-Bucket": bucket,
        }
        return reply(status, body, headers)

    def inject(self, call: Call, failure: Failure) -> web.Response:
        call.status = failure.status
        if failure.status == 429:
            body = {"message": "You are being rate limited.", "retry_after": failure.retry_after}
            body |= {"global": False, "code": 0}
            call.response = body
            headers = {
                "Via": "1.1 google",
                "Retry-After": str(math.ceil(failure.retry_after)),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + failure.retry_after:.3f}",
                "X-RateLimit-Reset-After": f"{failure.retry_after:.3f}",
                "X-RateLimit-Bucket": f"{abs(hash(call.route_template)) % 16**12:012x}",
                "X-RateLimit-Scope": "user",
            }
            return reply(429, body, headers)
        names = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
        text = f"{failure.status}: {names.get(failure.status, 'Gateway Timeout')}"
        call.response = {"message": text, "code": 0}
        return reply(failure.status, call.response)

    # -- REST handlers -------------------------------------------------------------------

    def bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "username": self.bot_name,
            "global_name": None,
            "discriminator": "4821",
            "avatar": None,
            "public_flags": 0,
            "flags": 0,
            "bot": True,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
        }

    def user_json(self, user_id: str) -> dict[str, Any]:
        if user_id == self.bot_id:
            return self.bot_user()
        member = self.members.get(user_id)
        if member is not None:
            return member.user()
        return Member(user_id, f"user{user_id[-6:]}").user()

    async def get_gateway(self, call: Call, p: dict[str, str]) -> Any:
        return {"url": self.gateway_url}

    async def get_gateway_bot(self, call: Call, p: dict[str, str]) -> Any:
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        return {"url": self.gateway_url, "shards": 1, "session_start_limit": limit}

    async def get_me(self, call: Call, p: dict[str, str]) -> Any:
        extra = {"mfa_enabled": False, "locale": "en-US", "verified": True, "email": None}
        return self.bot_user() | extra | {"premium_type": 0, "bio": ""}

    async def get_application(self, call: Call, p: dict[str, str]) -> Any:
        owner: dict[str, Any] = {"id": "1000000000000000001", "username": "owner"}
        owner["global_name"] = "Owner"
        owner |= {"discriminator": "0", "avatar": None, "public_flags": 0, "flags": 0}
        return {
            "id": self.application_id,
            "name": self.bot_name,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "hook": True,
            "bot_public": False,
            "bot_require_code_grant": False,
            "verify_key": self.verify_key,
            "owner": owner,
            "team": None,
            "flags": 0,
            "bot": self.bot_user(),
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "approximate_guild_count": 1,
            "integration_types_config": {"0": {}},
        }

    def channel_json(self, channel: Channel) -> dict[str, Any]:
        out: dict[str, Any] = {"id": channel.id, "type": channel.type, "flags": 0}
        out["last_message_id"] = channel.last_message_id
        if channel.type == 1:
            return out | {"recipients": [self.user_json(channel.recipient_id or "0")]}
        out |= {"guild_id": channel.guild_id, "name": channel.name, "rate_limit_per_user": 0}
        if channel.type == 11:
            metadata = {
                "archived": False,
                "auto_archive_duration": channel.auto_archive_duration,
                "archive_timestamp": iso(channel.created),
                "locked": False,
                "create_timestamp": iso(channel.created),
            }
            member = {"id": channel.id, "user_id": self.bot_id, "flags": 1}
            member["join_timestamp"] = iso(channel.created)
            return out | {
                "parent_id": channel.parent_id,
                "owner_id": channel.owner_id,
                "message_count": channel.message_count,
                "total_message_sent": channel.message_count,
                "member_count": 1,
                "thread_metadata": metadata,
                "member": member,
            }
        position = list(self.channels).index(channel.id)
        return out | {
            "position": position,
            "permission_overwrites": [],
            "parent_id": None,
            "nsfw": False,
            "topic": None,
        }

    def message_json(self, message: Message) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": 19 if message.message_reference else 0,
            "id": message.id,
            "channel_id": message.channel_id,
            "author": self.bot_user(),
            "content": message.content,
            "timestamp": iso(message.timestamp),
            "edited_timestamp": iso(message.edited_timestamp),
            "tts": False,
            "mention_everyone": message.mention_everyone,
            "mentions": [self.user_json(u) for u in message.mentions],
            "mention_roles": list(message.mention_roles),
            "attachments": [self.attachment_json(message, a) for a in message.attachments],
            "embeds": [embed | {"type": embed.get("type", "rich")} for embed in message.embeds],
            "components": numbered(message.components),
            "pinned": False,
            "flags": message.flags,
        }
        if message.nonce is not None:
            out["nonce"] = message.nonce
        if message.webhook_id:
            out |= {"webhook_id": message.webhook_id, "application_id": self.application_id}
        if message.interaction_id and message.interaction_id in self.interactions:
            payload = self.interactions[message.interaction_id].payload
            user = (payload.get("member") or {}).get("user") or payload.get("user")
            out["interaction_metadata"] = {
                "id": message.interaction_id,
                "type": payload["type"],
                "user": user,
                "authorizing_integration_owners": payload["authorizing_integration_owners"],
            }
        if message.message_reference:
            reference: dict[str, Any] = {"type": 0, "channel_id": message.channel_id}
            reference |= message.message_reference
            reference.pop("fail_if_not_exists", None)
            out["message_reference"] = reference
            target = self.message(reference["channel_id"], reference.get("message_id", ""))
            if target is not None:
                out["referenced_message"] = self.message_json(target)
        return out

    def attachment_json(self, message: Message, attachment: Attachment) -> dict[str, Any]:
        base = self.url.removesuffix(f"/api/v{API_VERSION}")
        url = f"{base}/attachments/{message.channel_id}/{attachment.id}/{attachment.filename}"
        out = {"id": attachment.id, "filename": attachment.filename, "size": attachment.size}
        out |= {"url": url, "proxy_url": url, "content_type": attachment.content_type}
        return out | ({"description": attachment.description} if attachment.description else {})

    def channel_or_404(self, channel_id: str) -> Channel:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise ApiError(404, 10003, "Unknown Channel")
        return channel

    def message_or_404(self, channel_id: str, message_id: str) -> Message:
        message = self.message(channel_id, message_id)
        if message is None:
            raise ApiError(404, 10008, "Unknown Message")
        return message

    def check(self, call: Call, problems: Sequence[Problem | str]) -> None:
        if problems:
            self.violations += [f"{call.key}: {problem}" for problem in problems]
            raise invalid_form(problems)

    def body_of(self, call: Call) -> dict[str, Any]:
        if not isinstance(call.json, dict):
            raise ApiError(400, 50109, "The request body contains invalid JSON.")
        return call.json

    def attachments_of(self, body: dict[str, Any], files: list[File]) -> list[Attachment]:
        out: list[Attachment] = []
        described = {str(a.get("id")): a for a in body.get("attachments") or [] if "id" in a}
        if len(files) > most("files"):
            what = f"must have at most {most('files')} files, got {len(files)}"
            raise invalid_form([Problem("files", what, **LIMITS["files"].error())])
        if sum(len(f.data) for f in files) > most("request.size"):
            raise ApiError(413, 40005, "Request entity too large")
        for file in files:
            if len(file.data) > ATTACHMENT_SIZE_LIMIT:
                raise ApiError(413, 40005, "Request entity too large")
            index = file.field.removeprefix("files[").removesuffix("]")
            meta = described.get(index, {})
            filename = meta.get("filename") or file.filename
            out.append(
                Attachment(
                    self.snowflake(),
                    filename,
                    file.data,
                    file.content_type,
                    meta.get("description"),
                )
            )
        return out

    def resolve_mentions(self, message: Message) -> None:
        allowed = message.allowed_mentions
        parse = set(allowed.get("parse") or []) if allowed is not None else {"users", "roles"}
        if allowed is None:
            parse.add("everyone")
        users = [str(u) for u in (allowed or {}).get("users") or []]
        roles = [str(r) for r in (allowed or {}).get("roles") or []]
        content = message.content
        message.mentions = [
            u
            for u in dict.fromkeys(re.findall(r"<@!?(\d+)>", content))
            if "users" in parse or u in users
        ]
        message.mention_roles = [
            r
            for r in dict.fromkeys(re.findall(r"<@&(\d+)>", content))
            if "roles" in parse or r in roles
        ]
        pinged = "@everyone" in content or "@here" in content
        message.mention_everyone = pinged and "everyone" in parse

    def new_message(
        self, channel_id: str, body: dict[str, Any], files: list[File], call: Call
    ) -> Message:
        """Check a create body and build (but do not store) the message."""
        attachments = self.attachments_of(body, files)
        empty = not (body.get("content") or "").strip() and not body.get("embeds")
        others = body.get("components") or body.get("poll") or body.get("sticker_ids")
        if empty and not others and not attachments:
            raise ApiError(400, 50006, "Cannot send an empty message")
        self.check(call, message_problems(body))
        message = Message(self.snowflake(), channel_id, body.get("content") or "")
        message.embeds = list(body.get("embeds") or [])
        message.components = list(body.get("components") or [])
        message.allowed_mentions = body.get("allowed_mentions")
        message.attachments = attachments
        message.flags = int(body.get("flags") or 0) & (EPHEMERAL | 1 << 2 | 1 << 12 | 1 << 15)
        message.nonce = body.get("nonce")
        self.resolve_mentions(message)
        return message

    def store(self, message: Message) -> None:
        self.messages[message.channel_id].append(message)
        channel = self.channels.get(message.channel_id)
        if channel is not None:
            channel.last_message_id = message.id
            channel.message_count += channel.type == 11

    def apply_edit(
        self, message: Message, body: dict[str, Any], files: list[File], call: Call
    ) -> None:
        self.check(call, message_problems(body))
        if "attachments" in body or files:
            keep = {str(a.get("id")) for a in body.get("attachments") or []}
            kept = [a for a in message.attachments if a.id in keep]
            message.attachments = kept + self.attachments_of(body, files)
        for key in ("content", "embeds", "components", "allowed_mentions"):
            if key in body:
                default: Any = "" if key == "content" else None if key == "allowed_mentions" else []
                setattr(message, key, body[key] if body[key] is not None else default)
        if "flags" in body and body["flags"] is not None:
            message.flags = (message.flags & EPHEMERAL) | (int(body["flags"]) & ~EPHEMERAL)
        message.flags &= ~LOADING
        shown = message.content.strip() or message.embeds or message.components
        if not shown and not message.attachments and not message.flags & (1 << 15):
            raise ApiError(400, 50006, "Cannot send an empty message")
        message.edits.append(copy.deepcopy(body))
        message.edited_timestamp = now()

    async def create_message(self, call: Call, p: dict[str, str]) -> Any:
        channel = self.channel_or_404(p["channel_id"])
        if channel.type == 1 and channel.recipient_id in self.dm_closed:
            raise ApiError(403, 50007, "Cannot send messages to this user")
        body = self.body_of(call)
        nonce = body.get("nonce")  # its type and length are checked with the message
        if body.get("enforce_nonce") and nonce is not None:
            earlier = self.nonced(nonce)
            if earlier is not None:
                return self.message_json(earlier)
        message = self.new_message(channel.id, body, call.files, call)
        reference = body.get("message_reference")
        if reference:
            target_channel = str(reference.get("channel_id") or channel.id)
            target = self.message(target_channel, str(reference.get("message_id")))
            if target is None and reference.get("fail_if_not_exists", True):
                unknown = {
                    "code": "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                    "message": "Unknown message",
                }
                errors = {"message_reference": {"_errors": [unknown]}}
                raise ApiError(400, 50035, "Invalid Form Body", errors)
            if target is not None:
                message.message_reference = {"message_id": target.id, "channel_id": target_channel}
                if channel.guild_id:
                    message.message_reference["guild_id"] = channel.guild_id
        self.store(message)
        return self.message_json(message)

    async def get_message(self, call: Call, p: dict[str, str]) -> Any:
        self.channel_or_404(p["channel_id"])
        return self.message_json(self.message_or_404(p["channel_id"], p["message_id"]))

    async def edit_message(self, call: Call, p: dict[str, str]) -> Any:
        self.channel_or_404(p["channel_id"])
        message = self.message_or_404(p["channel_id"], p["message_id"])
        self.apply_edit(message, self.body_of(call), call.files, call)
        return self.message_json(message)

    async def delete_message(self, call: Call, p: dict[str, str]) -> Any:
        self.channel_or_404(p["channel_id"])
        message = self.message_or_404(p["channel_id"], p["message_id"])
        self.remove(message)
        return None

    def remove(self, message: Message) -> None:
        message.deleted = True
        self.deleted.append(message)
        with contextlib.suppress(ValueError):
            self.messages[message.channel_id].remove(message)

    async def get_channel(self, call: Call, p: dict[str, str]) -> Any:
        return self.channel_json(self.channel_or_404(p["channel_id"]))

    async def start_thread(self, call: Call, p: dict[str, str]) -> Any:
        parent = self.channel_or_404(p["channel_id"])
        message = self.message_or_404(parent.id, p["message_id"])
        if parent.type not in (0, 5):
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        body = self.body_of(call)
        name = body.get("name")
        duration = body.get("auto_archive_duration")
        self.check(call, thread_problems(body))
        if message.thread_id is not None:
            raise ApiError(400, 160004, "A thread has already been created for this message")
        thread = Channel(message.id, 11, guild_id=parent.guild_id, name=name, parent_id=parent.id)
        thread.owner_id = self.bot_id
        thread.auto_archive_duration = duration or 4320
        self.channels[thread.id] = thread
        message.thread_id = thread.id
        message.flags |= HAS_THREAD
        return self.channel_json(thread)

    async def create_dm(self, call: Call, p: dict[str, str]) -> Any:
        body = self.body_of(call)
        recipient = str(body.get("recipient_id", ""))
        if not recipient.isdigit():
            coerce = {"code": "NUMBER_TYPE_COERCE", "message": "Value is not snowflake."}
            raise ApiError(400, 50035, "Invalid Form Body", {"recipient_id": {"_errors": [coerce]}})
        if recipient not in self.members:
            raise ApiError(404, 10013, "Unknown User")
        channel = self.dm_channel(recipient)
        if channel is None:
            channel = Channel(self.snowflake(), 1, recipient_id=recipient)
            self.channels[channel.id] = channel
        return self.channel_json(channel)

    async def get_member(self, call: Call, p: dict[str, str]) -> Any:
        if p["guild_id"] != self.guild_id:
            raise ApiError(404, 10004, "Unknown Guild")
        member = self.members.get(p["user_id"])
        if member is None:
            raise ApiError(404, 10007, "Unknown Member")
        return member.to_dict()

    # -- interactions --------------------------------------------------------------------

    def interaction_or_404(self, interaction_id: str, token: str) -> Interaction:
        interaction = self.interactions.get(interaction_id)
        if interaction is None or interaction.token != token:
            raise ApiError(404, 10062, "Unknown interaction")
        return interaction

    def interacted_message(self, interaction: Interaction) -> Message | None:
        raw = interaction.payload.get("message")
        if not raw:
            return None
        return self.message(raw.get("channel_id", ""), raw.get("id", ""))

    async def callback(self, call: Call, p: dict[str, str]) -> Any:
        interaction = self.interaction_or_404(p["interaction_id"], p["token"])
        elapsed = time.monotonic() - (interaction.sent_at or time.monotonic())
        if elapsed > self.ack_deadline:
            self.violations.append(
                f"{call.key}: interaction {interaction.id} answered after {elapsed:.2f}s "
                f"(Discord allows {self.ack_deadline}s)"
            )
            raise ApiError(404, 10062, "Unknown interaction")
        if interaction.callback is not None:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        body = self.body_of(call)
        kind = body.get("type")
        data = body.get("data") or {}
        allowed = CALLBACKS_FOR.get(interaction.payload["type"], set())
        if kind not in allowed:
            problem = f"type: callback type {kind!r} is not valid for this interaction"
            self.check(call, [problem])
        if kind in (4, 7):
            self.check(call, [p.under("data") for p in message_problems(data)])
        elif kind == 9:
            self.check(call, [p.under("data") for p in modal_problems(data)])
        elif kind == 5 and set(data) - {"flags"}:
            self.check(call, [f"data: a deferred response takes only flags, not {sorted(data)}"])
        channel_id = str(interaction.payload.get("channel_id", ""))
        message: Message | None = None
        if kind == 4:
            message = self.new_message(channel_id, data, call.files, call)
        elif kind == 5:
            message = Message(self.snowflake(), channel_id, flags=LOADING)
            message.flags |= int(data.get("flags") or 0) & EPHEMERAL
        elif kind in (6, 7):
            message = self.interacted_message(interaction)
            if message is None and kind == 7:
                raise ApiError(400, 50035, "Invalid Form Body", {"type": {"_errors": []}})
            if message is not None and kind == 7:
                self.apply_edit(message, data, call.files, call)
        elif kind == 9:
            self.modals.append(copy.deepcopy(data))
        if kind in (4, 5) and message is not None:
            message.interaction_id, message.webhook_id = interaction.id, self.application_id
            if not message.ephemeral:
                self.store(message)
        interaction.original = message
        sent_at = interaction.sent_at or time.monotonic()
        record = Callback(
            interaction.id,
            interaction.token,
            int(kind or 0),
            data,
            call.files,
            time.monotonic() - sent_at,
            message,
        )
        interaction.callback = record
        self.callbacks[interaction.id] = record
        waiter = self.waiters.get(interaction.id)
        if waiter is not None and not waiter.done():
            waiter.set_result(record)
        if not truthy(call.query.get("with_response")):
            return None
        summary: dict[str, Any] = {"id": interaction.id, "type": interaction.payload["type"]}
        summary["response_message_loading"] = kind == 5
        summary["response_message_ephemeral"] = bool(message and message.ephemeral)
        out: dict[str, Any] = {"interaction": summary}
        if message is not None and kind in (4, 5, 7):
            summary["response_message_id"] = message.id
            out["resource"] = {"type": kind, "message": self.message_json(message)}
        return out

    def webhook_interaction(self, p: dict[str, str]) -> Interaction:
        found = next((i for i in self.interactions.values() if i.token == p["token"]), None)
        if p["application_id"] != self.application_id or found is None or found.callback is None:
            raise ApiError(404, 10015, "Unknown Webhook")
        return found

    async def create_followup(self, call: Call, p: dict[str, str]) -> Any:
        interaction = self.webhook_interaction(p)
        channel_id = str(interaction.payload.get("channel_id", ""))
        message = self.new_message(channel_id, self.body_of(call), call.files, call)
        message.interaction_id, message.webhook_id = interaction.id, self.application_id
        if not message.ephemeral:
            self.store(message)
        interaction.followups.append(message)
        self.followups[interaction.token].append(message)
        return self.message_json(message) if truthy(call.query.get("wait")) else None

    def webhook_message(self, p: dict[str, str]) -> Message:
        interaction = self.webhook_interaction(p)
        if p["message_id"] == "@original":
            found = interaction.original
        else:
            pool = [interaction.original, *interaction.followups]
            found = next((m for m in pool if m is not None and m.id == p["message_id"]), None)
        if found is None or found.deleted:
            raise ApiError(404, 10008, "Unknown Message")
        return found

    async def get_webhook_message(self, call: Call, p: dict[str, str]) -> Any:
        return self.message_json(self.webhook_message(p))

    async def edit_webhook_message(self, call: Call, p: dict[str, str]) -> Any:
        message = self.webhook_message(p)
        self.apply_edit(message, self.body_of(call), call.files, call)
        return self.message_json(message)

    async def delete_webhook_message(self, call: Call, p: dict[str, str]) -> Any:
        self.remove(self.webhook_message(p))
        return None

    # -- gateway -------------------------------------------------------------------------

    @property
    def session(self) -> Session | None:
        """The newest identified session."""
        return self.sessions[-1] if self.sessions else None

    @property
    def open_connections(self) -> list[Connection]:
        return [c for c in self.connections if not c.closed]

    @property
    def connected(self) -> bool:
        """Whether a client has identified (or resumed) and its socket is open."""
        session = self.session
        return bool(session and session.connection and not session.connection.closed)

    async def wait_connected(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await self.wait_for(lambda api: api.connected, timeout)

    async def gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        query = request.query
        compress = query.get("compress")
        connection = Connection(
            ws, compress if compress in ("zlib-stream", "zstd-stream") else None
        )
        self.connections.append(connection)
        try:
            if query.get("v") != str(API_VERSION):
                await connection.close(4012, "Invalid API version")
                return ws
            if query.get("encoding", "json") != "json" or compress not in (
                None,
                "zlib-stream",
                "zstd-stream",
            ):
                await connection.close(4002, "Error while decoding payload.")
                return ws
            hello = {"heartbeat_interval": self.heartbeat_interval, "_trace": ["fake-gateway"]}
            await connection.send({"op": 10, "d": hello, "s": None, "t": None})
            async for frame in ws:
                if frame.type == WSMsgType.TEXT:
                    await self.from_client(connection, frame.data)
                elif frame.type == WSMsgType.BINARY:
                    await connection.close(4002, "Error while decoding payload.")
        finally:
            connection.closed = True
            connection.close_code = connection.close_code or ws.close_code
            if connection.session and connection.session.connection is connection:
                connection.session.connection = None
        return ws

    async def from_client(self, connection: Connection, text: str) -> None:
        try:
            frame = json.loads(text)
            op = frame["op"]
        except (ValueError, TypeError, KeyError):
            await connection.close(4002, "Error while decoding payload.")
            return
        connection.received.append(frame)
        data = frame.get("d")
        if op == 1:
            connection.heartbeats += 1
            await connection.send({"op": 11, "d": None, "s": None, "t": None})
            connection.acks += 1
        elif op == 2:
            await self.identify(connection, data or {})
        elif op == 6:
            await self.resume(connection, data or {})
        elif connection.session is None:
            await connection.close(4003, "Not authenticated.")
        elif op not in (3, 4, 8):
            await connection.close(4001, "Unknown opcode.")

    async def identify(self, connection: Connection, data: dict[str, Any]) -> None:
        if connection.session is not None:
            await connection.close(4005, "Already authenticated.")
            return
        if data.get("token") != self.token:
            await connection.close(4004, "Authentication failed.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0 or intents >= 1 << 26:
            await connection.close(4013, "Invalid intent(s).")
            return
        self.intents = intents
        session = Session(secrets.token_hex(16), intents)
        self.sessions.append(session)
        session.connection, connection.session = connection, session
        ready: dict[str, Any] = {
            "v": API_VERSION,
            "user": self.bot_user() | {"verified": True, "mfa_enabled": False, "email": None},
            "guilds": [{"id": self.guild_id, "unavailable": True}],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": self.application_id, "flags": 0},
            "private_channels": [],
            "presences": [],
            "relationships": [],
            "user_settings": {},
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["local"],
            "_trace": ["fake-gateway"],
        }
        if isinstance(data.get("shard"), list):
            ready["shard"] = data["shard"]
        await self.send_dispatch(session, "READY", ready)

    async def resume(self, connection: Connection, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            await connection.close(4004, "Authentication failed.")
            return
        session = next((s for s in self.sessions if s.id == data.get("session_id")), None)
        if session is None or session is not self.session:
            await connection.send({"op": 9, "d": False, "s": None, "t": None})
            return
        old = session.connection
        if old is not None and old is not connection:
            await old.close(4000, "Session resumed elsewhere.")
        session.connection, connection.session = connection, session
        session.resumes += 1
        seen = data.get("seq") or 0
        for frame in session.log:
            if frame["s"] > seen:
                await self.deliver(connection, frame)
        await self.send_dispatch(session, "RESUMED", {"_trace": ["fake-gateway"]})

    async def send_dispatch(self, session: Session, event: str, data: Any) -> int:
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.log.append(frame)
        connection = session.connection
        if connection is not None and not connection.closed:
            await self.deliver(connection, frame)
        return session.seq

    async def deliver(self, connection: Connection, frame: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):  # replayed on RESUME
            await connection.send(frame)
            if frame["t"] == "INTERACTION_CREATE":
                interaction = self.interactions.get(str(frame["d"]["id"]))
                if interaction is not None:
                    interaction.sent_at = time.monotonic()

    async def dispatch(self, event: str, data: dict[str, Any]) -> int:
        """Send a DISPATCH (op 0) to the current session; return its sequence number.

        With no open socket the event waits in the session's log for the client's RESUME."""
        session = self.session
        if session is None:
            raise AssertionError("no gateway session: the client has not identified")
        if event == "INTERACTION_CREATE":
            interaction = Interaction(str(data["id"]), str(data["token"]), data)
            self.interactions[interaction.id] = interaction
        return await self.send_dispatch(session, event, data)

    async def interact(self, payload: dict[str, Any], timeout: float = 5.0) -> Callback:  # noqa: ASYNC109
        """Deliver INTERACTION_CREATE and wait for the bot's callback for it."""
        interaction_id = str(payload["id"])
        waiter: asyncio.Future[Callback] = asyncio.get_running_loop().create_future()
        self.waiters[interaction_id] = waiter
        try:
            await self.dispatch("INTERACTION_CREATE", payload)
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError:
            seen = ", ".join(f"{c.key}:{c.status}" for c in self.calls[-10:])
            raise AssertionError(
                f"no callback for interaction {interaction_id} within {timeout}s; "
                f"last calls: [{seen}]; violations: {self.violations}"
            ) from None
        finally:
            self.waiters.pop(interaction_id, None)

    async def disconnect(self, code: int = 4000, reason: str = "") -> None:
        """Close every open gateway socket with `code` (4000: the client resumes)."""
        for connection in self.open_connections:
            await connection.close(code, reason)

    async def request_reconnect(self) -> None:
        """Op 7 RECONNECT: the client closes and resumes."""
        for connection in self.open_connections:
            await connection.send({"op": 7, "d": None, "s": None, "t": None})

    async def invalidate_session(self, resumable: bool = False) -> None:
        """Op 9 INVALID_SESSION: with `resumable=False` the client identifies anew."""
        for connection in self.open_connections:
            await connection.send({"op": 9, "d": resumable, "s": None, "t": None})

    # -- interaction payloads ------------------------------------------------------------

    def member_or_new(self, user_id: str) -> Member:
        if user_id not in self.members:
            self.add_member(user_id, f"user{user_id[-6:]}")
        return self.members[user_id]

    def interaction_channel(self, channel: Channel) -> dict[str, Any]:
        out = self.channel_json(channel)
        out.pop("member", None)
        return out if channel.type == 1 else out | {"permissions": PERMISSIONS}

    def envelope(
        self, kind: int, user_id: str, channel_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        """An INTERACTION_CREATE `d` as Discord sends it (see tests/fixtures/discord)."""
        channel = self.channels.get(channel_id)
        if channel is None:
            raise ValueError(f"channel {channel_id} is not registered with the fake Discord")
        interaction_id = self.snowflake()
        secret = f"interaction:{interaction_id}:{secrets.token_urlsafe(48)}"
        token = base64.urlsafe_b64encode(secret.encode()).decode().rstrip("=")
        member = self.member_or_new(user_id)
        payload: dict[str, Any] = {
            "app_permissions": PERMISSIONS,
            "application_id": self.application_id,
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
            "channel": self.interaction_channel(channel),
            "channel_id": channel.id,
            "data": data,
            "entitlement_sku_ids": [],
            "entitlements": [],
            "id": interaction_id,
            "locale": "en-US",
            "token": token,
            "type": kind,
            "version": 1,
        }
        if channel.type == 1:
            payload |= {"user": member.user(), "context": 1}
            payload["authorizing_integration_owners"] = {"0": "0"}
        else:
            payload |= {"member": member.to_dict(PERMISSIONS), "context": 0}
            payload |= {"guild_id": self.guild_id, "guild_locale": "en-US"}
            payload["guild"] = {"id": self.guild_id, "locale": "en-US", "features": []}
            payload["authorizing_integration_owners"] = {"0": self.guild_id}
        return payload

    def stored_message(self, channel_id: str, message_id: str) -> Message:
        message = self.message(channel_id, message_id)
        if message is None:
            raise ValueError(f"no message {message_id} in channel {channel_id}")
        return message

    def component_on(self, message: Message, custom_id: str) -> dict[str, Any]:
        """The component (with its Discord-assigned `id`) a user interacts with."""
        found = find_component(numbered(message.components), custom_id)
        if found is None:
            raise ValueError(f"message {message.id} has no component with custom_id {custom_id!r}")
        if found.get("disabled"):
            raise ValueError(f"the component {custom_id!r} is disabled: nobody can use it")
        return found

    def button_click(
        self, user_id: str | int, custom_id: str, message_id: str | int, channel_id: str | int
    ) -> dict[str, Any]:
        """A MESSAGE_COMPONENT interaction: `user_id` clicks the button `custom_id`."""
        message = self.stored_message(str(channel_id), str(message_id))
        button = self.component_on(message, custom_id)
        if button.get("type") != 2 or button.get("style") == 5:
            raise ValueError(f"{custom_id!r} is not a button that sends an interaction")
        data = {"custom_id": custom_id, "component_type": 2, "id": button["id"]}
        payload = self.envelope(3, str(user_id), str(channel_id), data)
        return payload | {"message": self.message_json(message)}

    def select_choice(
        self,
        user_id: str | int,
        custom_id: str,
        values: Sequence[str],
        message_id: str | int,
        channel_id: str | int,
    ) -> dict[str, Any]:
        """A MESSAGE_COMPONENT interaction: `user_id` picks `values` in a string select."""
        message = self.stored_message(str(channel_id), str(message_id))
        select = self.component_on(message, custom_id)
        if select.get("type") != 3:
            raise ValueError(f"{custom_id!r} is not a string select")
        options = {o.get("value") for o in select.get("options") or []}
        if missing := [v for v in values if v not in options]:
            raise ValueError(f"{custom_id!r} has no options {missing}")
        data = {"custom_id": custom_id, "component_type": 3, "values": list(values)}
        payload = self.envelope(3, str(user_id), str(channel_id), data | {"id": select["id"]})
        return payload | {"message": self.message_json(message)}

    def modal_submit(
        self,
        user_id: str | int,
        custom_id: str,
        values: Mapping[str, str | list[str]],
        channel_id: str | int,
        message_id: str | int | None = None,
        strict: bool = True,
    ) -> dict[str, Any]:
        """A MODAL_SUBMIT interaction. `values` maps each field's custom_id to the text typed
        (a text input) or the options picked (a string select).

        If the bot opened a modal with this custom_id, the submission mirrors its layout
        (Label or legacy action row), fills unnamed fields with their default (or empty),
        and raises ValueError for fields the modal lacks or options it does not offer.
        With `strict` (the default) it also raises for what Discord's client would refuse
        to submit: an empty required field, or text outside min_length..max_length; pass
        `strict=False` to test the bot's own checks. With no such modal, each value
        becomes a Label around a text input (a string) or a string select (a list)."""
        modal = next((m for m in reversed(self.modals) if m.get("custom_id") == custom_id), None)
        components = (
            self.submitted_from(modal, values, strict)
            if modal is not None
            else [submitted_label(i, key, value) for i, (key, value) in enumerate(values.items())]
        )
        data = {"custom_id": custom_id, "components": components}
        payload = self.envelope(5, str(user_id), str(channel_id), data)
        if message_id is not None:
            message = self.stored_message(str(channel_id), str(message_id))
            payload["message"] = self.message_json(message)
        return payload

    def submitted_from(
        self, modal: dict[str, Any], values: Mapping[str, str | list[str]], strict: bool
    ) -> list[dict[str, Any]]:
        used: set[str] = set()
        out: list[dict[str, Any]] = []
        for top in numbered(modal.get("components") or []):
            if top.get("type") == 18:
                inner = self.submitted_field(top["component"], values, used, strict)
                out.append({"type": 18, "id": top["id"], "component": inner})
            elif top.get("type") == 1:
                fields = top.get("components") or []
                row = [self.submitted_field(c, values, used, strict) for c in fields]
                out.append({"type": 1, "id": top["id"], "components": row})
            else:
                out.append({"type": top.get("type"), "id": top["id"]})
        if unknown := set(values) - used:
            raise ValueError(f"modal {modal.get('custom_id')!r} has no fields {sorted(unknown)}")
        return out

    def submitted_field(
        self,
        field: dict[str, Any],
        values: Mapping[str, str | list[str]],
        used: set[str],
        strict: bool,
    ) -> dict[str, Any]:
        custom_id = field.get("custom_id", "")
        used.add(custom_id)
        value = values.get(custom_id)
        base = {"type": field.get("type"), "id": field["id"], "custom_id": custom_id}
        if field.get("type") == 4:
            text = value if value is not None else field.get("value") or ""
            if not isinstance(text, str):
                raise ValueError(f"{custom_id!r} is a text input: give it a string")
            low, high = field.get("min_length") or 0, field.get("max_length") or 4000
            if strict and not text and field.get("required", True):
                raise ValueError(f"{custom_id!r} is required: Discord would not submit the modal")
            if strict and text and not low <= len(text) <= high:
                raise ValueError(f"{custom_id!r} takes {low}..{high} characters, not {len(text)}")
            return base | {"value": text}
        picked = [value] if isinstance(value, str) else list(value or [])
        if field.get("type") == 3:
            options = {o.get("value") for o in field.get("options") or []}
            if missing := [v for v in picked if v not in options]:
                raise ValueError(f"the select {custom_id!r} has no options {missing}")
        low = field.get("min_values", 1)
        low = 1 if low is None else low
        required = field.get("required", True) and low > 0
        if strict and (len(picked) < low if required else 0 < len(picked) < low):
            raise ValueError(f"{custom_id!r} is required: pick at least {low} option(s)")
        if strict and len(picked) > (field.get("max_values") or 1):
            raise ValueError(f"{custom_id!r} takes at most {field.get('max_values') or 1} options")
        return base | {"values": picked}


def submitted_label(index: int, custom_id: str, value: str | list[str]) -> dict[str, Any]:
    if isinstance(value, str):
        inner: dict[str, Any] = {"type": 4, "id": 2 * index + 2, "custom_id": custom_id}
        inner["value"] = value
    else:
        inner = {"type": 3, "id": 2 * index + 2, "custom_id": custom_id, "values": list(value)}
    return {"type": 18, "id": 2 * index + 1, "component": inner}


async def read_body(request: web.Request) -> tuple[Any, list[File]]:
    """A JSON body, or a multipart one (`payload_json` and `files[n]`)."""
    if request.content_type.startswith("multipart/"):
        payload: Any = None
        files: list[File] = []
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue  # Discord takes no nested multipart
            name = part.name or ""
            data = bytes(await part.read())
            if name == "payload_json":
                payload = parse_json(data)
            elif name.startswith("files["):
                kind = part.headers.get("Content-Type")
                files.append(File(name, part.filename or name, data, kind))
        return payload, files
    raw = await request.read()
    return (parse_json(raw) if raw else None), []


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(400, 50109, "The request body contains invalid JSON.") from None


def reply(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    """Discord's answer: `Content-Type` exactly `application/json` (discord.py compares the
    whole header), or no body for 204."""
    extra = dict(headers or {})
    if body is None:
        return web.Response(status=204, headers=extra)
    extra["Content-Type"] = "application/json"
    return web.Response(status=status, body=json.dumps(body).encode(), headers=extra)


@asynccontextmanager
async def discord_api(
    token: str = "test-discord-token",  # noqa: S107
    application_id: str = "1200000000000000001",
    guild_id: str = "1100000000000000001",
    channels: Iterable[str | int] | Mapping[str | int, str] = (),
    heartbeat_interval: int = HEARTBEAT_INTERVAL_MS,
) -> AsyncIterator[DiscordApi]:
    """Serve a fresh DiscordApi on a free port; `api.url` is the REST base for Route.BASE."""
    api = DiscordApi(
        token, application_id, guild_id, channels, heartbeat_interval=heartbeat_interval
    )
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", api.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    api.url = f"http://127.0.0.1:{port}/api/v{API_VERSION}"
    api.gateway_url = f"ws://127.0.0.1:{port}/gateway"
    try:
        yield api
    finally:
        api.release()
        await api.disconnect(1001, "going away")
        for waiter in api.waiters.values():
            waiter.cancel()
        await runner.cleanup()
