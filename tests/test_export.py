"""`signoff export decisions`: labelled rows for evaluation and retraining, redacted as
the policy says, streamed with flat memory. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from bot.analytics.export import FIELDS, export_decisions, export_group
from bot.clock import FrozenClock
from bot.intake import prepare
from bot.policy import LoadedPolicy, parse_policy
from bot.protocols import Reviewer
from bot.runtime import Runtime
from bot.schemas import CaseIn
from bot.store.bulk import BulkInsert
from bot.store.tables import cases, decisions
from tests.conftest import CASE, TEST_POLICY, MakeRuntime, case

ALICE = Reviewer("memory", "U0ALICE", "Alice")
BOB = Reviewer("memory", "U0BOB", "Bob")
OPS = [Reviewer("memory", f"U0OPS{i}", f"Ops {i}") for i in (1, 2)]
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
SINCE = datetime(2026, 11, 1, tzinfo=UTC)
MULTILINE = 'Over budget:\nline two, with a comma and "quotes"\r\nline three'
INJECTION = "=cmd|' /C calc'!A0"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SIGNOFF_* setting from the developer's environment (SIGNOFF_TEST_* stays), and
    a cwd without a `.env`."""
    for name in list(os.environ):
        if name.startswith("SIGNOFF_") and not name.startswith("SIGNOFF_TEST_"):
            monkeypatch.delenv(name)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
async def rt(make_runtime: MakeRuntime, database_url: str, clock: FrozenClock) -> Runtime:
    return await make_runtime(database_url, workers=False, clock=clock)


def with_sensitive(*lines: str) -> LoadedPolicy:
    """The test policy with more top-level lines (e.g. `sensitive: [...]`)."""
    text = TEST_POLICY.read_text() + "\n".join(lines) + "\n"
    return parse_policy(text.encode(), "sensitive.yaml")


async def submit(rt: Runtime, **changes: Any) -> str:
    body = CaseIn.model_validate(case(**changes))
    accepted = await rt.writer.submit(prepare(body, rt.policy, rt.platforms, rt.clock.now(), None))
    return str(accepted.response["id"])


async def export(rt: Runtime, policy: LoadedPolicy | None = None, **options: Any) -> bytes:
    out = io.BytesIO()
    count = await export_decisions(
        rt.store, policy or rt.policy, out, **{"since": SINCE, **options}
    )
    data = out.getvalue()
    if options.get("fmt", "jsonl") == "jsonl":
        assert count == len(data.splitlines())
    return data


def jsonl(data: bytes) -> list[dict[str, Any]]:
    rows = [orjson.loads(line) for line in data.splitlines()]
    for row in rows:
        assert tuple(row) == FIELDS
    return rows


def read_csv(data: bytes) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(data.decode(), newline=""))
    assert tuple(reader.fieldnames or ()) == FIELDS
    return list(reader)


async def case_row(rt: Runtime, case_id: str) -> dict[str, Any]:
    async with rt.engine.connect() as conn:
        row = (await conn.execute(select(cases).where(cases.c.id == case_id))).mappings().one()
    return dict(row)


async def seed_review(rt: Runtime, clock: FrozenClock) -> tuple[str, str]:
    """One review case rejected against the AI, 90.5 s after it came; one stop-the-line
    case approved by a quorum of two."""
    reviewed = await submit(
        rt,
        metadata={"customer_email": "erin@example.com", "ticket": "T-9"},
        **{"recommendation.alternatives": [{"action": "escalate"}, {"action": "reject"}]},
    )
    clock.advance(90.5)
    await rt.service.decide(reviewed, ALICE, "reject", "policy_violation", MULTILINE)
    clock.advance(60)
    quorum = await submit(rt, flags=["data_leakage"], title=INJECTION)
    clock.advance(30)
    await rt.service.decide(quorum, OPS[0], "approve", "policy_match", "@SUM(A1)")
    clock.advance(30)
    await rt.service.decide(quorum, OPS[1], "approve", "policy_match", "ok")
    return reviewed, quorum


# --- the rows --------------------------------------------------------------------------


