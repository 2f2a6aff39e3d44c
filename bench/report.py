"""Report benchmark: 1,000,000 human decisions (one per case, over 26 weeks, plus the
automatic cases around them) in SQLite or PostgreSQL; then

* the weekly report for one full week (about 38,000 decisions), built as `signoff report
  weekly` and `GET /v1/reports/weekly` build it, timed over several runs (target < 1 s);
* the decisions export of the whole million as JSONL and CSV, in rows per second
  (target >= 50,000/s), with the peak RSS of the export measured in a child process at
  100,000 and at 1,000,000 rows (memory must stay flat).

    .venv/bin/python bench/report.py
    .venv/bin/python bench/report.py --postgres-url postgresql://u:p@127.0.0.1/db

Seeding writes straight into the tables (executemany on SQLite, COPY on PostgreSQL).
This is a benchmark that prints numbers, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from ingest import plain_pg_url, reset_postgres  # noqa: E402

from bot.analytics.report import Week, weekly  # noqa: E402
from bot.policy import load_policy  # noqa: E402
from bot.store import db as store  # noqa: E402

KINDS = [f"kind_{i}" for i in range(8)]
REVIEWERS = [f"slack:U{i:04d}" for i in range(40)]
WEEKS = 26
FIRST = Week.parse("2026-W21")
CASE_COLUMNS = [
    "id",
    "source",
    "kind",
    "title",
    "status",
    "lane",
    "rule",
    "policy_version",
    "recommended_action",
    "confidence",
    "requested_by",
    "callback_url",
    "audit_sampled",
    "blind_review",
    "due_at",
    "acknowledged_at",
    "acknowledged_by",
    "claimed_by",
    "claimed_at",
    "decided_at",
    "created_at",
    "updated_at",
    "version",
    "idempotency_key",
    "request_hash",
    "submit_response",
    "body",
]
DECISION_COLUMNS = [
    *("case_id", "action", "reason_code", "reason", "reviewer", "platform", "decided_by"),
    *("final", "overrode_ai", "policy_version", "at", "kind", "lane", "confidence"),
    *("blind_review", "case_created_at", "due_at"),
]
BODY = json.dumps(
    {
        "title": "Refund a duplicate charge",
        "question": "Approve this refund?",
        "summary": "A customer asks for a refund of a duplicate charge.",
        "recommendation": {
            "action": "approve",
            "confidence": 0.8,
            "alternatives": [{"action": "reject", "confidence": 0.2}],
        },
        "facts": {"order": "A-1", "customer": "c-42", "employee": "Dana"},
    }
)


def rows(total: int) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """(case, decision) rows: `total` decided cases spread evenly over WEEKS weeks."""
    span = timedelta(days=7 * WEEKS)
    start = FIRST.start.astimezone(UTC).replace(tzinfo=None)
    for n in range(total):
        at = start + span * (n / total)
        kind = KINDS[n % len(KINDS)]
        confidence = 0.5 + (n * 7919 % 500) / 1000
        overrode = (n * 31 % 100) < (8 if kind != "kind_3" else 40)
        action = "reject" if overrode else "approve"
        decided = at + timedelta(seconds=60 + n % 3600)
        case_id = f"{n:012x}bench{n:011d}"
        yield (
            (
                case_id,
                "default",
                kind,
                f"case {n}",
                action + "d",
                "review",
                "rule 4",
                "v1",
                "approve",
                confidence,
                None,
                None,
                False,
                n % 10 == 0,
                at + timedelta(hours=4),
                None,
                None,
                None,
                None,
                decided,
                at,
                decided,
                2,
                None,
                f"{n:064x}",
                "{}",
                BODY,
            ),
            (
                case_id,
                action,
                "policy_violation" if overrode else "policy_match",
                "Receipt missing." if overrode else None,
                REVIEWERS[n % len(REVIEWERS)],
                "slack",
                "human",
                True,
                overrode,
                "v1",
                decided,
                kind,
                "review",
                confidence,
                n % 10 == 0,
                at,
                at + timedelta(hours=4),
            ),
        )


def seed_sqlite(path: str, total: int) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    marks_c = ",".join("?" * len(CASE_COLUMNS))
    marks_d = ",".join("?" * len(DECISION_COLUMNS))
    batch_c: list[tuple[Any, ...]] = []
    batch_d: list[tuple[Any, ...]] = []
    for c, d in rows(total):
        batch_c.append(tuple(v.isoformat(" ") if isinstance(v, datetime) else v for v in c))
        batch_d.append(tuple(v.isoformat(" ") if isinstance(v, datetime) else v for v in d))
        if len(batch_c) >= 50_000:
            _flush(db, marks_c, marks_d, batch_c, batch_d)
    _flush(db, marks_c, marks_d, batch_c, batch_d)
    db.execute("ANALYZE")
    db.commit()
    db.close()


def _flush(
    db: sqlite3.Connection,
    marks_c: str,
    marks_d: str,
    batch_c: list[tuple[Any, ...]],
    batch_d: list[tuple[Any, ...]],
) -> None:
    db.executemany(f"INSERT INTO cases ({','.join(CASE_COLUMNS)}) VALUES ({marks_c})", batch_c)  # noqa: S608
    db.executemany(
        f"INSERT INTO decisions ({','.join(DECISION_COLUMNS)}) VALUES ({marks_d})",  # noqa: S608
        batch_d,
    )
    db.commit()
    batch_c.clear()
    batch_d.clear()


async def seed_postgres(url: str, total: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(plain_pg_url(url))
    try:
        cases_batch: list[tuple[Any, ...]] = []
        decisions_batch: list[tuple[Any, ...]] = []
        for c, d in rows(total):
            cases_batch.append(c)
            decisions_batch.append(d)
            if len(cases_batch) >= 50_000:
                await _copy(conn, cases_batch, decisions_batch)
        await _copy(conn, cases_batch, decisions_batch)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def _copy(conn: Any, cases_batch: list[Any], decisions_batch: list[Any]) -> None:
    await conn.copy_records_to_table("cases", records=cases_batch, columns=CASE_COLUMNS)
    await conn.copy_records_to_table("decisions", records=decisions_batch, columns=DECISION_COLUMNS)
    cases_batch.clear()
    decisions_batch.clear()


async def time_report(url: str, runs: int) -> dict[str, Any]:
    engine = store.create_engine(url)
    policy = load_policy(None)
    week = Week.parse("2026-W34")  # a full week in the middle
    timings = []
    try:
        for _ in range(runs):
            started = time.perf_counter()
            report = await weekly(engine, policy, week, datetime(2026, 12, 1, tzinfo=UTC))
            timings.append(time.perf_counter() - started)
    finally:
        await engine.dispose()
    return {
        "week": week.label,
        "decisions_in_week": report.human_decisions,
        "flags": sorted({f.code for f in report.flags}),
        "seconds": [round(t, 3) for t in timings],
        "best": round(min(timings), 3),
        "worst": round(max(timings), 3),
    }


EXPORT_CHILD = """
import asyncio, resource, sys, time
from datetime import datetime, UTC
sys.path[:0] = [{root!r}]
from bot.analytics.export import export_decisions
from bot.policy import load_policy
from bot.store import db as store

