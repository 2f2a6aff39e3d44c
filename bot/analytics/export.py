"""Export labelled decisions for evaluation and retraining (issue 6's feedback loop).

`signoff export decisions --since 2026-11-01 [--until 2026-11-08] [--format jsonl|csv]
[--output FILE] [--final-only] [--include-automatic]` writes one row per decision a
person made (each quorum vote is a row; `final` marks the one that settled the case),
in decision id order, with the case, the AI's recommendation and confidence, the
human decision, its reason, the reviewer and the timings. `FIELDS` is the column
order.

What is exported:

- Rows are decisions whose time (`decisions.at`) is at or after `since` and before
  `until` (half-open, so consecutive windows never share a row). Naive times are UTC.
- Only human decisions by default: decisions made by the `auto` and `block` lanes
  (`decided_by` = `policy`) and by an SLA timeout (`timeout`) are not labels a person
  gave. `include_automatic=True` (`--include-automatic`) adds them; `decided_by` says
  which is which. `final_only=True` keeps one row per decided case.
- Times are ISO 8601 UTC with microseconds and `Z`: `2026-11-01T09:30:00.000000Z`.
  `seconds_to_decide` is the decision's time minus the case's arrival, in seconds
  (wall time, including any time spent waiting for the workflow's answers).
- `lane` and `rule` are the case's at export time (after any SLA escalation);
  `policy_version` is that of the policy the decision was made under.
- `runner_up` is the runner-up the cards show: the best-scored of the
  recommendation's alternatives, else the first; empty without alternatives.

Redaction: every path of the policy's `sensitive` list, and of the case's kind's
`sensitive_fields`, has its value replaced by `"[redacted]"` (a missing value stays
missing). `facts.*` replaces every fact's value but keeps the keys; `facts.employee`
one fact's; `facts` the whole object. `decisions.reason` and `decisions.reviewer`
redact the reason and reviewer columns, `decisions.args` and `proposal` a modify's
edited arguments (`human_args`); `recommendation` redacts the recommended
action, the confidence and the runner-up. Paths to parts of the case that are not
exported (evidence, history, risk, ...) need nothing.

Formats: JSONL is one JSON object per line (`facts` and `metadata` are objects).
CSV (RFC 4180) has a header row, CRLF line ends, and quotes a value holding a comma,
a quote or a line break, which it keeps; `facts` and `metadata` are JSON text, booleans
are `true`/`false`, and a missing value is empty. Against formula injection when a CSV
is opened in a spreadsheet, a text value that begins with `=`, `+`, `-`, `@`, a tab or
a carriage return is written with a leading single quote (`'=cmd`); JSONL is written
as is.

Speed: rows stream through a server-side cursor (asyncpg on PostgreSQL, in one
read-only snapshot; on SQLite, a separate read connection in a worker thread, so the
event loop is not blocked) in batches of `BATCH` (SQLite) or `PG_BATCH` rows. Times
are formatted by the database; each row is formatted (orjson, the csv module) and
dropped before the next, and a batch's output is written in one piece, so memory
stays flat whatever the number of rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, BinaryIO, Literal

import click
import orjson
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from bot.policy import LoadedPolicy
from bot.store.db import Store
from policies.schema import Policy

Format = Literal["jsonl", "csv"]
REDACTED = "[redacted]"
BATCH = 1000  # rows fetched at a time from SQLite (in-process: small batches cost nothing)
PG_BATCH = 2000  # from PostgreSQL, a round trip each (the next is fetched meanwhile)

FIELDS: tuple[str, ...] = (
    "decision_id",  # decisions.id: rows come in this order; resume after the last one
    "case_id",
    "kind",
    "lane",  # the case's lane (after any escalation)
    "source",  # the workflow that submitted the case
    "rule",  # the policy rule that routed it
    "policy_version",  # the policy the decision was made under
    "created_at",  # when the case arrived
    "decided_at",  # when this decision (or vote) was made
    "seconds_to_decide",  # decided_at - created_at
    "recommended_action",  # the AI's recommendation
    "confidence",  # and its confidence, 0..1
    "runner_up",  # the best-scored alternative's action, if any
    "runner_up_confidence",
    "human_action",  # approve | reject | modify
    "human_args",  # a modify's full edited arguments (an object; JSON text in CSV), else null
    "overrode_ai",  # human_action differs from recommended_action
    "final",  # this row settled the case (the last vote of a quorum)
    "decided_by",  # human (policy and timeout with include_automatic)
    "reason_code",
    "reason",  # the reviewer's words
    "reviewer",  # platform:user_id
    "platform",
    "blind_review",  # the card hid the AI's recommendation
    "title",
    "question",
    "summary",
    "requested_by",
    "facts",  # an object in JSONL, JSON text in CSV
    "metadata",  # likewise
)

_INDEX = {name: i for i, name in enumerate(FIELDS)}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# the columns whose text comes from workflows, reviewers or policy authors; the others
# are ids, names matching ^[a-z0-9], numbers, times, booleans or JSON objects
# (the reviewer is `platform:user_id`; lanes, kinds, sources, platforms and reason
# codes match ^[a-z0-9]; the policy version is hex)
_FREE_TEXT = tuple(
    _INDEX[name]
    for name in ("rule", "runner_up", "reason", "title", "question", "summary", "requested_by")
)

# what each sensitive path redacts: whole columns, or keys of facts / metadata
_PATH_COLUMNS: dict[str, tuple[str, ...]] = {
    "source": ("source",),
    "kind": ("kind",),
    "title": ("title",),
    "question": ("question",),
    "summary": ("summary",),
    "requested_by": ("requested_by",),
    "facts": ("facts",),
    "metadata": ("metadata",),
    "recommendation": ("recommended_action", "confidence", "runner_up", "runner_up_confidence"),
    "recommendation.action": ("recommended_action",),
    "recommendation.confidence": ("confidence",),
    "recommendation.alternatives": ("runner_up", "runner_up_confidence"),
    "decisions.reason": ("reason",),
    "decisions.reviewer": ("reviewer",),
    "decisions.args": ("human_args",),
    "proposal": ("human_args",),
}

# the query's columns; times are formatted and subtracted by the database
_COLUMNS = (
    "d.id, d.case_id, c.kind, c.lane, c.source, c.rule, d.policy_version, {created}, {at}, "
    "{seconds}, c.recommended_action, c.confidence, d.action, d.args, d.overrode_ai, d.final, "
    "d.decided_by, d.reason_code, d.reason, d.reviewer, d.platform, c.blind_review, c.title, "
    "c.requested_by, {body}"
)
_PG_TIME = 'to_char({}, \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\')'
PG_COLUMNS = _COLUMNS.format(
    created=_PG_TIME.format("c.created_at"),
    at=_PG_TIME.format("d.at"),
    seconds="round(extract(epoch from d.at - c.created_at), 3)::float8",
    body="c.body",
)
# SQLite keeps times as text, `2026-11-01 09:30:00.000000` (naive UTC)
SQLITE_COLUMNS = _COLUMNS.format(
    created="replace(c.created_at, ' ', 'T') || 'Z'",
    at="replace(d.at, ' ', 'T') || 'Z'",
    seconds="round((julianday(d.at) - julianday(c.created_at)) * 86400.0, 3)",
    body="CAST(c.body AS BLOB)",  # bytes for orjson: no decoding to str first
)


@dataclass(frozen=True)
class _Plan:
    """What to redact in the rows of one kind of case."""

    columns: tuple[int, ...]
    facts_all: bool
    facts_keys: frozenset[str]
    metadata_all: bool
    metadata_keys: frozenset[str]


def _plan(paths: Iterable[str]) -> _Plan:
    columns: set[int] = set()
    keys: dict[str, set[str]] = {"facts": set(), "metadata": set()}
    every = {"facts": False, "metadata": False}
    for path in paths:
        root, _, child = path.partition(".")
        if root in keys and child:
            if child == "*":
                every[root] = True
            else:
                keys[root].add(child)
            continue
        columns.update(_INDEX[name] for name in _PATH_COLUMNS.get(path, ()))
    return _Plan(
        tuple(sorted(columns)),
        every["facts"],
        frozenset(keys["facts"]),
        every["metadata"],
        frozenset(keys["metadata"]),
    )


def _redact_keys(found: Any, every: bool, keys: frozenset[str]) -> Any:
    if not isinstance(found, dict) or not found:
        return found
    if every:
        return dict.fromkeys(found, REDACTED)
    if keys and not keys.isdisjoint(found):
        return {k: REDACTED if k in keys else v for k, v in found.items()}
    return found


def _runner_up(recommendation: Any) -> tuple[Any, Any]:
    """(action, confidence) of the best-scored alternative, else of the first."""
    alternatives = recommendation.get("alternatives") if isinstance(recommendation, dict) else None
    if not alternatives:
        return None, None
    best = alternatives[0]
    best_score = best.get("confidence")
    for alternative in alternatives[1:]:
        score = alternative.get("confidence")
        if score is not None and (best_score is None or score > best_score):
            best, best_score = alternative, score
    return best.get("action"), best_score


def _utc_text(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"


class _Rows:
    """Turns the query's rows into `FIELDS`-ordered values, redacted."""

    def __init__(self, policy: Policy, *, text: bool = False) -> None:
        self.policy = policy
        # CSV wants text: booleans as true/false, objects as JSON text
        self.true: Any = "true" if text else True
        self.false: Any = "false" if text else False
        self.text = text
        self.plans: dict[str, _Plan] = {}
        self._case_id: str | None = None
        self._case: tuple[Any, ...] = ()

    def plan(self, kind: str) -> _Plan:
        found = self.plans.get(kind)
        if found is None:
            found = self.plans[kind] = _plan(self.policy.sensitive_paths(kind))
        return found

    def _case_part(self, case_id: str, kind: str, body: str | bytes) -> tuple[Any, ...]:
        """What comes from the case's body, kept for its next decision (quorum votes)."""
        if case_id == self._case_id:
            return self._case
        parsed = orjson.loads(body)
        plan = self.plan(kind)
        facts = parsed.get("facts") or {}
        if plan.facts_all or plan.facts_keys:
            facts = _redact_keys(facts, plan.facts_all, plan.facts_keys)
        metadata = parsed.get("metadata") or {}
        if plan.metadata_all or plan.metadata_keys:
            metadata = _redact_keys(metadata, plan.metadata_all, plan.metadata_keys)
        if self.text:
            facts = orjson.dumps(facts).decode() if facts else "{}"
            metadata = orjson.dumps(metadata).decode() if metadata else "{}"
        self._case_id = case_id
        self._case = (
            *_runner_up(parsed.get("recommendation")),
            parsed.get("question"),
            parsed.get("summary"),
            facts,
            metadata,
            plan.columns,
        )
        return self._case

    def build(self, rows: Sequence[Sequence[Any]]) -> Iterator[list[Any]]:
        """Each row's values, one at a time: a row is formatted and dropped before the
        next is built, so a batch costs its fetched rows and its output, little more."""
        case_part = self._case_part
        true, false = self.true, self.false
        for row in rows:
            (
                decision_id,
                case_id,
                kind,
                lane,
                source,
                rule,
                version,
                created_at,
                decided_at,
                seconds,
                recommended,
                confidence,
                action,
                args,
                overrode,
                final,
                decided_by,
                code,
                reason,
                reviewer,
                platform,
                blind,
                title,
                requested_by,
                body,
            ) = row
            (
                runner_up,
                runner_up_confidence,
                question,
                summary,
                facts,
                metadata,
                redact,
            ) = case_part(case_id, kind, body)
            values = [
                decision_id,
                case_id,
                kind,
                lane,
                source,
                rule,
                version,
                created_at,
                decided_at,
                seconds,
                recommended,
                confidence,
                runner_up,
                runner_up_confidence,
                action,
                args if args is None or self.text else orjson.loads(args),
                true if overrode else false,
                true if final else false,
                decided_by,
                code,
                reason,
                reviewer,
                platform,
                true if blind else false,
                title,
                question,
                summary,
                requested_by,
                facts,
                metadata,
            ]
            for index in redact:
                if values[index] is not None:
                    values[index] = REDACTED
            yield values