async def test_every_column(rt: Runtime, clock: FrozenClock) -> None:
    reviewed, quorum = await seed_review(rt, clock)
    first, vote, last = jsonl(await export(rt))
    stored = await case_row(rt, reviewed)
    assert first == {
        "decision_id": first["decision_id"],
        "case_id": reviewed,
        "kind": "expense_approval",
        "lane": "review",
        "source": "default",
        "rule": stored["rule"],
        "policy_version": rt.policy.version,
        "created_at": "2026-11-02T09:00:00.000000Z",
        "decided_at": "2026-11-02T09:01:30.500000Z",
        "seconds_to_decide": 90.5,
        "recommended_action": "approve",
        "confidence": 0.82,
        "runner_up": "escalate",  # none is scored: the first
        "runner_up_confidence": None,
        "human_action": "reject",
        "human_args": None,
        "overrode_ai": True,
        "final": True,
        "decided_by": "human",
        "reason_code": "policy_violation",
        "reason": MULTILINE,
        "reviewer": "memory:U0ALICE",
        "platform": "memory",
        "blind_review": stored["blind_review"],
        "title": CASE["title"],
        "question": CASE["question"],
        "summary": CASE["summary"],
        "requested_by": "dana@example.com",
        "facts": {"employee": "Dana", "cost_center": "ENG-042"},
        "metadata": {"customer_email": "erin@example.com", "ticket": "T-9"},
    }
    assert isinstance(first["decision_id"], int)
    # the quorum: a row per vote, in decision order; the second settled the case
    assert [r["case_id"] for r in (vote, last)] == [quorum, quorum]
    assert first["decision_id"] < vote["decision_id"] < last["decision_id"]
    assert (vote["final"], last["final"]) == (False, True)
    assert (vote["reviewer"], last["reviewer"]) == ("memory:U0OPS1", "memory:U0OPS2")
    assert vote["lane"] == "stop_the_line"
    assert (vote["seconds_to_decide"], last["seconds_to_decide"]) == (30.0, 60.0)
    assert (vote["overrode_ai"], vote["human_action"]) == (False, "approve")
    assert vote["runner_up"] == "reject"  # the conftest case's one scored alternative
    assert vote["runner_up_confidence"] == 0.18
    assert vote["title"] == INJECTION  # JSONL is written as is
    assert vote["metadata"] == {}


async def test_csv_round_trips(rt: Runtime, clock: FrozenClock) -> None:
    await seed_review(rt, clock)
    data = await export(rt, fmt="csv")
    assert data.startswith(",".join(FIELDS).encode() + b"\r\n")
    first, vote, last = read_csv(data)
    from_jsonl = jsonl(await export(rt))[0]
    for name in FIELDS:
        expected = from_jsonl[name]
        if isinstance(expected, bool):
            expected = "true" if expected else "false"
        elif isinstance(expected, dict):
            assert orjson.loads(first[name]) == expected
            continue
        elif expected is None:
            expected = ""
        assert first[name] == str(expected), name
    assert first["reason"] == MULTILINE  # line breaks, commas and quotes kept
    # formula injection: a leading single quote
    assert vote["title"] == "'" + INJECTION
    assert vote["reason"] == "'@SUM(A1)"
    assert last["reason"] == "ok"
    assert (vote["final"], last["final"]) == ("false", "true")
    assert vote["metadata"] == "{}"


async def test_automatic_decisions_only_when_asked(rt: Runtime, clock: FrozenClock) -> None:
    auto = await submit(rt, **{"recommendation.confidence": 0.97})
    clock.advance(5)
    reviewed = await submit(rt)
    await rt.service.decide(reviewed, BOB, "approve", "policy_match", "fine")
    assert [r["case_id"] for r in jsonl(await export(rt))] == [reviewed]
    both = jsonl(await export(rt, include_automatic=True))
    assert [(r["case_id"], r["decided_by"]) for r in both] == [
        (auto, "policy"),
        (reviewed, "human"),
    ]
    assert both[0]["reviewer"] == "policy"
    assert both[0]["seconds_to_decide"] == 0.0


