"""A Slack-compatible Web API on 127.0.0.1 for tests, driven by the real slack_sdk client.

It stores what the bot posts, checks every Block Kit payload against Slack's documented
limits (tests/blockkit.py, independent of slack_sdk's models), and can fail on demand.

It also speaks Socket Mode: `apps.connections.open` (with an `xapp-` app-level token)
hands out a `ws://` URL on the same server, whose WebSocket greets the client with
`hello` as Slack does; `socket_send` delivers an envelope and waits for the client's
ack, `socket_disconnect` asks it to reconnect, and the server closes its sockets
(1001, going away) before it stops.

Files go up as slack_sdk's `files_upload_v2` sends them: `files.getUploadURLExternal`
hands out an upload URL on this server (`/upload/<file_id>`, not a Web API method;
recorded as the call `upload`, and `fail("upload")` works on it), the bytes are POSTed
there, and `files.completeUploadExternal` shares them in a channel, recorded in
`files` as `SlackFile`s."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import re
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

import uvicorn

from tests.blockkit import message_verdict, view_verdict
from tests.conftest import free_port
from tests.slack_limits import LIMITS, TRUNCATED

BOT = {"user_id": "U0BOT", "bot_id": "B0BOT", "team_id": "T0TEAM"}
JSON_FIELDS = ("blocks", "view", "attachments", "metadata")
INTERACTIVE = {"block_actions", "view_submission", "view_closed", "block_suggestion"}
INTERACTIVE |= {"shortcut", "message_action", "interactive_message"}
# a payload's type -> the type of the Socket Mode envelope that carries it
ENVELOPES = {"event_callback": "events_api", "slash_commands": "slash_commands"}
ENVELOPES |= dict.fromkeys(INTERACTIVE, "interactive")
DEBUG_INFO = {"host": "applink-fake-0", "build_number": 1, "approximate_connection_time": 18060}
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float
    status: int = 200
    response: dict[str, Any] | None = None


@dataclass
class Message:
    channel: str
    ts: str
    text: str | None
    blocks: list[Any] | None
    thread_ts: str | None = None
    reply_broadcast: bool = False
    user: str | None = None  # the recipient of an ephemeral message
    edits: int = 0
    metadata: dict[str, Any] | None = None  # message metadata, as posted

    def to_dict(self, metadata: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "message", "user": BOT["user_id"], "ts": self.ts}
        out["bot_id"] = BOT["bot_id"]
        out |= {"text": self.text or "", "blocks": self.blocks or []}
        if metadata and self.metadata is not None:
            out["metadata"] = self.metadata
        return out | ({"thread_ts": self.thread_ts} if self.thread_ts else {})


@dataclass
class Upload:
    """A file between `files.getUploadURLExternal` and its completion."""

    file_id: str
    filename: str
    length: int
    alt_txt: str | None = None
    data: bytes | None = None  # None until POSTed to the upload URL


@dataclass
class SlackFile:
    """A file shared in a channel by `files.completeUploadExternal`."""

    file_id: str
    filename: str
    title: str
    channel: str
    data: bytes
    initial_comment: str | None = None
    thread_ts: str | None = None


@dataclass
class Failure:
    status: int
    times: int
    retry_after: int


@dataclass
class Hold:
    method: str
    times: int
    when: Callable[[dict[str, Any]], bool] | None = None
    status: int | None = None  # answer with this HTTP error at once instead of holding


@dataclass(eq=False)
class Socket:
    """One Socket Mode connection, as the server holds it."""

    ticket: str
    send: Send
    received: list[Any] = field(default_factory=list)  # the client's frames, decoded
    closed: bool = False
    close_code: int | None = None  # as the client closed it (1000 = normal), or as we did
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send_json(self, frame: dict[str, Any]) -> None:
        async with self.lock:
            await self.send({"type": "websocket.send", "text": json.dumps(frame)})


def truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


@dataclass
class SlackApi:
    users: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # id -> name/email/...
    groups: Mapping[str, Iterable[str]] = field(default_factory=dict)  # usergroup -> user ids
    url: str = ""
    delay: float = 0.0  # seconds to wait before answering any call
    calls: list[Call] = field(default_factory=list)
    rejected: list[Call] = field(default_factory=list)  # answered by fail()/outage()
    violations: list[str] = field(default_factory=list)
    messages: defaultdict[str, list[Message]] = field(default_factory=lambda: defaultdict(list))
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploads: dict[str, Upload] = field(default_factory=dict)  # file id -> started upload
    files: list[SlackFile] = field(default_factory=list)  # completed, in order
    file_count: int = 0
    on_call: list[Callable[[Call], None]] = field(default_factory=list)
    failures: dict[str, list[Failure]] = field(default_factory=dict)
    down: bool = False
    clock: int = 0
    app_id: str = "A0APP"
    tickets: dict[str, str] = field(default_factory=dict)  # Socket Mode ticket -> app token
    sockets: list[Socket] = field(default_factory=list)  # every connection, open or closed
    envelopes: list[dict[str, Any]] = field(default_factory=list)  # as sent by socket_send
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)  # envelope_id -> the ack
    ack_timeout: float = 5.0
    waiting: dict[str, tuple[Socket, asyncio.Future[dict[str, Any]]]] = field(default_factory=dict)
    # ts = epoch + 100 µs a message; set it to time.time() where `oldest`/`latest` matter
    epoch: int = 1_700_000_000
    holds: list[Hold] = field(default_factory=list)  # answers to keep back (see hold)
    held: list[Call] = field(default_factory=list)  # calls done but not answered
    released: asyncio.Event = field(default_factory=asyncio.Event)
    scopes: set[str] | None = None  # the bot token's scopes; None: every scope
    outside: set[str] = field(default_factory=set)  # channels the bot is not a member of
    # Posting into a channel: "no more than one message per second per channel ... bursts
    # over that limit for short periods" (https://docs.slack.dev/apis/web-api/rate-limits,
    # "Limits when posting messages"). Slack does not publish the burst; 3 is what the
    # issue says Slack tolerates, so no looser. Past it: 429 `ratelimited`, Retry-After.
    channel_rate: float = 1.0  # messages a second per channel
    channel_burst: int = 3
    channel_tat: dict[str, float] = field(default_factory=dict)  # GCRA state per channel
    ratelimited: list[Call] = field(default_factory=list)  # answered 429 for the pace

    @property
    def open_sockets(self) -> list[Socket]:
        return [s for s in self.sockets if not s.closed]

    @property
    def socket_connected(self) -> bool:
        """Whether a Socket Mode client is connected (wait with `wait_for`)."""
        return bool(self.open_sockets)

    async def socket_send(
        self, payload_type: str, payload: dict[str, Any], accepts_response_payload: bool = True
    ) -> dict[str, Any]:
        """Deliver `payload` over the newest socket, as Slack wraps it; return the ack
        (`{"envelope_id": ..., "payload": ...?}`) once the client sends it."""
        kind = ENVELOPES.get(payload_type)
        if kind is None:
            raise ValueError(f"no Socket Mode envelope carries {payload_type!r}")
        if kind != "slash_commands" and payload.get("type", payload_type) != payload_type:
            raise ValueError(f"a {payload.get('type')!r} payload sent as {payload_type!r}")
        sockets = self.open_sockets
        if not sockets:
            raise AssertionError("no Socket Mode client is connected")
        envelope: dict[str, Any] = {"envelope_id": str(uuid.uuid4()), "type": kind}
        envelope |= {"payload": payload, "accepts_response_payload": accepts_response_payload}
        if kind == "events_api":
            envelope |= {"retry_attempt": 0, "retry_reason": ""}
        envelope_id = envelope["envelope_id"]
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[envelope_id] = (sockets[-1], waiter)
        self.envelopes.append(envelope)
        try:
            await sockets[-1].send_json(envelope)
            async with asyncio.timeout(self.ack_timeout):
                return await waiter
        except TimeoutError:
            raise AssertionError(
                f"no ack for {payload_type} envelope {envelope_id} within {self.ack_timeout}s"
            ) from None
        finally:
            self.waiting.pop(envelope_id, None)

    async def socket_disconnect(self, reason: str = "refresh_requested") -> None:
        """Slack's notice that a connection is going away: the client should reconnect."""
        for socket in self.open_sockets:
            frame = {
                "type": "disconnect",
                "reason": reason,
                "debug_info": {"host": DEBUG_INFO["host"]},
            }
            await socket.send_json(frame)

    async def close_sockets(self, code: int = 1001) -> None:
        """Close every open socket from the server's side (the client reconnects)."""
        for socket in self.open_sockets:
            socket.close_code = code
            with contextlib.suppress(Exception):  # the client may be gone already
                async with socket.lock:
                    await socket.send({"type": "websocket.close", "code": code})

    def fail(self, method: str, status: int = 429, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next `times` calls of `method` ("*" = any) with HTTP `status`."""
        self.failures.setdefault(method, []).append(Failure(status, times, retry_after))

    def outage(self, on: bool = True) -> None:
        self.down = on

    def hold(
        self,
        method: str,
        times: int = 1,
        when: Callable[[dict[str, Any]], bool] | None = None,
        status: int | None = None,
    ) -> None:
        """Do the next `times` calls of `method` (whose params pass `when`) but keep
        their answer back until `release`: the message is stored, the client never
        hears, as when the connection dies after Slack took a post. With `status`, the
        call is done and answered with that HTTP error at once (a 5xx after the fact)."""
        self.holds.append(Hold(method, times, when, status))

    def holding(self, call: Call) -> Hold | None:
        for hold in self.holds:
            wanted = hold.when is None or hold.when(call.params)
            if hold.method == call.method and hold.times > 0 and wanted:
                hold.times -= 1
                return hold
        return None

    def release(self) -> None:
        self.holds.clear()
        self.released.set()

    def of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def message(self, channel: str, ts: str) -> Message | None:
        return next((m for m in self.messages[channel] if m.ts == ts and not m.user), None)

    def thread(self, channel: str, ts: str) -> list[Message]:
        return [m for m in self.messages[channel] if m.thread_ts == ts and m.ts != ts]

    async def wait_for(self, predicate: Callable[[SlackApi], Any], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                seen = ", ".join(f"{c.method}:{(c.response or {}).get('ok')}" for c in self.calls)
                raise AssertionError(
                    f"Slack API condition not met within {timeout}s; calls: [{seen}]; "
                    f"rejected: {len(self.rejected)}; violations: {self.violations}"
                )
            await asyncio.sleep(0.01)

    def next_ts(self) -> str:
        self.clock += 100
        return f"{self.epoch + self.clock // 1_000_000}.{self.clock % 1_000_000:06d}"

    def injected(self, method: str) -> Failure | None:
        if self.down:
            return Failure(503, 1, 0)
        for key in (method, "*"):
            queue = self.failures.get(key, [])
            if queue:
                queue[0].times -= 1
                return queue.pop(0) if queue[0].times <= 0 else queue[0]
        return None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.socket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            event = await receive()
            raw += event.get("body", b"")
            if not event.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        path: str = scope["path"]
        if path.startswith("/upload/"):
            await self.upload(path.removeprefix("/upload/"), headers, raw, send)
            return
        if not path.startswith("/api/"):
            await respond(send, 404, b"not found", "text/plain")
            return
        call = Call(
            path.removeprefix("/api/"), decode(scope, headers, raw), headers, time.monotonic()
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        if not await self.refused(call, send) and not await self.over_pace(call, send):
            call.response = self.answer(call)
            self.calls.append(call)
            hold = self.holding(call) if call.response.get("ok") else None
            if hold is not None:
                self.held.append(call)
                if hold.status is not None:
                    call.status = hold.status
                    await respond(send, hold.status, b"upstream error", "text/html")
                    return
                await self.released.wait()  # the client may be gone by then
            await respond(send, 200, json.dumps(call.response).encode())
        for hook in self.on_call:
            hook(call)

    async def refused(self, call: Call, send: Send) -> bool:
        """Answer with an injected failure, if one is due for this call."""
        failure = self.injected(call.method)
        if failure is None:
            return False
        call.status = failure.status
        self.rejected.append(call)
        if failure.status == 429:
            extra = [(b"retry-after", str(failure.retry_after).encode())]
            await respond(send, 429, b'{"ok":false,"error":"ratelimited"}', extra=extra)
        else:
            await respond(send, failure.status, b"upstream error", "text/html")
        return True

    def pace_channel(self, call: Call) -> str | None:
        """The channel a call posts a message into, for the per-channel limit. chat.update
        (Tier 3) and chat.postEphemeral (Tier 4) are limited per method per workspace, not
        per channel (https://docs.slack.dev/reference/methods/chat.update,
        https://docs.slack.dev/reference/methods/chat.postEphemeral); a file shared into a
        channel is a message there ("or one of the many other ways to send messages")."""
        if call.method == "chat.postMessage":
            return str(call.params.get("channel") or "") or None
        if call.method == "files.completeUploadExternal":
            return str(call.params.get("channel_id") or "") or None
        return None

    async def over_pace(self, call: Call, send: Send) -> bool:
        """Answer 429 `ratelimited` when `call` posts into a channel faster than Slack
        allows (a token bucket per channel, GCRA form: rejected calls cost nothing)."""
        channel = self.pace_channel(call)
        if channel is None:
            return False
        interval = 1.0 / self.channel_rate
        now = time.monotonic()
        tat = max(self.channel_tat.get(channel, now), now)
        early = tat - (self.channel_burst - 1) * interval - now
        if early <= 0:
            self.channel_tat[channel] = tat + interval
            return False
        call.status = 429
        self.rejected.append(call)
        self.ratelimited.append(call)
        # Retry-After is whole seconds (https://docs.slack.dev/apis/web-api/rate-limits)
        extra = [(b"retry-after", str(max(1, math.ceil(early))).encode())]
        await respond(send, 429, b'{"ok":false,"error":"ratelimited"}', extra=extra)
        return True

    async def upload(self, file_id: str, headers: dict[str, str], raw: bytes, send: Send) -> None:
        """The upload URL: the file's bytes, raw or as a multipart form's one file part.
        Answered as files.slack.com answers, in plain text."""
        data = uploaded(headers, raw)
        call = Call(UPLOAD, {"file_id": file_id, "length": len(data)}, headers, time.monotonic())
        if self.delay:
            await asyncio.sleep(self.delay)
        if not await self.refused(call, send):
            found = self.uploads.get(file_id)
            if found is None or found.data is not None:
                call.status = 404
                await respond(send, 404, b"not found", "text/plain")
            else:
                found.data = data
                await respond(send, 200, f"OK - {len(data)}".encode(), "text/plain")
            self.calls.append(call)
        for hook in self.on_call:
            hook(call)

    async def socket(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        """A Socket Mode connection: `hello`, then the client's acks until it closes."""
        if (await receive())["type"] != "websocket.connect":
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        ticket = query.get("ticket", "")
        if scope["path"] != "/socket" or ticket not in self.tickets:
            await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
            return
        await send({"type": "websocket.accept"})
        socket = Socket(ticket, send)
        self.sockets.append(socket)
        try:
            hello = {"type": "hello", "num_connections": len(self.open_sockets)}
            hello |= {"debug_info": DEBUG_INFO, "connection_info": {"app_id": self.app_id}}
            await socket.send_json(hello)
            while True:
                event = await receive()
                if event["type"] == "websocket.disconnect":
                    socket.close_code = socket.close_code or event.get("code")
                    break
                text = event.get("text")
                self.from_client(socket, text if text is not None else event["bytes"].decode())
        finally:
            socket.closed = True
            for envelope_id, (held, waiter) in list(self.waiting.items()):
                if held is socket and not waiter.done():
                    waiter.set_exception(
                        AssertionError(f"the socket closed before envelope {envelope_id}'s ack")
                    )

    def from_client(self, socket: Socket, text: str) -> None:
        """A frame from the client: Slack expects only acks, `{"envelope_id", "payload"?}`."""
        try:
            frame = json.loads(text)
        except ValueError:
            self.violations.append(f"socket: a frame that is not JSON: {text[:200]!r}")
            return
        socket.received.append(frame)
        if not isinstance(frame, dict) or not isinstance(frame.get("envelope_id"), str):
            self.violations.append(f"socket: a frame without an envelope_id: {text[:200]!r}")
            return
        if extra := set(frame) - {"envelope_id", "payload"}:
            self.violations.append(f"socket: unexpected ack fields {sorted(extra)}")
        envelope_id = frame["envelope_id"]
        sent = next((e for e in self.envelopes if e["envelope_id"] == envelope_id), None)
        if sent is None:
            self.violations.append(f"socket: an ack for an unknown envelope {envelope_id}")
        elif envelope_id in self.acks:
            self.violations.append(f"socket: envelope {envelope_id} acked twice")
        elif "payload" in frame and not sent["accepts_response_payload"]:
            self.violations.append(f"socket: a payload in the ack of {envelope_id}")
        self.acks.setdefault(envelope_id, frame)
        _, waiter = self.waiting.get(envelope_id, (None, None))
        if waiter is not None and not waiter.done():
            waiter.set_result(frame)

    def connections_open(self, token: str) -> dict[str, Any]:
        if not token.startswith("xapp-"):
            return {"ok": False, "error": "invalid_auth"}
        ticket = str(uuid.uuid4())
        self.tickets[ticket] = token
        base = self.url.removesuffix("/").removesuffix("/api").replace("http://", "ws://", 1)
        return {"ok": True, "url": f"{base}/socket?ticket={ticket}"}

    def answer(self, call: Call) -> dict[str, Any]:
        auth = call.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return {"ok": False, "error": "not_authed"}
        if call.method == "apps.connections.open":
            return self.connections_open(auth.removeprefix("Bearer "))
        if not auth.removeprefix("Bearer ").startswith("xoxb-"):
            return {"ok": False, "error": "invalid_auth"}
        handler = getattr(self, "do_" + call.method.replace(".", "_"), None)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        result: dict[str, Any] = handler(call.params)
        if not result["ok"] and ("errors" in result or result["error"] in SHAPE_ERRORS):
            self.violations += [
                f"{call.method}: {e}" for e in result.get("errors", [result["error"]])
            ]
        return result

    def post_checks(self, p: dict[str, Any], needs: tuple[str, ...]) -> dict[str, Any] | None:
        if not p.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if any(not p.get(key) for key in needs):
            return {"ok": False, "error": "invalid_arguments"}
        if not isinstance(p.get("blocks", []), list):
            return {"ok": False, "error": "invalid_blocks_format"}
        if not p.get("text") and not p.get("blocks") and not p.get("attachments"):
            return {"ok": False, "error": "no_text"}
        verdict = message_verdict(p)
        if verdict.error is None:
            return None
        answer: dict[str, Any] = {"ok": False, "error": verdict.error, "errors": verdict.errors}
        if verdict.messages:
            answer["response_metadata"] = {"messages": verdict.messages}
        return answer

    def cut_text(self, method: str, p: dict[str, Any]) -> dict[str, Any]:
        """Slack posts a `text` past 40,000 characters cut to 40,000, with a warning
        (tests/slack_limits.py). Recorded as a violation too: a card must never lean on
        Slack's cut, which drops the end without an ellipsis."""
        most = LIMITS["message.text"].most
        text = p.get("text")
        if not isinstance(text, str) or len(text) <= most:
            return {}
        p["text"] = text[:most]
        self.violations.append(f"{method}: text: {len(text)} characters, cut by Slack to {most}")
        message = (
            "[WARN] Your message was truncated but still posted. "
            f"The `text` field accepts up to {most:,} characters."
        )
        return {
            "warning": TRUNCATED,
            "response_metadata": {"messages": [message], "warnings": [TRUNCATED]},
        }

    def do_auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": "https://example.slack.com/", "team": "Test", **BOT}

    def do_chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        if error := self.post_checks(p, ()):
            return error
        if "metadata" in p and (error := metadata_error(p["metadata"])):
            return {"ok": False, "error": error}
        warned = self.cut_text("chat.postMessage", p)
        message = Message(p["channel"], self.next_ts(), p.get("text"), p.get("blocks"))
        message.thread_ts = p.get("thread_ts") or None
        message.reply_broadcast = truthy(p.get("reply_broadcast"))
        message.metadata = p.get("metadata")
        self.messages[message.channel].append(message)
        return {
            "ok": True,
            "channel": message.channel,
            "ts": message.ts,
            "message": message.to_dict(),
        } | warned

    def do_chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        if error := self.post_checks(p, ("ts",)):
            return error
        warned = self.cut_text("chat.update", p)
        message = self.message(p["channel"], p["ts"])
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if "text" in p:
            message.text = p["text"]
        if "blocks" in p:
            message.blocks = p["blocks"]
        message.edits += 1
        body = {"channel": message.channel, "ts": message.ts, "text": message.text or ""}
        return {"ok": True, **body, "message": message.to_dict()} | warned

    def do_chat_postEphemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        if error := self.post_checks(p, ("user",)):
            return error
        warned = self.cut_text("chat.postEphemeral", p)
        message = Message(p["channel"], self.next_ts(), p.get("text"), p.get("blocks"))
        message.thread_ts, message.user = p.get("thread_ts") or None, p["user"]
        self.messages[message.channel].append(message)
        return {"ok": True, "message_ts": message.ts} | warned

    def do_chat_getPermalink(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("channel") or not p.get("message_ts"):
            return {"ok": False, "error": "invalid_arguments"}
        stamp = str(p["message_ts"]).replace(".", "")
        link = f"https://example.slack.com/archives/{p['channel']}/p{stamp}"
        return {"ok": True, "channel": p["channel"], "permalink": link}

    def save_view(self, p: dict[str, Any], view_id: str, needs: str) -> dict[str, Any]:
        if not p.get(needs) or not isinstance(p.get("view"), dict):
            return {"ok": False, "error": "invalid_arguments"}
        verdict = view_verdict(p["view"])
        if verdict.error is not None:
            # Slack names the problems in response_metadata only; `errors` is ours
            return {"ok": False, "error": verdict.error, "errors": verdict.errors} | {
                "response_metadata": {"messages": verdict.messages}
            }
        view = {"id": view_id, "team_id": BOT["team_id"], "state": {"values": {}}, **p["view"]}
        view |= {"hash": self.next_ts(), "bot_id": BOT["bot_id"]}
        self.views[view_id] = view
        return {"ok": True, "view": view}

    def do_views_open(self, p: dict[str, Any]) -> dict[str, Any]:
        return self.save_view(p, f"V{len(self.views) + 1:010d}", "trigger_id")

    def do_views_update(self, p: dict[str, Any]) -> dict[str, Any]:
        key = p.get("view_id") or p.get("external_id")
        found = [v for v in self.views.values() if key in (v["id"], v.get("external_id"))]
        if not key or not found:
            return {"ok": False, "error": "not_found"}
        if p.get("hash") and p["hash"] != found[0]["hash"]:
            return {"ok": False, "error": "hash_conflict"}
        return self.save_view(p, found[0]["id"], "view")

    def do_views_push(self, p: dict[str, Any]) -> dict[str, Any]:
        return self.save_view(p, f"V{len(self.views) + 1:010d}", "trigger_id")

    def do_usergroups_users_list(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("usergroup") not in self.groups:
            return {"ok": False, "error": "no_such_subteam"}
        members = self.groups[p["usergroup"]]
        return {"ok": True, "users": sorted(members) if isinstance(members, set) else list(members)}

    def do_users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("user") not in self.users:
            return {"ok": False, "error": "user_not_found"}
        info = dict(self.users[p["user"]])
        name = info.pop("name", p["user"].lower())
        real_name = info.pop("real_name", name)
        profile = {"real_name": real_name, "display_name": info.pop("display_name", name)}
        profile |= {"email": info.pop("email")} if "email" in info else {}
        user = {"id": p["user"], "team_id": BOT["team_id"], "name": name, "real_name": real_name}
        return {
            "ok": True,
            "user": user | {"deleted": False, "is_bot": False, **info, "profile": profile},
        }

    def do_conversations_open(self, p: dict[str, Any]) -> dict[str, Any]:
        users = [u for u in str(p.get("users", "")).split(",") if u]
        if not users:
            return {"ok": False, "error": "users_list_not_supplied"}
        return {"ok": True, "channel": {"id": ("D" if len(users) == 1 else "G") + "".join(users)}}

    # -- reading history back: conversations.history and conversations.replies ---------
    # https://docs.slack.dev/reference/methods/conversations.history
    # https://docs.slack.dev/reference/methods/conversations.replies

    def readable(self, p: dict[str, Any]) -> dict[str, Any] | None:
        """The errors both methods share: the channel, the scope for its type, membership."""
        channel = str(p.get("channel") or "")
        if not CHANNEL_ID.fullmatch(channel):
            return {"ok": False, "error": "channel_not_found"}
        # bot token scopes by conversation type (the methods' Scopes table)
        needed = HISTORY_SCOPES[channel[0]]
        if self.scopes is not None and needed not in self.scopes:
            provided = ",".join(sorted(self.scopes))
            return {"ok": False, "error": "missing_scope", "needed": needed, "provided": provided}
        if channel in self.outside:
            return {"ok": False, "error": "not_in_channel"}
        return None

    def window(self, p: dict[str, Any]) -> tuple[int, float, float, bool] | dict[str, Any]:
        """`limit` (default 100, at most 999 for history), `oldest`/`latest` (Unix
        timestamps; default 0 and now) and `inclusive` (default false)."""
        raw_limit = p.get("limit", 100)
        try:
            limit = int(raw_limit)
        except (TypeError, ValueError):
            return {"ok": False, "error": "invalid_limit"}
        if not 1 <= limit <= HISTORY_LIMIT:
            return {"ok": False, "error": "invalid_limit"}
        bounds: list[float] = []
        for key, default in (("oldest", 0.0), ("latest", float("inf"))):
            value = p.get(key)
            try:
                bounds.append(float(value) if value not in (None, "") else default)
            except (TypeError, ValueError):
                return {"ok": False, "error": f"invalid_ts_{key}"}
        return limit, bounds[0], bounds[1], truthy(p.get("inclusive"))

    def page(self, p: dict[str, Any], found: list[Message], limit: int) -> dict[str, Any]:
        """One page of `found` from `cursor` on, and the cursor of the next."""
        start = 0
        if p.get("cursor"):
            try:
                start = int(base64.b64decode(str(p["cursor"])).decode().removeprefix("next:"))
            except ValueError:
                return {"ok": False, "error": "invalid_cursor"}
            if not 0 < start < len(found):
                return {"ok": False, "error": "invalid_cursor"}
        metadata = truthy(p.get("include_all_metadata"))
        shown = found[start : start + limit]
        more = start + limit < len(found)
        cursor = base64.b64encode(f"next:{start + limit}".encode()).decode() if more else ""
        out = {"ok": True, "messages": [m.to_dict(metadata) for m in shown], "has_more": more}
        return out | {"response_metadata": {"next_cursor": cursor}}

    def do_conversations_history(self, p: dict[str, Any]) -> dict[str, Any]:
        """Parent messages and replies broadcast to the channel, newest first."""
        if error := self.readable(p):
            return error
        bounds = self.window(p)
        if isinstance(bounds, dict):
            return bounds
        limit, oldest, latest, inclusive = bounds
        found = [
            m
            for m in self.messages[str(p["channel"])]
            if not m.user
            and (not m.thread_ts or m.thread_ts == m.ts or m.reply_broadcast)
            and in_window(float(m.ts), oldest, latest, inclusive)
        ]
        found.sort(key=lambda m: float(m.ts), reverse=True)
        return self.page(p, found, limit) | {"pin_count": 0}

    def do_conversations_replies(self, p: dict[str, Any]) -> dict[str, Any]:
        """The thread's parent, then its replies oldest first."""
        if error := self.readable(p):
            return error
        if not p.get("ts"):
            return {"ok": False, "error": "invalid_arguments"}
        parent = self.message(str(p["channel"]), str(p["ts"]))
        if parent is None:
            return {"ok": False, "error": "thread_not_found"}
        bounds = self.window(p)
        if isinstance(bounds, dict):
            return bounds
        limit, oldest, latest, inclusive = bounds
        replies = [
            m
            for m in self.thread(parent.channel, parent.ts)
            if not m.user and in_window(float(m.ts), oldest, latest, inclusive)
        ]
        replies.sort(key=lambda m: float(m.ts))
        return self.page(p, [parent, *replies], limit)

    def do_files_getUploadURLExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        filename, length = p.get("filename"), str(p.get("length", ""))
        if not filename or not length.isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        self.file_count += 1
        file_id = f"F{self.file_count:010d}"
        self.uploads[file_id] = Upload(file_id, filename, int(length), p.get("alt_txt"))
        base = self.url.removesuffix("/").removesuffix("/api")
        return {"ok": True, "upload_url": f"{base}/upload/{file_id}", "file_id": file_id}

    def do_files_completeUploadExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        wanted = p.get("files")
        if isinstance(wanted, str):
            try:
                wanted = json.loads(wanted)
            except ValueError:
                return {"ok": False, "error": "invalid_arguments"}
        if (
            not isinstance(wanted, list)
            or not wanted
            or not all(isinstance(f, dict) and isinstance(f.get("id"), str) for f in wanted)
        ):
            return {"ok": False, "error": "invalid_arguments"}
        checked: list[tuple[dict[str, Any], Upload, bytes]] = []
        for item in wanted:
            upload = self.uploads.get(item["id"])
            if upload is None or upload.data is None or len(upload.data) != upload.length:
                return {"ok": False, "error": "invalid_arguments"}
            checked.append((item, upload, upload.data))
        channel = p.get("channel_id") or None
        done: list[dict[str, Any]] = []
        for item, upload, data in checked:
            del self.uploads[upload.file_id]
            title = str(item.get("title") or upload.filename)
            if channel:
                shared = SlackFile(upload.file_id, upload.filename, title, channel, data)
                shared.initial_comment = p.get("initial_comment") or None
                shared.thread_ts = p.get("thread_ts") or None
                self.files.append(shared)
            done.append({"id": upload.file_id, "title": title, "name": upload.filename})
        return {"ok": True, "files": done}

    def files_in(self, channel: str) -> list[SlackFile]:
        return [f for f in self.files if f.channel == channel]


SHAPE_ERRORS = {"invalid_arguments", "channel_not_found", "no_text", "invalid_blocks_format"}
SHAPE_ERRORS |= {"invalid_metadata_format", "invalid_metadata_schema"}
SHAPE_ERRORS |= {"invalid_limit", "invalid_ts_oldest", "invalid_ts_latest", "invalid_cursor"}
CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{1,20}")
HISTORY_SCOPES = {"C": "channels:history", "G": "groups:history", "D": "im:history"}
HISTORY_LIMIT = 999  # conversations.history: "Maximum of 999"
# Message metadata (https://docs.slack.dev/messaging/message-metadata and
# https://docs.slack.dev/reference/metadata, the payload structure; errors
# invalid_metadata_format / invalid_metadata_schema on
# https://docs.slack.dev/reference/methods/chat.postMessage): an object with an
# `event_type`, a human-readable alphanumeric name (snake_case in every example), and an
# `event_payload` object. No size limit is published, so none is checked.
METADATA_EVENT_TYPE = re.compile(r"[A-Za-z0-9_]+")


def metadata_error(metadata: Any) -> str | None:
    """Why Slack would refuse this `metadata` argument, or None."""
    if not isinstance(metadata, dict) or set(metadata) - {"event_type", "event_payload"}:
        return "invalid_metadata_format"
    event_type, payload = metadata.get("event_type"), metadata.get("event_payload")
    if not isinstance(event_type, str) or not METADATA_EVENT_TYPE.fullmatch(event_type):
        return "invalid_metadata_schema"
    if not isinstance(payload, dict):
        return "invalid_metadata_schema"
    return None


def in_window(ts: float, oldest: float, latest: float, inclusive: bool) -> bool:
    if inclusive:
        return oldest <= ts <= latest
    return oldest < ts < latest


UPLOAD = "upload"  # the recorded method of a POST to an upload URL


def uploaded(headers: dict[str, str], raw: bytes) -> bytes:
    """The bytes of an upload: the body, or the file part of a multipart form."""
    kind = headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        return raw
    form = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {kind}\r\n\r\n".encode() + raw)
    for part in form.iter_parts():
        if (
            part.get_filename() is not None
            or part.get_param("name", header="content-disposition") == "file"
        ):
            data = part.get_payload(decode=True)
            return data if isinstance(data, bytes) else b""
    return b""


def decode(scope: MutableMapping[str, Any], headers: dict[str, str], raw: bytes) -> dict[str, Any]:
    """Query string, then a JSON or form body; JSON-encoded blocks/view become objects."""
    query = scope.get("query_string", b"").decode()
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    if headers.get("content-type", "").startswith("application/json") and raw:
        params.update(json.loads(raw))
    elif raw:
        params.update(parse_qsl(raw.decode(), keep_blank_values=True))
    for key in JSON_FIELDS:
        if isinstance(params.get(key), str):
            with contextlib.suppress(ValueError):  # a bad string: invalid_blocks_format
                params[key] = json.loads(params[key])
    return params


async def respond(
    send: Send,
    status: int,
    body: bytes,
    kind: str = "application/json",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    content_type = f"{kind}; charset=utf-8".encode()
    headers = [(b"content-type", content_type), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def slack_api(
    users: Mapping[str, Mapping[str, Any]] | None = None,
    groups: Mapping[str, Iterable[str]] | None = None,
    ping_interval: float | None = 20.0,
) -> AsyncIterator[SlackApi]:
    """Serve a fresh SlackApi on a free port; its `.url` is the client's base_url.

    The server pings each Socket Mode client every `ping_interval` seconds and drops it
    if no pong comes within as long again."""
    api = SlackApi(users=users or {}, groups=groups or {})
    port = free_port()
    config = uvicorn.Config(
        api,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        ws_ping_interval=ping_interval,
        ws_ping_timeout=ping_interval,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    api.url = f"http://127.0.0.1:{port}/api/"
    try:
        yield api
    finally:
        api.release()
        await api.close_sockets()
        server.should_exit = True
        await task
