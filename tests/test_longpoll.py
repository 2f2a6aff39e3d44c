"""`GET /v1/escalations/{id}?wait=<seconds>`: a long-poll that answers as soon as the
case's status changes, woken by the after-commit hook (and, across replicas on
PostgreSQL, by LISTEN/NOTIFY), not by reading the database in a loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from adapters.memory import MemoryAdapter
from bot.protocols import Reviewer
from bot.runtime import Runtime
from tests.conftest import (
    OTHER_SECRET,
    Api,
    MakeRuntime,
    case,
    http_server,
    pg_url_or_skip,
    reset_postgres,
)

ALICE = Reviewer("memory", "U0ALICE", "Alice")


async def poll(api: Api, case_id: str, wait: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await api.get(f"/v1/escalations/{case_id}", wait=wait)
    return response, time.monotonic() - started


async def test_a_decision_ends_the_wait_at_once(api: Api) -> None:
    made = await api.submit()
    waiting = asyncio.create_task(poll(api, made["id"], 30))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # it is really waiting
    assert api.runtime.waiters.count == 1
    await api.runtime.service.decide(made["id"], ALICE, "approve", "policy_match")
    response, took = await asyncio.wait_for(waiting, 10)
    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    assert response.json()["decisions"][0]["reviewer"] == "memory:U0ALICE"
    assert took < 10  # woken, not run out (30 s)
    assert api.runtime.waiters.count == 0


async def test_a_question_for_the_workflow_ends_the_wait(api: Api) -> None:
    made = await api.submit()
    waiting = asyncio.create_task(poll(api, made["id"], 30))
    await asyncio.sleep(0.2)
    await api.runtime.service.request_info(made["id"], ALICE, "Which project?")
    response, _ = await asyncio.wait_for(waiting, 10)
    assert response.json()["status"] == "info_requested"
    # asked again while the question waits: it waits for the next change (the answer)
    again = asyncio.create_task(poll(api, made["id"], 30))
    await asyncio.sleep(0.3)
    assert not again.done()
    await api.runtime.service.answer_info(made["id"], "default", "ENG-042", None)
    response, took = await asyncio.wait_for(again, 10)
    assert response.json()["status"] == "pending"
    assert took < 10


async def test_a_claim_does_not_end_the_wait(api: Api) -> None:
    made = await api.submit()
    waiting = asyncio.create_task(poll(api, made["id"], 1.5))
    await asyncio.sleep(0.2)
    await api.runtime.service.claim(made["id"], ALICE)
    await asyncio.sleep(0.3)
    assert not waiting.done()  # woken, read again, still pending: waits on
    response, took = await asyncio.wait_for(waiting, 10)
    assert response.json()["status"] == "pending"
    assert took >= 1.4


async def test_the_wait_runs_out_with_the_case_as_it_is(api: Api) -> None:
    made = await api.submit()
    response, took = await poll(api, made["id"], 0.5)
    assert response.status_code == 200
    assert response.json()["status"] == "pending"
    assert took >= 0.45
    assert api.runtime.waiters.count == 0


async def test_a_closed_case_answers_at_once(api: Api) -> None:
    made = await api.submit()
    await api.runtime.service.decide(made["id"], ALICE, "approve", "policy_match")
    response, took = await poll(api, made["id"], 60)
    assert response.json()["status"] == "approved"
    assert took < 5


@pytest.mark.parametrize(
    ("wait", "message"),
    [
        ("61", "must be at most 60 (got '61')"),
        ("-1", "must be at least 0 (got '-1')"),
        ("soon", "must be a number (got 'soon')"),
        ("nan", "must be at most 60 (got 'nan')"),
    ],
)
async def test_a_bad_wait_is_refused(api: Api, wait: str, message: str) -> None:
    made = await api.submit()
    response = await api.get(f"/v1/escalations/{made['id']}", wait=wait)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_failed"
    assert response.json()["errors"] == [{"field": "wait", "message": message}], response.text
    assert api.runtime.waiters.count == 0


async def test_a_wait_for_another_sources_case_is_refused(api: Api) -> None:
    made = await api.submit()
    response = await api.get(f"/v1/escalations/{made['id']}", secret=OTHER_SECRET, wait=5)
    assert response.status_code in (401, 403)
    assert api.runtime.waiters.count == 0


async def test_past_the_limit_a_wait_answers_at_once(api: Api) -> None:
    api.runtime.waiters.limit = 0
    made = await api.submit()
    response, took = await poll(api, made["id"], 30)
    assert response.json()["status"] == "pending"
    assert took < 5


async def test_an_expiry_ends_the_wait(api: Api) -> None:
    made = await api.submit(case(sla="60s"))
    waiting = asyncio.create_task(poll(api, made["id"], 30))
    await asyncio.sleep(0.2)
    # the SLA clock's own sweep, as if the minute had passed
    rt = api.runtime
    rt.clock = _Later(rt.clock, 3600)  # type: ignore[assignment]
    rt.sla.clock = rt.clock
    await rt.sla.sweep()
    response, _ = await asyncio.wait_for(waiting, 10)
    assert response.json()["status"] == "expired"  # the review lane rejects on timeout


class _Later:
    def __init__(self, clock: Any, seconds: float) -> None:
        self.clock = clock
        self.seconds = seconds

    def now(self) -> Any:
        from datetime import timedelta

        return self.clock.now() + timedelta(seconds=self.seconds)


# -- across replicas on PostgreSQL ------------------------------------------------------


@pytest.fixture
async def two_replicas(
    make_runtime: MakeRuntime, memory: MemoryAdapter
) -> AsyncIterator[tuple[Api, Runtime]]:
    url = pg_url_or_skip()
    await reset_postgres(url)
    first = await make_runtime(url)
    second = await make_runtime(url)
    for replica in (first, second):
        assert replica.notifier is not None
        await asyncio.wait_for(replica.notifier.listening.wait(), 10)
    async with http_server(first) as base, httpx.AsyncClient(base_url=base, timeout=30) as c:
        yield Api(c, first), second


@pytest.mark.postgres
async def test_a_decision_on_another_replica_ends_the_wait(
    two_replicas: tuple[Api, Runtime],
) -> None:
    api, other = two_replicas
    made = await api.submit()
    waiting = asyncio.create_task(poll(api, made["id"], 30))
    await asyncio.sleep(0.3)
    assert api.runtime.waiters.count == 1
    await other.service.decide(made["id"], ALICE, "reject", "policy_violation", "Over budget")
    response, took = await asyncio.wait_for(waiting, 10)
    assert response.json()["status"] == "rejected"
    assert took < 10  # by NOTIFY: the first replica's own hook never ran