def _jsonl(values: Iterable[list[Any]]) -> bytes:
    dumps, fields, newline = orjson.dumps, FIELDS, orjson.OPT_APPEND_NEWLINE
    chunk = bytearray()
    for row in values:
        # appended one by one: each row's bytes are freed at once and their memory reused
        chunk += dumps(dict(zip(fields, row, strict=True)), option=newline)
    return bytes(chunk)


class _Csv:
    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\r\n")

    def header(self) -> bytes:
        self.writer.writerow(FIELDS)
        return self._take()

    def _take(self) -> bytes:
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        return text.encode()

    def __call__(self, values: Iterable[list[Any]]) -> bytes:
        danger, writerow = _FORMULA_START, self.writer.writerow
        chunk = bytearray()
        for count, row in enumerate(values, 1):
            for index in _FREE_TEXT:
                value = row[index]
                if value and value.startswith(danger):
                    row[index] = "'" + value
            writerow(row)
            if count % 200 == 0:  # StringIO holds 4 bytes a character: keep it small
                chunk += self._take()
        chunk += self._take()
        return bytes(chunk)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _query(
    sqlite: bool,
    since: datetime,
    until: datetime | None,
    final_only: bool,
    include_automatic: bool,
) -> tuple[str, list[Any]]:
    where: list[str] = []
    args: list[Any] = []

    def arg(condition: str, value: Any) -> None:
        args.append(value)
        where.append(condition.format("?" if sqlite else f"${len(args)}"))

    def bind(value: datetime) -> Any:
        naive = value.astimezone(UTC).replace(tzinfo=None)
        return naive.isoformat(" ", "microseconds") if sqlite else naive

    arg("d.at >= {}", bind(since))
    if until is not None:
        arg("d.at < {}", bind(until))
    if not include_automatic:
        arg("d.decided_by = {}", "human")
    if final_only:
        arg("d.final = {}", True)
    sql = (
        f"SELECT {SQLITE_COLUMNS if sqlite else PG_COLUMNS} "  # noqa: S608 - no input in it
        "FROM decisions AS d JOIN cases AS c ON c.id = d.case_id "
        f"WHERE {' AND '.join(where)} ORDER BY d.id"
    )
    return sql, args


