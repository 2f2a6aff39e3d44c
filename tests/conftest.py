"""Shared fixtures: a store on SQLite or a real PostgreSQL, a running Signoff behind a
real HTTP server on 127.0.0.1, the in-memory review surface, and request signing."""

from __future__ import annotations

import asyncio
import copy
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from adapters.memory import MemoryAdapter
from bot import signing
from bot.api.app import create_app
from bot.clock import SystemClock
from bot.config import Settings, Source
from bot.policy import LoadedPolicy, load_policy
from bot.protocols import Clock
from bot.runtime import Runtime
from bot.store.db import async_url

HERE = Path(__file__).parent
TEST_POLICY = HERE / "policies" / "test.yaml"
SECRET = "test-secret-default"
OTHER_SECRET = "test-secret-billing"
PG_ENV = "SIGNOFF_TEST_POSTGRES_URL"

CASE: dict[str, Any] = {
    "kind": "expense_approval",
    "title": "Expense ER-1: team dinner",
    "question": "Approve this expense?",
    "summary": "Dinner for 8 after the release.",
    "recommendation": {
        "action": "approve",
        "confidence": 0.82,
        "rationale": "Within the per-head limit.",
        "alternatives": [{"action": "reject", "confidence": 0.18}],
    },
    "risk": {"level": "low", "amount": 420.0, "currency": "EUR", "reversible": True},
    "facts": {"employee": "Dana", "cost_center": "ENG-042"},
    "evidence": [{"label": "Receipt", "url": "https://expenses.example.com/r/1"}],
    "requested_by": "dana@example.com",
}


def case(**changes: Any) -> dict[str, Any]:
    """A valid case body (routed to `review` by the test policy), with changes."""
    body = copy.deepcopy(CASE)
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".", 1)
            body[outer][inner] = value
        elif value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def signed(
    body: bytes,
    secret: str = SECRET,
    at: int | None = None,
    *,
    method: str = "POST",
    target: str = "/v1/escalations",
) -> dict[str, str]:
    """Headers of a request signed v2 for `method` and `target` (the path and `?query`)."""
    stamp = int(time.time()) if at is None else at
    return {
        "X-Signoff-Signature": signing.sign(secret, method, target, body, stamp),
        "Content-Type": "application/json",
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg_url_or_skip() -> str:
    url = os.environ.get(PG_ENV)
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(f"{PG_ENV} is not set under CI: .ci/run must start PostgreSQL")
    pytest.skip(f"set {PG_ENV} to run the PostgreSQL tests")


async def reset_postgres(url: str) -> None:
    engine = create_async_engine(async_url(url))
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: every test that takes it runs on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'signoff.db'}"
    url = pg_url_or_skip()
    await reset_postgres(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'signoff.db'}"


@pytest.fixture
def policy() -> LoadedPolicy:
    return load_policy(TEST_POLICY)


@pytest.fixture
def memory() -> MemoryAdapter:
    return MemoryAdapter(
        groups={
            "G0REVIEWERS": {"U0CAROL", "U0DAVE"},
            "G0EXPERTS": {"U0EVE"},
            "G0ONCALL": {"U0OPS1", "U0OPS2", "U0OPS3"},
        },
        emails={"U0DANA": "Dana@Example.com", "U0CAROL": "carol@example.com"},
    )


def settings_for(url: str, **extra: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        policy=str(TEST_POLICY),
        webhook_secret=SECRET,
        sources={"billing": Source(secret=OTHER_SECRET, token="billing-token")},  # type: ignore[arg-type]
        outbox_poll_interval=0.2,
        **extra,
    )


MakeRuntime = Callable[..., Awaitable[Runtime]]


@pytest.fixture
async def make_runtime(memory: MemoryAdapter, policy: LoadedPolicy) -> AsyncIterator[MakeRuntime]:
    made: list[Runtime] = []

    async def make(
        url: str,
        *,
        clock: Clock | None = None,
        workers: bool = True,
        adapters: Any = None,
        **extra: Any,
    ) -> Runtime:
        runtime = Runtime(
            settings_for(url, **extra),
            policy=policy,
            adapters={"memory": memory} if adapters is None else adapters,
            clock=clock or SystemClock(),
        )
        await runtime.start(workers=workers)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        if runtime.started:
            await runtime.stop()


@asynccontextmanager
async def http_server(runtime: Runtime, port: int | None = None) -> AsyncIterator[str]:
    """Serve Signoff's app for `runtime` on a real socket (`port`, or a free one);
    yield its base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        create_app(runtime, manage_runtime=False),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class Api:
    """A workflow's view of Signoff: signed requests to a real server."""

    def __init__(self, client: httpx.AsyncClient, runtime: Runtime) -> None:
        self.client = client
        self.runtime = runtime

    async def post(
        self, path: str, body: Any, secret: str = SECRET, **headers: str
    ) -> httpx.Response:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        return await self.client.post(
            path, content=raw, headers={**signed(raw, secret, target=path), **headers}
        )

    async def get(self, path: str, secret: str = SECRET, **params: Any) -> httpx.Response:
        request = self.client.build_request("GET", path, params=params)
        target = request.url.raw_path.decode("ascii")
        request.headers.update(signed(b"", secret, method="GET", target=target))
        return await self.client.send(request)

    async def submit(self, body: Any = None, **headers: str) -> dict[str, Any]:
        response = await self.post("/v1/escalations", case() if body is None else body, **headers)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    async def count(self, table: str) -> int:
        async with self.runtime.engine.connect() as conn:
            return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())  # noqa: S608


@pytest.fixture
async def runtime(make_runtime: MakeRuntime, database_url: str) -> Runtime:
    return await make_runtime(database_url)


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[Api]:
    async with http_server(runtime) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield Api(client, runtime)


async def wait_for(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for a condition")
        await asyncio.sleep(0.02)