async def main():
    engine = store.create_engine({url!r})
    policy = load_policy(None)
    started = time.perf_counter()
    with open({out!r}, "wb") as out:
        n = await export_decisions(engine, policy, out, since=datetime(2026, 1, 1, tzinfo=UTC),
                                   until=datetime.fromisoformat({until!r}), fmt={fmt!r})
    took = time.perf_counter() - started
    await engine.dispose()
    print(n, took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)

asyncio.run(main())
"""


def time_export(url: str, fmt: str, share: float, work: Path) -> dict[str, Any]:
    """The export of the first `share` of the history (decisions are spread evenly over
    time) in a child process: rows, seconds, peak RSS (MB)."""
    out = work / f"export.{fmt}"
    until = FIRST.start.astimezone(UTC) + timedelta(days=7 * WEEKS) * share + timedelta(hours=2)
    code = EXPORT_CHILD.format(
        root=str(ROOT), url=url, out=str(out), fmt=fmt, until=until.isoformat()
    )
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=900
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    n, took, rss = done.stdout.split()
    size = out.stat().st_size
    out.unlink()
    return {
        "format": fmt,
        "rows": int(n),
        "seconds": round(float(took), 2),
        "rows_per_second": round(int(n) / float(took)),
        "peak_rss_mb": round(int(rss) / 1024, 1),
        "file_mb": round(size / 1e6, 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.postgres_url:
            await reset_postgres(args.postgres_url)
            url = args.postgres_url
        else:
            url = f"sqlite:///{work / 'report.db'}"
        engine = store.create_engine(url)
        await store.upgrade(engine)
        await engine.dispose()
        started = time.perf_counter()
        if args.postgres_url:
            await seed_postgres(url, args.decisions)
        else:
            seed_sqlite(url.removeprefix("sqlite:///"), args.decisions)
        seeded = time.perf_counter() - started
        report = await time_report(url, args.runs)
        exports = []
        for fmt in ("jsonl", "csv"):
            exports.append(time_export(url, fmt, 1.0, work))
        small = time_export(url, "jsonl", min(1.0, 100_000 / args.decisions), work)
        return {
            "database": "postgresql" if args.postgres_url else "sqlite",
            "decisions": args.decisions,
            "seed_seconds": round(seeded, 1),
            "report": report,
            "exports": exports,
            "export_small": small,
            "bench_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="report runs")
    parser.add_argument("--postgres-url", help="run on this PostgreSQL (its schema is reset)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    r = result["report"]
    print(
        f"database: {result['database']}, {result['decisions']:,} decisions "
        f"(seeded in {result['seed_seconds']} s)"
    )
    print(
        f"weekly report for {r['week']} ({r['decisions_in_week']:,} decisions): best "
        f"{r['best']} s, worst {r['worst']} s over {len(r['seconds'])} runs; flags {r['flags']}"
    )
    for e in result["exports"]:
        print(
            f"export {e['format']}: {e['rows']:,} rows in {e['seconds']} s = "
            f"{e['rows_per_second']:,} rows/s, peak RSS {e['peak_rss_mb']} MB, "
            f"file {e['file_mb']} MB"
        )
    small = result["export_small"]
    print(
        f"export of {small['rows']:,} rows: peak RSS {small['peak_rss_mb']} MB "
        "(against the whole export's, for flat memory)"
    )


if __name__ == "__main__":
    os.environ.setdefault("SIGNOFF_LOG_LEVEL", "WARNING")
    main()
