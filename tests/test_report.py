"""The weekly report on a designed history (tests/history.py): every number and flag is
known by construction, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bot.analytics.report import (
    Flag,
    Rate,
    Report,
    Week,
    build,
    flags,
    suggest_threshold,
    two_proportion_p,
)
from bot.runtime import Runtime
from tests.conftest import MakeRuntime
from tests.history import WEEK, now_after, seed


@pytest.fixture
async def seeded(make_runtime: MakeRuntime, database_url: str) -> Runtime:
    rt = await make_runtime(database_url, workers=False)
    await rt.store.run_write(seed)
    return rt


async def report_of(rt: Runtime, week: Week = WEEK) -> Report:
    return await rt.store.run_read(lambda conn: build(conn, rt.policy, week, now_after(week)))


def by_code(found: list[Flag]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for flag in found:
        out.setdefault(flag.code, set()).add(flag.subject)
    return out


async def test_the_numbers_of_the_designed_week(seeded: Runtime) -> None:
    report = await report_of(seeded)
    assert report.week == "2026-W47"
    human_cases = 360 + 100 + 60 + 60 + 60 + 10
    assert report.cases == human_cases + 400
    assert report.automatic == 400
    assert report.automation_rate == pytest.approx(400 / (human_cases + 400))
    assert report.by_lane == {"review": 640, "stop_the_line": 10}
    kinds = {r.key: r for r in report.override_by_kind}
    assert (kinds["refund"].decisions, kinds["refund"].overrides) == (100, 40)
    assert (kinds["invoice"].decisions, kinds["invoice"].overrides) == (60, 1)
    reviewers = {r.key: r for r in report.override_by_reviewer}
    assert (reviewers["slack:eve"].decisions, reviewers["slack:eve"].overrides) == (60, 0)
    assert (reviewers["slack:frank"].decisions, reviewers["slack:frank"].overrides) == (60, 27)
    buckets = {r.key: r for r in report.override_by_bucket}
    assert set(buckets) == {"5", "6", "7", "8", "9"}
    assert buckets["7"].rate is not None
    assert buckets["7"].rate > 0.4
    assert report.previous_rate == pytest.approx(0.10)
    assert report.median_seconds == pytest.approx(300, abs=1)
    assert report.reviewer_median_seconds["slack:eve"] == pytest.approx(2, abs=0.5)
    assert (report.quorum_cases, report.quorum_agreed) == (10, 8)
    assert report.sla_compliance == 1.0
    assert report.reason_codes["policy_match"] > report.reason_codes["policy_violation"]


async def test_each_flag_fires_where_it_should_and_nowhere_else(seeded: Runtime) -> None:
    found = by_code((await report_of(seeded)).flags)
    assert found == {
        "rubber_stamp_reviewer": {"slack:eve"},
        "reviewer_outlier": {"slack:frank"},
        "ai_adds_little": {"refund"},
        "rubber_stamp_kind": {"invoice"},
        "threshold_miscalibrated": {"confidence 0.70-0.80"},
    }


async def test_every_flag_says_what_was_measured_against_what_and_what_to_do(
    seeded: Runtime,
) -> None:
    report = await report_of(seeded)
    frank = next(f for f in report.flags if f.code == "reviewer_outlier")
    assert frank.measured.startswith("overrides 45% (27 of 60), more than peers on the same")
    assert "a z-test on the counts against peers, p = " in frank.against
    band = next(f for f in report.flags if f.code == "threshold_miscalibrated")
    assert "at confidence 0.70-0.80" in band.measured
    assert "send that band to the expert lane" in band.action
    for flag in report.flags:
        assert flag.measured
        assert flag.against
        assert flag.action


async def test_an_empty_week_reports_zeros_and_no_flags(seeded: Runtime) -> None:
    report = await report_of(seeded, Week.parse("2026-W30"))
    assert (report.cases, report.human_decisions, report.flags) == (0, 0, [])
    assert report.override_rate is None
    assert report.median_seconds is None
    data = report.as_dict()
    assert data["override_rate"] is None
    assert data["flags"] == []


def test_weeks_are_iso_weeks_in_the_schedules_zone() -> None:
    week = Week.parse("2026-w47", "Europe/Berlin")
    assert week.label == "2026-W47"
    assert week.start.isoformat() == "2026-11-16T00:00:00+01:00"
    assert week.end.isoformat() == "2026-11-23T00:00:00+01:00"
    assert week.previous().label == "2026-W46"
    monday_morning = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    assert Week.last_complete(monday_morning, "Europe/Berlin").label == "2026-W47"
    for bad in ("2026-47", "W47", "2026-W54", ""):
        with pytest.raises(ValueError, match=r"is not an ISO week: write e\.g\. 2026-W47"):
            Week.parse(bad)


def test_the_suggested_threshold_is_where_agreement_holds_all_the_way_up() -> None:
    def buckets(agreement: dict[int, float], n: int = 100) -> list[Rate]:
        return [Rate(str(k), n, round(n * (1 - a))) for k, a in agreement.items()]

    assert suggest_threshold(buckets({6: 0.90, 7: 0.96, 8: 0.97, 9: 0.99})) == 0.7
    assert suggest_threshold(buckets({7: 0.99, 8: 0.90, 9: 0.99})) == 0.9
    assert suggest_threshold(buckets({9: 0.80})) is None
    assert suggest_threshold(buckets({8: 0.99, 9: 0.99}, n=5)) is None  # too few to judge


def test_sla_and_automation_bias_flags_on_constructed_reports() -> None:
    start = WEEK.start
    slipping = Report("2026-W47", start, WEEK.end, sla_due=40, sla_met=30, previous_sla=0.95)
    assert by_code(flags(slipping)) == {"sla_slipping": {"SLA"}}
    assert "75% of 40 cases decided in time, down from 95%" in flags(slipping)[0].measured
    biased = Report(
        "2026-W47", start, WEEK.end, blind=Rate("blind", 200, 60), shown=Rate("shown", 800, 40)
    )
    assert by_code(flags(biased)) == {"automation_bias": {"blind review"}}
    even = Report(
        "2026-W47", start, WEEK.end, blind=Rate("blind", 200, 20), shown=Rate("s", 800, 80)
    )
    assert flags(even) == []
    other = Report("2026-W47", start, WEEK.end, human_decisions=100, reason_codes={"other": 40})
    assert by_code(flags(other)) == {"reasons_not_captured": {"reason codes"}}


def test_the_two_proportion_test() -> None:
    assert two_proportion_p(10, 100, 10, 100) == pytest.approx(1.0)
    assert two_proportion_p(27, 60, 40, 500) < 1e-6
    assert two_proportion_p(0, 0, 5, 10) == 1.0
    assert 0.01 < two_proportion_p(15, 100, 8, 100) < 0.2


REPORTS_TOKEN = "test-reports-token"


async def test_the_report_api_needs_its_own_token_and_answers_json(
    make_runtime: MakeRuntime, sqlite_url: str
) -> None:
    import httpx

    from tests.conftest import http_server

    rt = await make_runtime(sqlite_url, workers=False, reports_token=REPORTS_TOKEN)
    await rt.store.run_write(seed)
    bearer = {"Authorization": f"Bearer {REPORTS_TOKEN}"}
    async with http_server(rt) as base, httpx.AsyncClient(base_url=base) as client:
        weekly = await client.get("/v1/reports/weekly", params={"week": "2026-W47"}, headers=bearer)
        assert weekly.status_code == 200, weekly.text
        body = weekly.json()
        assert body["week"] == "2026-W47"
        assert body["automatic"] == 400
        assert {f["code"] for f in body["flags"]} >= {"reviewer_outlier", "ai_adds_little"}
        assert len(body["trend"]) == 8
        assert body["trend"][-1]["week"] == "2026-W47"
        overrides = await client.get(
            "/v1/reports/overrides", params={"week": "2026-W47"}, headers=bearer
        )
        assert overrides.status_code == 200
        assert "queue" not in overrides.json()
        assert overrides.json()["override_by_kind"][0]["key"] == "expense"

        for headers, status, message in (
            ({}, 401, "send SIGNOFF_REPORTS_TOKEN as `Authorization: Bearer <token>`"),
            ({"Authorization": "Bearer wrong"}, 401, "SIGNOFF_REPORTS_TOKEN"),
        ):
            refused = await client.get("/v1/reports/weekly", headers=headers)
            assert refused.status_code == status
            assert message in refused.json()["message"]
        bad = await client.get("/v1/reports/weekly", params={"week": "W47"}, headers=bearer)
        assert bad.status_code == 422
        assert "'W47' is not an ISO week: write e.g. 2026-W47" in bad.json()["message"]


async def test_reports_are_off_without_a_token(make_runtime: MakeRuntime, sqlite_url: str) -> None:
    import httpx

    from tests.conftest import http_server

    rt = await make_runtime(sqlite_url, workers=False)
    async with http_server(rt) as base, httpx.AsyncClient(base_url=base) as client:
        refused = await client.get("/v1/reports/overrides", headers={"Authorization": "Bearer x"})
    assert refused.status_code == 403
    assert refused.json()["message"] == (
        "reports are off: set SIGNOFF_REPORTS_TOKEN and send it as a bearer token"
    )


def _seeded_file(tmp_path: Any) -> str:
    """A SQLite database with the schema and the designed history (for the CLI)."""
    from sqlalchemy import create_engine

    from tests.test_cli import invoke

    url = f"sqlite:///{tmp_path / 'report.db'}"
    upgraded = invoke(["db", "upgrade"], SIGNOFF_DATABASE_URL=url)
    assert upgraded.exit_code == 0, upgraded.output
    engine = create_engine(url)
    with engine.begin() as conn:
        seed(conn)
    engine.dispose()
    return url


def test_signoff_report_weekly_as_json_table_and_html(tmp_path: Any) -> None:
    import json

    from tests.test_cli import invoke

    url = _seeded_file(tmp_path)
    as_json = invoke(
        ["report", "weekly", "--week", "2026-W47", "--format", "json"], SIGNOFF_DATABASE_URL=url
    )
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert (data["week"], data["automatic"], data["human_decisions"]) == ("2026-W47", 400, 660)
    table = invoke(
        ["report", "weekly", "--week", "2026-W47"], SIGNOFF_DATABASE_URL=url, COLUMNS="200"
    )
    assert table.exit_code == 0
    assert "Override rate by kind" in table.stdout
    assert "reviewer_outlier" in table.stdout
    page = tmp_path / "week.html"
    written = invoke(
        ["report", "weekly", "--week", "2026-W47", "--format", "html", "--output", str(page)],
        SIGNOFF_DATABASE_URL=url,
    )
    assert written.exit_code == 0, written.output
    assert written.stderr.strip() == f"wrote the 2026-W47 report to {page}"
    text = page.read_text()
    assert text.startswith("<!doctype html>")
    assert text.count('src="data:image/png;base64,') == 2
    assert "<script" not in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--week", "47"], "'47' is not an ISO week: write e.g. 2026-W47"),
        (["--format", "pdf"], "Invalid value for '--format'"),
        (["--output", "/nonexistent-dir/x.html", "--format", "html"], "cannot write"),
    ],
)
def test_signoff_report_weekly_says_what_is_wrong(
    tmp_path: Any, args: list[str], message: str
) -> None:
    from tests.test_cli import invoke

    url = _seeded_file(tmp_path)
    result = invoke(["report", "weekly", *args], SIGNOFF_DATABASE_URL=url)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_signoff_report_weekly_on_a_database_not_upgraded(tmp_path: Any) -> None:
    from tests.test_cli import invoke

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = invoke(["report", "weekly"], SIGNOFF_DATABASE_URL=url)
    assert result.exit_code == 2
    assert "is at revision none" in result.stderr
    assert "run `signoff db upgrade`" in result.stderr


async def test_the_weekly_job_posts_the_summary_with_its_charts_once(sqlite_url: str) -> None:
    """The cron job's work, run by hand at Monday 09:30 in Berlin: the last complete week
    (W47) goes to the managers' Discord channel as a message with two PNG charts, once."""
    from bot.clock import FrozenClock
    from tests.discord_harness import CHANNELS, discord_world

    clock = FrozenClock(datetime(2026, 11, 23, 8, 30, tzinfo=UTC))
    async with discord_world(sqlite_url, clock=clock) as world:
        await world.runtime.store.run_write(seed)
        assert await world.runtime.sla.weekly_summary() is True
        assert await world.runtime.sla.weekly_summary() is False  # the week's key is taken
        world.runtime.outbox.wake()
        await world.discord.wait_for(lambda d: d.messages[CHANNELS["managers"]])
        posted = world.discord.messages[CHANNELS["managers"]][0]
        assert posted.embeds[0]["title"] == "Signoff weekly summary 2026-W47"
        text = posted.embeds[0]["description"]
        assert "Human decisions\\: 660" in text  # escaped for Discord markdown
        assert "What to look at" in text
        assert "slack\\:frank" in text  # the outlier, escaped for Discord
        names = sorted(a.filename for a in posted.attachments)
        assert names == ["overrides-2026-W47.png", "trend-2026-W47.png"]
        for attachment in posted.attachments:
            assert attachment.data[:8] == b"\x89PNG\r\n\x1a\n"
        assert posted.mention_everyone is False
        assert world.discord.violations == []


def test_a_threshold_humans_agree_above_is_suggested_as_a_policy_change() -> None:
    buckets = [Rate("6", 100, 12), Rate("7", 100, 3), Rate("8", 100, 2), Rate("9", 100, 1)]
    report = Report(
        "2026-W47",
        WEEK.start,
        WEEK.end,
        human_decisions=400,
        overrides=18,
        override_by_bucket=buckets,
        current_threshold=0.9,
        suggested_threshold=suggest_threshold(buckets),
    )
    assert report.suggested_threshold == 0.7
    (flag,) = [f for f in flags(report) if f.code == "threshold_can_drop"]
    assert flag.severity == "info"
    assert flag.measured == (
        "humans agreed with the AI at least 95% of the time from confidence 0.70 up"
    )
    assert flag.against == "the policy sends cases below 0.90 to a person"
    assert "`confidence_below: 0.70`" in flag.action