def _export_sqlite(
    engine: AsyncEngine,
    sql: str,
    args: list[Any],
    write: Callable[[Sequence[Sequence[Any]]], int],
    stop: threading.Event,
) -> int:
    url = engine.url.set(drivername="sqlite+pysqlite")
    reader = sa_create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})
    count = 0
    try:
        proxy = reader.raw_connection()
        try:
            cursor = proxy.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(sql, args)
                while not stop.is_set():
                    batch = cursor.fetchmany(BATCH)
                    if not batch:
                        break
                    count += write(batch)
            finally:
                cursor.close()
        finally:
            proxy.close()
    finally:
        reader.dispose()
    return count


async def _export_postgres(
    engine: AsyncEngine,
    sql: str,
    args: list[Any],
    write: Callable[[Sequence[Sequence[Any]]], int],
) -> int:
    count = 0
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        # one snapshot for the whole export, read through a server-side cursor; the
        # next batch is fetched while this one is formatted and written
        async with driver.transaction(isolation="repeatable_read", readonly=True):
            await driver.execute("SET LOCAL jit = off")  # compiling costs more than it saves
            cursor = await driver.cursor(sql, *args)
            pending = asyncio.ensure_future(cursor.fetch(PG_BATCH))
            try:
                while True:
                    batch = await pending
                    if not batch:
                        break
                    pending = asyncio.ensure_future(cursor.fetch(PG_BATCH))
                    await asyncio.sleep(0)  # let the FETCH go out before formatting
                    count += write(batch)
            finally:
                if not pending.done():
                    pending.cancel()
                    with contextlib.suppress(BaseException):  # cancelled, or failed as well
                        await pending
    return count