async def test_since_until_and_final_only(rt: Runtime, clock: FrozenClock) -> None:
    made = []
    for hours in range(3):
        clock.set(T0 + timedelta(hours=hours))
        case_id = await submit(rt)
        await rt.service.decide(case_id, ALICE, "approve", "policy_match", "fine")
        made.append(case_id)
    quorum = await submit(rt, flags=["data_leakage"])
    await rt.service.decide(quorum, OPS[0], "approve", "policy_match", "a")
    await rt.service.decide(quorum, OPS[1], "approve", "policy_match", "b")

    async def exported(**options: Any) -> list[str]:
        return [r["case_id"] for r in jsonl(await export(rt, **options))]

    assert await exported() == [*made, quorum, quorum]
    one_hour = T0 + timedelta(hours=1)
    assert await exported(since=one_hour) == [made[1], made[2], quorum, quorum]
    assert await exported(since=one_hour + timedelta(microseconds=1)) == [made[2], quorum, quorum]
    # until is exclusive, so back-to-back windows share no row
    assert await exported(since=T0, until=one_hour) == [made[0]]
    assert await exported(since=one_hour, until=T0 + timedelta(hours=2)) == [made[1]]
    assert await exported(since=T0 + timedelta(days=1)) == []
    assert await exported(final_only=True) == [*made, quorum]
    # naive times are UTC; other zones are converted
    assert await exported(since=one_hour.replace(tzinfo=None), until=T0 + timedelta(hours=2)) == [
        made[1]
    ]
    assert await exported(
        since=one_hour.astimezone(ZoneInfo("Europe/Berlin")), until=T0 + timedelta(hours=2)
    ) == [made[1]]


async def test_bad_arguments(rt: Runtime) -> None:
    with pytest.raises(ValueError, match=r"until \(2026-11-01T00:00:00.000000Z\) must be after"):
        await export(rt, until=SINCE)
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        await export(rt, fmt="xml")


# --- redaction -------------------------------------------------------------------------


async def test_redaction(rt: Runtime, clock: FrozenClock) -> None:
    await seed_review(rt, clock)
    policy = with_sensitive(
        "sensitive: [requested_by, facts.employee, decisions.reason, metadata.customer_email]"
    )
    first, vote, _ = jsonl(await export(rt, policy))
    assert first["requested_by"] == "[redacted]"
    assert first["facts"] == {"employee": "[redacted]", "cost_center": "ENG-042"}
    assert first["metadata"] == {"customer_email": "[redacted]", "ticket": "T-9"}
    assert first["reason"] == vote["reason"] == "[redacted]"
    assert first["title"] == CASE["title"]  # the rest is as it was
    assert first["reviewer"] == "memory:U0ALICE"
    rows = read_csv(await export(rt, policy, fmt="csv"))
    assert rows[0]["requested_by"] == rows[0]["reason"] == "[redacted]"
    assert orjson.loads(rows[0]["facts"]) == {"employee": "[redacted]", "cost_center": "ENG-042"}
    everything = b"".join([await export(rt, policy), await export(rt, policy, fmt="csv")])
    for secret in (b"dana@example.com", b"Dana", b"erin@example.com", b"Over budget", b"SUM"):
        assert secret not in everything


async def test_every_fact_and_whole_fields(rt: Runtime, clock: FrozenClock) -> None:
    await seed_review(rt, clock)
    policy = with_sensitive(
        "sensitive:",
        "  - facts.*",
        "  - summary",
        "  - question",
        "  - decisions.reviewer",
        "  - recommendation.alternatives",
        "  - metadata",
    )
    first, vote, _ = jsonl(await export(rt, policy))
    assert first["facts"] == {"employee": "[redacted]", "cost_center": "[redacted]"}
    assert first["summary"] == first["question"] == first["reviewer"] == "[redacted]"
    assert first["runner_up"] == "[redacted]"
    assert first["runner_up_confidence"] is None  # missing stays missing
    assert first["metadata"] == vote["metadata"] == "[redacted]"
    assert first["reason"] == MULTILINE
    assert first["requested_by"] == "dana@example.com"


