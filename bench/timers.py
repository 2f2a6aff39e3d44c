"""SLA clock benchmark: a real `signoff serve` holding 100,000 open cases with timers.

Seeds the database through Signoff's own intake (in this process, before the server
starts): N open cases whose SLA is a day away (their timers wait), and a few thousand
"probe" cases whose SLA is 60-120 s, so that their reminders (50% and 80%) fall due
while the server runs. Then starts `signoff serve` on that database and prints:

* server RSS (VmRSS of the process) once it has started, and at the end;
* one sweep's query time: the SLA clock's claim query, as the server runs it, timed
  from here against the same database (median and worst of 50);
* reminder lateness: `fired_at - due_at` of every probe reminder, as the server's clock
  wrote them (p50, p99, max), and how many fired (each must fire exactly once).

    .venv/bin/python bench/timers.py
    .venv/bin/python bench/timers.py --postgres-url postgresql://u:p@127.0.0.1/db

This is a benchmark that prints numbers, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from ingest import Server, percentile, reset_postgres  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bot.config import Settings  # noqa: E402
from bot.intake import prepare  # noqa: E402
from bot.runtime import Runtime  # noqa: E402
from bot.schemas import CaseIn  # noqa: E402
from bot.store.tables import events, timers  # noqa: E402

SECRET = "bench-webhook-secret"


def body(n: int, sla: str | None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "kind": "refund",
        "title": f"timer case {n}",
        "question": "Approve this refund?",
        "recommendation": {"action": "approve", "confidence": 0.8},
        "risk": {"amount": 50.0 + n % 500, "currency": "EUR", "reversible": True},
        "facts": {"order": f"A-{n}"},
    }
    if sla:
        found["sla"] = sla
    return found


async def seed(settings: Settings, count: int, probes: int) -> float:
    """Write `count` cases with a day's SLA, then `probes` with 60-120 s; return when
    the probes were written (time.time())."""
    runtime = Runtime(settings, adapters={})
    await runtime.start(workers=False)
    rng = random.Random(7)
    try:
        started = time.monotonic()

        async def submit(n: int, sla: str | None) -> None:
            case = CaseIn.model_validate(body(n, sla))
            prepared = prepare(case, runtime.policy, runtime.platforms, runtime.clock.now(), None)
            await runtime.writer.submit(prepared)

        for first in range(0, count, 2000):
            await asyncio.gather(
                *(submit(n, "24h") for n in range(first, min(count, first + 2000)))
            )
            if first % 20000 == 0:
                rate = (first + 2000) / (time.monotonic() - started)
                print(f"  seeded {first + 2000:,} cases ({rate:,.0f}/s)", file=sys.stderr)
        probed = time.time()
        await asyncio.gather(
            *(submit(count + n, f"{rng.randint(60, 120)}s") for n in range(probes))
        )
        return probed
    finally:
        await runtime.stop()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def claim_query_ms(settings: Settings, samples: int = 50) -> list[float]:
    """The SLA clock's claim query, timed against the server's database."""
    runtime = Runtime(settings, adapters={})
    await runtime.start(workers=False)
    try:
        times = []
        for _ in range(samples):
            now = runtime.clock.now()

            def run(conn: Any, now: Any = now) -> float:
                started = time.perf_counter()
                conn.execute(runtime.sla.due_query(now)).all()
                return time.perf_counter() - started

            times.append(await runtime.store.run_read(run) * 1000)
            await asyncio.sleep(0.02)
        return times
    finally:
        await runtime.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000, help="open cases with timers")
    parser.add_argument("--probes", type=int, default=2_000, help="cases whose reminders fire")
    parser.add_argument("--postgres-url", help="run on this PostgreSQL (its schema is reset)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.postgres_url:
            await reset_postgres(args.postgres_url)
        database = args.postgres_url or f"sqlite:///{work / 'signoff.db'}"
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=database,
            webhook_secret=SECRET,  # type: ignore[arg-type]
        )
        print(f"seeding {args.cases:,} cases and {args.probes:,} probes...", file=sys.stderr)
        await seed(settings, args.cases, args.probes)
        server = Server(work, database, SECRET)
        await server.start()
        assert server.proc is not None
        try:
            rss_start = rss_mb(server.proc.pid)
            queries = await claim_query_ms(settings)
            wanted = 2 * args.probes
            deadline = time.monotonic() + 240
            fired = 0
            while time.monotonic() < deadline:
                fired = await count_reminders(settings)
                if fired >= wanted:
                    break
                await asyncio.sleep(1.0)
            await asyncio.sleep(2.0)  # a doubled reminder would show by now
            rss_end = rss_mb(server.proc.pid)
        finally:
            await server.stop()
        late, fired, doubled = await lateness(settings)
    result = {
        "database": "postgresql" if args.postgres_url else "sqlite",
        "open_cases": args.cases + args.probes,
        "rss_mb_start": round(rss_start, 1),
        "rss_mb_end": round(rss_end, 1),
        "claim_query_ms_median": round(statistics.median(queries), 2),
        "claim_query_ms_max": round(max(queries), 2),
        "reminders_expected": wanted,
        "reminders_fired": fired,
        "reminders_doubled": doubled,
        "lateness_ms_p50": round(percentile(late, 50) * 1000, 1),
        "lateness_ms_p99": round(percentile(late, 99) * 1000, 1),
        "lateness_ms_max": round(late[-1] * 1000, 1) if late else 0.0,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    r = result
    print(f"database: {r['database']}, {r['open_cases']:,} open cases with timers")
    print(f"server RSS: {r['rss_mb_start']} MB after start, {r['rss_mb_end']} MB at the end")
    print(
        f"claim query: median {r['claim_query_ms_median']} ms, "
        f"worst {r['claim_query_ms_max']} ms (of 50)"
    )
    print(
        f"reminders: {r['reminders_fired']:,} of {r['reminders_expected']:,} fired, "
        f"{r['reminders_doubled']} twice; lateness p50 {r['lateness_ms_p50']} ms, "
        f"p99 {r['lateness_ms_p99']} ms, max {r['lateness_ms_max']} ms"
    )


async def count_reminders(settings: Settings) -> int:
    runtime = Runtime(settings, adapters={})
    try:
        async with runtime.engine.connect() as conn:
            query = select(func.count()).where(events.c.type == "reminded")
            return int((await conn.execute(query)).scalar_one())
    finally:
        await runtime.engine.dispose()


async def lateness(settings: Settings) -> tuple[list[float], int, int]:
    runtime = Runtime(settings, adapters={})
    try:
        async with runtime.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(timers.c.due_at, timers.c.fired_at).where(
                        timers.c.fired_at.is_not(None), timers.c.what.like("remind:%")
                    )
                )
            ).all()
            per_case = (
                await conn.execute(
                    select(events.c.case_id, func.count())
                    .where(events.c.type == "reminded")
                    .group_by(events.c.case_id)
                    .having(func.count() > 2)
                )
            ).all()
    finally:
        await runtime.engine.dispose()
    late = sorted((fired - due).total_seconds() for due, fired in rows)
    return late, len(rows), len(per_case)


if __name__ == "__main__":
    asyncio.run(main())