async def export_decisions(
    store_or_engine: Store | AsyncEngine,
    policy: LoadedPolicy | Policy,
    out: BinaryIO,
    *,
    since: datetime,
    until: datetime | None = None,
    fmt: Format = "jsonl",
    final_only: bool = False,
    include_automatic: bool = False,
) -> int:
    """Write the decisions made in [since, until) to `out` as `fmt`; return the rows
    written. See the module's documentation for the columns, redaction and formats."""
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"unknown format {fmt!r}: use jsonl or csv")
    since = _as_utc(since)
    until = None if until is None else _as_utc(until)
    if until is not None and until <= since:
        raise ValueError(f"until ({_utc_text(until)}) must be after since ({_utc_text(since)})")
    engine = store_or_engine.engine if isinstance(store_or_engine, Store) else store_or_engine
    rules = policy.policy if isinstance(policy, LoadedPolicy) else policy
    sqlite = engine.dialect.name == "sqlite"
    sql, args = _query(sqlite, since, until, final_only, include_automatic)
    rows = _Rows(rules, text=fmt == "csv")
    formatter: Callable[[Iterable[list[Any]]], bytes]
    if fmt == "csv":
        table = _Csv()
        out.write(table.header())
        formatter = table
    else:
        formatter = _jsonl

    def write(batch: Sequence[Sequence[Any]]) -> int:
        out.write(formatter(rows.build(batch)))
        return len(batch)

    if not sqlite:
        return await _export_postgres(engine, sql, args, write)
    stop = threading.Event()
    work = asyncio.get_running_loop().run_in_executor(
        None, _export_sqlite, engine, sql, args, write, stop
    )
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        stop.set()  # the thread ends after its current batch
        raise