async def test_a_kinds_sensitive_fields(rt: Runtime, clock: FrozenClock) -> None:
    await seed_review(rt, clock)
    text = TEST_POLICY.read_text().replace(
        "    reason_codes: [policy_match, policy_violation, missing_receipt, suspected_fraud, "
        "other]\n",
        "    reason_codes: [policy_match, policy_violation, missing_receipt, suspected_fraud, "
        "other]\n    sensitive_fields: [facts.cost_center]\n",
    )
    policy = parse_policy(text.encode(), "kind.yaml")
    assert policy.policy.kinds["expense_approval"].sensitive_fields == ["facts.cost_center"]
    first = jsonl(await export(rt, policy))[0]
    assert first["facts"] == {"employee": "Dana", "cost_center": "[redacted]"}


# --- the command -----------------------------------------------------------------------


def invoke(args: list[str], **env: str) -> Result:
    return CliRunner().invoke(
        export_group, args, env=env, catch_exceptions=False, prog_name="signoff export"
    )


async def test_command(rt: Runtime, clock: FrozenClock, database_url: str, tmp_path: Path) -> None:
    reviewed, quorum = await seed_review(rt, clock)
    policy = tmp_path / "policy.yaml"
    policy.write_text(TEST_POLICY.read_text() + "sensitive: [requested_by]\n")
    env = {"SIGNOFF_DATABASE_URL": database_url, "SIGNOFF_POLICY": str(policy)}
    # the command runs its own event loop: give it a thread
    done = await asyncio.to_thread(invoke, ["decisions", "--since", "2026-11-01"], **env)
    assert done.exit_code == 0, done.output
    assert done.stderr == "exported 3 decisions\n"
    rows = jsonl(done.stdout_bytes)
    assert [r["case_id"] for r in rows] == [reviewed, quorum, quorum]
    assert {r["requested_by"] for r in rows} == {"[redacted]"}

    target = tmp_path / "out.csv"
    args = ["decisions", "--since", "2026-11-02T09:02:00", "--until", "2026-11-02T10:00Z"]
    done = await asyncio.to_thread(
        invoke, [*args, "--format", "csv", "--output", str(target), "--final-only"], **env
    )
    assert done.exit_code == 0, done.output
    assert (done.stdout, done.stderr) == ("", "exported 1 decisions\n")
    [row] = read_csv(target.read_bytes())
    assert (row["case_id"], row["reviewer"], row["final"]) == (quorum, "memory:U0OPS2", "true")
    assert target.stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob(".out.csv.*"))  # noqa: ASYNC240 - no partial file left


BAD_INPUT = [
    ("no since", [], "Error: Missing option '--since'."),
    (
        "a bad date",
        ["--since", "2026-13-01"],
        "signoff: --since: '2026-13-01' is not a date or a time: "
        "write e.g. 2026-11-01 or 2026-11-01T09:30:00Z",
    ),
    (
        "a bad until",
        ["--since", "2026-11-01", "--until", "next week"],
        "signoff: --until: 'next week' is not a date or a time: "
        "write e.g. 2026-11-01 or 2026-11-01T09:30:00Z",
    ),
    (
        "until before since",
        ["--since", "2026-11-08", "--until", "2026-11-01"],
        "signoff: --until (2026-11-01T00:00:00.000000Z) must be after "
        "--since (2026-11-08T00:00:00.000000Z)",
    ),
    (
        "until equal to since",
        ["--since", "2026-11-01T10:00:00+01:00", "--until", "2026-11-01T09:00Z"],
        "signoff: --until (2026-11-01T09:00:00.000000Z) must be after "
        "--since (2026-11-01T09:00:00.000000Z)",
    ),
    (
        "an unknown format",
        ["--since", "2026-11-01", "--format", "xml"],
        "Error: Invalid value for '--format': 'xml' is not one of 'jsonl', 'csv'.",
    ),
    (
        "an unwritable output",
        ["--since", "2026-11-01", "--output", "{tmp}/nowhere/out.csv"],
        "signoff: cannot write {tmp}/nowhere/out.csv: No such file or directory",
    ),
    (
        "an output that is a directory",
        ["--since", "2026-11-01", "--output", "{tmp}"],
        "signoff: cannot write {tmp}: it is a directory",
    ),
    (
        "no database",
        ["--since", "2026-11-01", "--output", "{tmp}/out.csv"],
        "signoff: no SQLite database at {tmp}/missing.db (check SIGNOFF_DATABASE_URL)",
    ),
]


