"""Working time: a lane's SLA counted in its business hours."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.calendar import WorkingTime, working_days
from bot.errors import PolicyError
from bot.policy import load_policy
from policies.schema import Hours

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = WorkingTime(
    Hours.model_validate(
        {
            "tz": "Europe/Berlin",
            "days": "mon-fri",
            "from": "09:00",
            "to": "17:00",
            "holidays": ["2026-11-18"],
        }
    )
)


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("start", "hours", "due"),
    [
        (berlin(2026, 11, 16, 10, 0), 4, berlin(2026, 11, 16, 14, 0)),  # within a day
        (berlin(2026, 11, 20, 16, 0), 2, berlin(2026, 11, 23, 10, 0)),  # over a weekend
        (berlin(2026, 11, 17, 16, 0), 2, berlin(2026, 11, 19, 10, 0)),  # over a holiday
        (berlin(2026, 11, 21, 12, 0), 1, berlin(2026, 11, 23, 10, 0)),  # sent on a Saturday
        (berlin(2026, 11, 16, 7, 0), 1, berlin(2026, 11, 16, 10, 0)),  # before opening
        (berlin(2026, 11, 16, 17, 0), 1, berlin(2026, 11, 17, 10, 0)),  # at closing
        (berlin(2026, 3, 27, 16, 0), 2, berlin(2026, 3, 30, 10, 0)),  # over the DST change
        (berlin(2026, 11, 16, 9, 0), 24, berlin(2026, 11, 19, 17, 0)),  # 3 x 8 h, a holiday
    ],
)
def test_adding_working_time(start: datetime, hours: float, due: datetime) -> None:
    found = OFFICE.add(start.astimezone(UTC), hours * 3600)
    assert found == due
    assert found.tzinfo == UTC


@given(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)),
    st.integers(0, 200 * 3600),
)
def test_between_measures_what_add_added(start: datetime, seconds: int) -> None:
    at = start.replace(tzinfo=UTC)
    due = OFFICE.add(at, seconds)
    assert OFFICE.between(at, due) == pytest.approx(seconds, abs=1e-6)


def test_around_the_clock_without_hours() -> None:
    plain = WorkingTime(None)
    at = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert plain.add(at, 3600) == at + timedelta(hours=1)
    assert plain.between(at, at + timedelta(hours=5)) == 5 * 3600
    assert plain.between(at, at - timedelta(hours=5)) == 0


def test_day_lists() -> None:
    assert working_days("mon-fri") == {0, 1, 2, 3, 4}
    assert working_days("sat-mon,wed") == {5, 6, 0, 2}
    assert date(2026, 11, 18) in OFFICE.holidays


BASE = """lanes:
  review:
    channels: {memory: C0REVIEW}
    sla: 4h
    approvers: {memory: [U0ALICE]}
    hours: HOURS
rules:
  - lane: review
"""


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        ("{tz: Mars/Base}", "'Mars/Base' is not a time zone"),
        ("{tz: UTC, days: weekdays}", "'weekdays' is not a list of days"),
        ("{tz: UTC, from: '9am'}", "'9am' is not a time of day"),
        ("{tz: UTC, from: '17:00', to: '09:00'}", "the working day ends (09:00) before it starts"),
        (
            "{tz: UTC, holidays: [christmas]}",
            "holidays[0]: must be a date in ISO 8601, such as 2026-12-24 (got 'christmas')",
        ),
        (
            "{tz: UTC, hour: 9}",
            "hour: unknown field; the fields here are tz, days, from, to, holidays",
        ),
    ],
)
def test_bad_hours_name_the_line_and_field(tmp_path: Path, hours: str, message: str) -> None:
    path = tmp_path / "hours.yaml"
    path.write_text(BASE.replace("HOURS", hours))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.problems[0].startswith(f"{path}:6: lanes.review.hours")
    assert message in caught.value.problems[0]