# --- the command line ------------------------------------------------------------------


def parse_when(value: str) -> datetime:
    """A date (midnight UTC) or an ISO 8601 date and time (naive means UTC); ValueError
    with a sentence for people otherwise."""
    text = value.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), UTC)
        return _as_utc(datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(
            f"{value!r} is not a date or a time: write e.g. 2026-11-01 or 2026-11-01T09:30:00Z"
        ) from None


HELP = {"help_option_names": ["-h", "--help"]}  # as every signoff command


@click.group("export", context_settings=HELP)
def export_group() -> None:
    """Export decisions for evaluation and retraining."""


@export_group.command("decisions", context_settings=HELP)
@click.option(
    "--since",
    required=True,
    metavar="DATE|TIME",
    help="Decisions made at or after this date or ISO time (UTC unless it says otherwise).",
)
@click.option("--until", metavar="DATE|TIME", help="Decisions made before this (default: now).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv"]),
    default="jsonl",
    show_default=True,
    help="JSON lines, or CSV with a header row.",
)
@click.option("--output", "-o", metavar="FILE", help="Write to FILE (default: stdout).")
@click.option("--final-only", is_flag=True, help="Only the decision that settled each case.")
@click.option(
    "--include-automatic",
    is_flag=True,
    help="Also decisions by the auto/block lanes and SLA timeouts (decided_by says which).",
)
def export_decisions_command(
    since: str,
    until: str | None,
    fmt: Format,
    output: str | None,
    final_only: bool,
    include_automatic: bool,
) -> None:
    """Stream labelled decisions (case, AI recommendation, human decision, reason,
    reviewer, timings) as JSONL or CSV, with the policy's `sensitive` fields redacted.

    The database is SIGNOFF_DATABASE_URL and the policy SIGNOFF_POLICY, as for
    `signoff serve`. The count goes to stderr, so stdout holds only the rows; with
    --output, the file appears (mode 0600) only once the export is complete."""
    from bot.cli import fail, load_settings  # bot.cli registers this group
    from bot.errors import PolicyError, SignoffError
    from bot.policy import load_policy

    try:
        start = parse_when(since)
    except ValueError as exc:
        fail(f"--since: {exc}", 2)
    try:
        end = None if until is None else parse_when(until)
    except ValueError as exc:
        fail(f"--until: {exc}", 2)
    if end is not None and end <= start:
        fail(f"--until ({_utc_text(end)}) must be after --since ({_utc_text(start)})", 2)
    settings = load_settings()
    try:
        loaded = load_policy(settings.policy)
    except PolicyError as exc:
        for problem in exc.problems:
            click.echo(f"signoff: {problem}", err=True)
        raise SystemExit(2) from None
    target = None if output in (None, "-") else Path(str(output))
    sink = _Output(target)
    try:
        count = asyncio.run(
            _run(
                settings.database_url,
                loaded,
                sink.handle,
                since=start,
                until=end,
                fmt=fmt,
                final_only=final_only,
                include_automatic=include_automatic,
            )
        )
    except BrokenPipeError:  # stdout closed early (`| head`): stop quietly
        sink.discard()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        raise SystemExit(1) from None
    except SignoffError as exc:
        sink.discard()
        fail(exc.message, 2)
    except Exception as exc:
        sink.discard()
        fail(f"cannot export decisions: {type(exc).__name__}: {exc}", 1)
    except BaseException:
        sink.discard()
        raise
    sink.finish()
    click.echo(f"exported {count} decisions", err=True)


