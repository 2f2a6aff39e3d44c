"""Working time: a lane's SLA counted in its business hours (a time zone, working days,
a daily window, holidays), or around the clock when the lane sets none."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from policies.schema import Hours

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HORIZON_DAYS = 3700  # about ten years: far enough for any SLA, a bound on every loop


def working_days(spec: str) -> frozenset[int]:
    """`mon-fri,sun` as weekday numbers (Monday is 0)."""
    found: set[int] = set()
    for part in spec.split(","):
        first, _, last = part.partition("-")
        a, b = DAY_NAMES.index(first), DAY_NAMES.index(last or first)
        found.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(found)


class WorkingTime:
    """Adds and measures durations in working time. With no hours, it is plain time."""

    def __init__(self, hours: Hours | None) -> None:
        self.hours = hours
        if hours is not None:
            self.zone = ZoneInfo(hours.tz)
            self.days = working_days(hours.days)
            self.start = time.fromisoformat(hours.start)
            self.end = time.fromisoformat(hours.end)
            self.holidays = frozenset(hours.holidays)

    def _window(self, day: date) -> tuple[datetime, datetime] | None:
        if day.weekday() not in self.days or day in self.holidays:
            return None
        return (
            datetime.combine(day, self.start, tzinfo=self.zone),
            datetime.combine(day, self.end, tzinfo=self.zone),
        )

    def add(self, start: datetime, seconds: float) -> datetime:
        """The moment `seconds` of working time after `start`."""
        if self.hours is None:
            return start + timedelta(seconds=seconds)
        left = timedelta(seconds=seconds)
        cursor = start.astimezone(self.zone)
        day = cursor.date()
        for _ in range(HORIZON_DAYS):
            window = self._window(day)
            if window is not None:
                opens, closes = window
                begin = max(cursor, opens)
                if begin < closes:
                    if begin + left <= closes:
                        return (begin + left).astimezone(start.tzinfo)
                    left -= closes - begin
            day += timedelta(days=1)
        raise ValueError("no working time within ten years: check the lane's hours")

    def between(self, a: datetime, b: datetime) -> float:
        """Seconds of working time from `a` to `b` (0 if `b` is not after `a`)."""
        if b <= a:
            return 0.0
        if self.hours is None:
            return (b - a).total_seconds()
        total = timedelta(0)
        day = a.astimezone(self.zone).date()
        last = b.astimezone(self.zone).date()
        while day <= last:
            window = self._window(day)
            if window is not None:
                begin, end = max(a, window[0]), min(b, window[1])
                if begin < end:
                    total += end - begin
            day += timedelta(days=1)
        return total.total_seconds()
