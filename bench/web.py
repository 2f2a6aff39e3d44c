"""Web inbox benchmark: a real `signoff serve` (subprocess) with the shipped policy.

* queue: N open cases (default 10,000) submitted over the signed webhook; then the
  queue page (`GET /inbox/`, 50 a page, sorted by due time) fetched by a signed-in
  browser session, one request at a time, and its latency; the same for a filtered
  page, a deep page, the board and decided history. The query plans of the queue's
  statements are printed (SQLite: EXPLAIN QUERY PLAN; PostgreSQL: EXPLAIN).
* decide: M cases (default 50) approved from the form (`POST /inbox/cases/{id}`), and
  how long from sending the form until the workflow's API (`GET /v1/escalations/{id}`)
  says `approved`.

    .venv/bin/python bench/web.py
    .venv/bin/python bench/web.py --postgres-url postgresql://u:p@127.0.0.1/db

This is a benchmark that prints numbers, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest import Server, percentile, reset_postgres, stats

from bot import signing

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-web-secret"
EXAMPLE = json.loads((ROOT / "examples" / "refund.json").read_text())
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
REVIEWER = "reviewer@localhost"  # the shipped policy's first web approver


def body(index: int) -> bytes:
    found = dict(EXAMPLE)
    found["title"] = f"Refund #{index} to order A-{index:06d}"
    found["idempotency_key"] = f"bench-web-{index}"
    if index % 4 == 0:  # a quarter to the expert lane
        found["recommendation"] = {**EXAMPLE["recommendation"], "confidence": 0.6}
    return orjson.dumps(found)


async def submit(client: httpx.AsyncClient, index: int) -> str:
    raw = body(index)
    headers = {
        "Content-Type": "application/json",
        "X-Signoff-Signature": signing.sign(
            SECRET, "POST", "/v1/escalations", raw, int(time.time())
        ),
    }
    answer = await client.post("/v1/escalations", content=raw, headers=headers)
    if answer.status_code not in (200, 201):
        raise RuntimeError(f"submit {index}: {answer.status_code} {answer.text[:200]}")
    return str(answer.json()["id"])


async def fill(client: httpx.AsyncClient, count: int, concurrency: int = 32) -> list[str]:
    ids: list[str] = []
    queue = iter(range(count))

    async def worker() -> None:
        for index in queue:
            ids.append(await submit(client, index))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ids


async def read_status(client: httpx.AsyncClient, case_id: str) -> str:
    target = f"/v1/escalations/{case_id}"
    headers = {"X-Signoff-Signature": signing.sign(SECRET, "GET", target, b"", int(time.time()))}
    answer = await client.get(target, headers=headers)
    return str(answer.json()["status"])


def login_link(server: Server) -> str:
    script = Path(sys.executable).with_name("signoff")
    made = subprocess.run(  # noqa: S603 - our own CLI
        [str(script), "web", "login-link", REVIEWER],
        cwd=server.workdir,
        env={**server.env, "SIGNOFF_PUBLIC_URL": f"http://127.0.0.1:{server.port}"},
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.strip().split("token=", 1)[1]


async def timed_pages(client: httpx.AsyncClient, path: str, times: int) -> dict[str, float]:
    seen = []
    for _ in range(times):
        started = time.perf_counter()
        answer = await client.get(path)
        seen.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:200]}")
    return {**stats(seen), "p95_ms": percentile(sorted(seen), 95) * 1000}


def plans(url: str) -> list[str]:
    """The queue's statements' plans, from the database itself."""
    from sqlalchemy import create_engine, func, select, text

    from adapters.web.views import OPEN
    from bot.store.tables import cases

    sync_url = url.replace("postgresql://", "postgresql+psycopg2://") if "postgres" in url else url
    listing = (
        select(cases.c.id)
        .where(cases.c.status.in_(OPEN))
        .order_by(cases.c.due_at.asc().nulls_last(), cases.c.id)
        .limit(50)
    )
    counting = select(func.count()).select_from(cases).where(cases.c.status.in_(OPEN))
    found = []
    try:
        engine = create_engine(sync_url)
    except Exception as exc:  # no sync driver for PostgreSQL here
        return [f"(plans not read: {type(exc).__name__})"]
    with engine.connect() as conn:
        for name, statement in (("queue page", listing), ("queue count", counting)):
            compiled = statement.compile(engine, compile_kwargs={"literal_binds": True})
            explain = "EXPLAIN QUERY PLAN " if url.startswith("sqlite") else "EXPLAIN "
            rows = conn.execute(text(explain + str(compiled))).all()
            found.append(f"{name}: " + " | ".join(str(r[-1]) for r in rows))
    engine.dispose()
    return found


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--decisions", type=int, default=50)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--postgres-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.postgres_url:
            await reset_postgres(args.postgres_url)
            url = args.postgres_url
        else:
            url = f"sqlite:///{workdir / 'bench.db'}"
        server = Server(workdir, url, SECRET)
        await server.start()
        try:
            base = f"http://127.0.0.1:{server.port}"
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as api:
                started = time.perf_counter()
                ids = await fill(api, args.cases)
                took = time.perf_counter() - started
                print(
                    f"database: {'postgresql' if args.postgres_url else 'sqlite'}; "
                    f"{len(ids)} open cases submitted in {took:.1f} s"
                )
                token = await asyncio.to_thread(login_link, server)
                async with httpx.AsyncClient(base_url=base, timeout=60) as browser:
                    signed = await browser.post("/inbox/login", data={"token": token})
                    assert signed.status_code == 303, signed.text
                    for label, path in (
                        ("queue page 1", "/inbox/"),
                        ("queue, lane=expert", "/inbox/?lane=expert"),
                        ("queue page 150", "/inbox/?page=150"),
                        ("board", "/inbox/board"),
                        ("decided history", "/inbox/history"),
                    ):
                        found = await timed_pages(browser, path, args.pages)
                        print(
                            f"{label:<20} {found['n']:.0f} GETs one at a time: "
                            f"p50 {found['p50_ms']:.1f} ms, p90 {found['p90_ms']:.1f} ms, "
                            f"p95 {found['p95_ms']:.1f} ms, "
                            f"p99 {found['p99_ms']:.1f} ms, max {found['max_ms']:.1f} ms"
                        )
                    seen = []
                    page = (await browser.get(f"/inbox/cases/{ids[1]}")).text
                    match = CSRF.search(page)
                    assert match is not None
                    csrf = match.group(1)
                    for case_id in ids[1 : 1 + args.decisions]:
                        started = time.perf_counter()
                        answer = await browser.post(
                            f"/inbox/cases/{case_id}",
                            data={
                                "csrf": csrf,
                                "action": "approve",
                                "reason_code": "within_policy",
                            },
                        )
                        assert answer.status_code == 303, answer.text[:300]
                        while await read_status(api, case_id) != "approved":
                            if time.perf_counter() - started > 5:
                                raise RuntimeError(f"{case_id} not approved after 5 s")
                        seen.append(time.perf_counter() - started)
                    found = stats(seen)
                    print(
                        f"form approve -> API says approved, {found['n']:.0f} one at a time: "
                        f"p50 {found['p50_ms']:.1f} ms, p90 {found['p90_ms']:.1f} ms, "
                        f"p99 {found['p99_ms']:.1f} ms, max {found['max_ms']:.1f} ms"
                    )
            for line in await asyncio.to_thread(plans, url):
                print(f"plan {line}")
        finally:
            await server.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main())