class _Output:
    """stdout, or a temporary file beside the target (mode 0600: the rows may be
    personal data) that is renamed onto it once complete, so a failed export leaves
    nothing behind."""

    def __init__(self, target: Path | None) -> None:
        from bot.cli import fail

        self.target = target
        self.partial: str | None = None
        if target is None:
            sys.stdout.flush()
            self.handle: BinaryIO = sys.stdout.buffer
            return
        if target.is_dir():
            fail(f"cannot write {target}: it is a directory", 2)
        try:
            fd, self.partial = tempfile.mkstemp(
                prefix=f".{target.name}.", suffix=".partial", dir=target.parent
            )
        except OSError as exc:
            fail(f"cannot write {target}: {exc.strerror}", 2)
        self.handle = os.fdopen(fd, "wb", buffering=1024 * 1024)

    def finish(self) -> None:
        if self.target is None or self.partial is None:
            self.handle.flush()
            return
        self.handle.close()
        os.replace(self.partial, self.target)

    def discard(self) -> None:
        if self.partial is None:
            return
        self.handle.close()
        with contextlib.suppress(OSError):
            os.unlink(self.partial)


async def _run(url: str, policy: LoadedPolicy, out: BinaryIO, **options: Any) -> int:
    from bot.errors import ConfigError
    from bot.store import db

    if make_url(db.async_url(url)).get_backend_name() == "sqlite":
        path = make_url(url).database
        if not path or not os.path.isfile(path):  # noqa: ASYNC240 - one stat, before any work
            raise ConfigError(f"no SQLite database at {path} (check SIGNOFF_DATABASE_URL)")
    engine = db.create_engine(url, pool_size=1)
    try:
        current, _head = await db.revision_state(engine)
        if current is None:
            raise ConfigError(
                "the database has no Signoff schema (check SIGNOFF_DATABASE_URL, "
                "or run `signoff db upgrade`)"
            )
        return await export_decisions(engine, policy, out, **options)
    finally:
        await engine.dispose()
