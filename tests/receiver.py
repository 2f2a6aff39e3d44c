"""A workflow's callback endpoint on 127.0.0.1: records every delivery, checks its
signature, and answers with the statuses it is told to."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn

from bot import signing
from tests.conftest import free_port

# The SIGNOFF_CALLBACK_HOSTS a runtime needs to call a Receiver: loopback is refused
# unless the allow-list names it, as for a workflow on the same machine.
RECEIVER_HOSTS = ["127.0.0.1"]


@dataclass
class Delivery:
    headers: dict[str, str]
    body: dict[str, Any]
    signature_ok: bool  # a v2 signature of POST, `target` and `raw`
    target: str = ""  # the request target as it arrived: raw path and `?query`
    raw: bytes = b""


@dataclass
class Receiver:
    secret: str
    statuses: list[int] = field(default_factory=list)  # answers to give, in order; then 200
    always: int | None = None
    received: list[Delivery] = field(default_factory=list)
    attempts: int = 0
    url: str = ""

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.attempts += 1
        status = self.always or (self.statuses.pop(0) if self.statuses else 200)
        if status == 200:
            ok = False
            header = headers.get("x-signoff-signature")
            target = scope.get("raw_path", b"").decode("latin-1")
            if scope.get("query_string"):
                target += "?" + scope["query_string"].decode("latin-1")
            if header:
                parsed = signing.parse(header)
                ok = scope["method"] == "POST" and (
                    signing.matches(self.secret, "POST", target, raw, parsed) == "v2"
                )
            self.received.append(Delivery(headers, orjson.loads(raw), ok, target, raw))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})


@asynccontextmanager
async def running(
    receiver: Receiver, host: str = "127.0.0.1", port: int | None = None, **config: Any
) -> AsyncIterator[Receiver]:
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            receiver, host=host, port=port, log_level="warning", lifespan="off", **config
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    scheme = "https" if config.get("ssl_certfile") else "http"
    where = f"[{host}]" if ":" in host else host
    receiver.url = f"{scheme}://{where}:{port}/hook"
    try:
        yield receiver
    finally:
        server.should_exit = True
        await task