@pytest.mark.parametrize(
    ("args", "message"), [b[1:] for b in BAD_INPUT], ids=[b[0] for b in BAD_INPUT]
)
def test_command_refuses_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    before = sorted(tmp_path.rglob("*"))
    tmp = str(tmp_path)
    done = invoke(
        ["decisions", *[a.replace("{tmp}", tmp) for a in args]],
        SIGNOFF_DATABASE_URL=f"sqlite:///{tmp_path / 'missing.db'}",
    )
    assert done.exit_code == 2
    assert done.stdout == ""
    assert done.stderr.splitlines()[-1] == message.replace("{tmp}", tmp)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def test_command_refuses_a_bad_policy(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(TEST_POLICY.read_text() + "sensitive: [facts..x]\n")
    done = invoke(["decisions", "--since", "2026-11-01"], SIGNOFF_POLICY=str(policy))
    assert done.exit_code == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"signoff: {policy}:")
    assert "sensitive[0]: 'facts..x' is not a field path" in done.stderr


# --- streaming -------------------------------------------------------------------------


class Sink(io.RawIOBase):
    """Counts what is written and keeps none of it."""

    def __init__(self) -> None:
        self.size = 0
        self.lines = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.size += len(data)
        self.lines += bytes(data).count(b"\n")
        return len(data)


async def seed_bulk(rt: Runtime, count: int) -> None:
    """`count` decided cases, written straight into the tables."""
    body = CaseIn.model_validate(case(summary="s" * 400)).model_dump_json()
    insert_cases, insert_decisions = BulkInsert(cases), BulkInsert(decisions)
    base = {c.key: None for c in cases.columns}

    def work(conn: Any) -> None:
        for start in range(0, count, 5000):
            case_rows, decision_rows = [], []
            for i in range(start, min(count, start + 5000)):
                at = T0 + timedelta(seconds=i)
                case_id = f"bulk{i:024d}"
                case_rows.append(
                    {
                        **base,
                        "id": case_id,
                        "source": "default",
                        "kind": "expense_approval",
                        "title": f"Expense {i}",
                        "status": "approved",
                        "lane": "review",
                        "rule": "rule 4",
                        "policy_version": "v1",
                        "recommended_action": "approve",
                        "confidence": 0.8,
                        "requested_by": "dana@example.com",
                        "audit_sampled": False,
                        "blind_review": False,
                        "decided_at": at,
                        "created_at": at - timedelta(minutes=5),
                        "updated_at": at,
                        "version": 2,
                        "request_hash": "h",
                        "submit_response": "{}",
                        "body": body,
                    }
                )
                decision_rows.append(
                    {
                        "case_id": case_id,
                        "action": "approve",
                        "reason_code": "policy_match",
                        "reason": "within policy",
                        "reviewer": "memory:U0ALICE",
                        "platform": "memory",
                        "decided_by": "human",
                        "final": True,
                        "overrode_ai": False,
                        "policy_version": "v1",
                        "at": at,
                    }
                )
            insert_cases(conn, case_rows)
            insert_decisions(conn, decision_rows)

    await rt.store.run_write(work)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_streams_with_flat_memory(rt: Runtime, fmt: str) -> None:
    count = 20_000
    await seed_bulk(rt, count)

    async def peak_growth(until: datetime | None) -> tuple[int, Sink, int]:
        sink = Sink()
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            written = await export_decisions(
                rt.store,
                rt.policy,
                sink,  # type: ignore[arg-type]
                since=SINCE,
                until=until,
                fmt=fmt,  # type: ignore[arg-type]
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return written, sink, peak - before

    written, sink, grown = await peak_growth(None)
    assert written == count
    assert sink.lines >= count
    # all the rows in memory at once would take some 60 MB, and the output alone 15 MB
    # (CSV) to 23 MB (JSONL); two batches in flight take 5 to 11 MB
    assert sink.size > 15_000_000
    assert grown < 16 * 2**20, f"peak memory grew by {grown / 2**20:.1f} MiB"
    # flat: four times the rows (a few batches against many), about the same memory
    few, _, grown_few = await peak_growth(T0 + timedelta(seconds=count // 4))
    assert few == count // 4
    assert grown < grown_few + 2**20, (grown, grown_few)
