"""The web inbox under test: a real Signoff (the in-memory chat platform and the web
inbox) behind a real HTTP server on 127.0.0.1, and browsers' sessions with it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from adapters.memory import MemoryAdapter
from adapters.web import WebSurface
from bot.clock import SystemClock
from bot.policy import load_policy
from bot.protocols import Clock
from bot.runtime import Runtime
from tests.conftest import HERE, Api, http_server, settings_for

WEB_POLICY = HERE / "policies" / "web.yaml"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Inbox:
    runtime: Runtime
    web: WebSurface
    memory: MemoryAdapter
    base: str
    api: Api

    async def link(self, email: str) -> str:
        """A one-time sign-in token, as `signoff web login-link` makes."""
        url = await self.web.login_link(email)
        return url.split("token=", 1)[1]

    @asynccontextmanager
    async def browser(self, email: str | None) -> AsyncIterator[httpx.AsyncClient]:
        """A client with a cookie jar, signed in as `email` (None: signed out)."""
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as client:
            if email is not None:
                token = await self.link(email)
                answer = await client.post("/inbox/login", data={"token": token})
                assert answer.status_code == 303, answer.text
            yield client


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


@asynccontextmanager
async def running_inbox(
    database_url: str,
    memory: MemoryAdapter,
    *,
    clock: Clock | None = None,
    port: int | None = None,
    **extra: Any,
) -> AsyncIterator[Inbox]:
    """A started Signoff with the web inbox, served on `port` (or a free one); with
    `port`, its public URL is that port's, so redirects back to it (SSO) work."""
    if port is not None:
        extra.setdefault("public_url", f"http://127.0.0.1:{port}")
    settings = settings_for(database_url, **extra)
    web = WebSurface(settings)
    runtime = Runtime(
        settings,
        policy=load_policy(WEB_POLICY),
        adapters={"memory": memory, "web": web},
        clock=clock or SystemClock(),
    )
    await runtime.start()
    try:
        async with (
            http_server(runtime, port) as base,
            httpx.AsyncClient(base_url=base, timeout=30) as client,
        ):
            yield Inbox(runtime, web, memory, base, Api(client, runtime))
    finally:
        await runtime.stop()
