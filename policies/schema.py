"""The policy file's schema.

A policy has lanes (where a case goes and who may decide it), first-match rules
(which lane a case goes to), reason codes per kind, and sampling rates. `auto` and
`block` are built-in lanes that decide at once: `auto` takes the AI's recommendation,
`block` rejects. Everything else is a human lane and must say who may decide.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from bot.durations import parse_duration
from bot.validation import rule as pattern_rule

BUILTIN_LANES = ("auto", "block")
DEFAULT_REASON_CODES = (
    "agree_with_ai",
    "policy_match",
    "policy_violation",
    "insufficient_evidence",
    "risk_too_high",
    "other",
)

PLATFORM = r"^[a-z][a-z0-9_]{0,31}$"
IDENTIFIER = r"^[a-z][a-z0-9_]{0,63}$"
pattern_rule(
    PLATFORM, "a platform: 1 to 32 lower-case letters, digits or _, starting with a letter"
)
pattern_rule(IDENTIFIER, "1 to 64 lower-case letters, digits or _, starting with a letter")
Platform = Annotated[str, StringConstraints(pattern=PLATFORM)]
LaneName = Annotated[str, StringConstraints(pattern=IDENTIFIER)]
Code = Annotated[str, StringConstraints(pattern=IDENTIFIER)]
Rate = Annotated[float, Field(ge=0, le=1)]


def _duration(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("write a duration like 90s, 15m, 4h or 2d")
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("a duration must be longer than zero")
    return seconds


def _percent(value: object) -> float:
    if isinstance(value, str) and re.fullmatch(r"\s*\d{1,2}(\.\d+)?\s*%\s*", value):
        fraction = float(value.strip().rstrip("%")) / 100
    elif isinstance(value, float | int) and not isinstance(value, bool) and 0 < value < 1:
        fraction = float(value)
    else:
        raise ValueError(f"{value!r} is not a point of the SLA: write it like 50%")
    if not 0 < fraction < 1:
        raise ValueError("a reminder point lies between 0% and 100%, exclusive")
    return fraction


def _one_or_many(value: object) -> object:
    return [value] if isinstance(value, str) else value


DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)"
DAYS = rf"{DAY}(?:-{DAY})?(?:,{DAY}(?:-{DAY})?)*"
SCHEDULE = re.compile(
    rf"^(?:(?P<days>{DAYS}) )?(?P<hour>[01]\d|2[0-3]):(?P<minute>[0-5]\d)(?: (?P<tz>\S+))?$"
)


def _schedule(value: object) -> str:
    """`[days ]HH:MM[ Time/Zone]`: `mon 09:00 Europe/Berlin`, `mon-fri 08:30`, `17:00`."""
    if not isinstance(value, str):
        raise ValueError("a schedule is text such as `mon 09:00 Europe/Berlin`")
    found = SCHEDULE.match(value.strip())
    if found is None:
        raise ValueError(
            f"{value!r} is not a schedule: write `[days ]HH:MM[ Time/Zone]`, "
            "such as `mon 09:00 Europe/Berlin` or `mon-fri 08:30 UTC`"
        )
    if found["tz"]:
        try:
            ZoneInfo(found["tz"])
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"{found['tz']!r} is not a time zone (use e.g. Europe/Berlin)"
            ) from exc
    return value.strip()


def parse_schedule(value: str) -> tuple[str, int, int, str]:
    """(days or '*', hour, minute, time zone) of a checked schedule."""
    found = SCHEDULE.match(value)
    assert found is not None
    return found["days"] or "*", int(found["hour"]), int(found["minute"]), found["tz"] or "UTC"


# `sensitive`: dotted paths into a case (or `decisions.reason`, `decisions.reviewer`,
# `decisions.args`; `proposal` redacts a modify's edited arguments too)
# whose values must not leave Signoff in an export (bot/analytics/export.py).
SENSITIVE_ROOTS = (
    "source",
    "kind",
    "title",
    "question",
    "summary",
    "recommendation",
    "risk",
    "flags",
    "facts",
    "evidence",
    "policy_refs",
    "history",
    "actions",
    "requested_by",
    "callback_url",
    "sla",
    "metadata",
    "proposal",
    "decisions",
)
SENSITIVE_CHILDREN: dict[str, tuple[str, ...]] = {
    "recommendation": ("action", "confidence", "rationale", "alternatives"),
    "risk": ("level", "amount", "currency", "reversible", "customer_tier", "compliance"),
    "decisions": ("reason", "reviewer", "args"),
}
KEYED_ROOTS = ("facts", "metadata")  # any key, or `*` for every key
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


def _sensitive_path(value: object) -> str:
    """`requested_by`, `facts.employee`, `facts.*`, `metadata.customer_email`,
    `decisions.reason`: a field of the case, one level down at most."""
    example = "write e.g. facts.employee or facts.*"
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a field path: {example}")
    parts = value.split(".")
    if len(parts) > 2 or not all(p == "*" or _PATH_SEGMENT.fullmatch(p) for p in parts):
        raise ValueError(f"{value!r} is not a field path: {example}")
    root, child = parts[0], parts[1] if len(parts) == 2 else None
    if root not in SENSITIVE_ROOTS:
        raise ValueError(
            f"{value!r} is not a field of the case: write e.g. requested_by, summary, "
            "facts.employee, facts.*, metadata.customer_email or decisions.reason"
        )
    if root == "decisions" and child is None:
        raise ValueError(
            f"{value!r} names no field of a decision: write decisions.reason or decisions.reviewer"
        )
    if child is None or root in KEYED_ROOTS:
        return value
    allowed = SENSITIVE_CHILDREN.get(root)
    if allowed is None:
        raise ValueError(f"{value!r}: {root} has no fields to name; write {root} alone")
    if child not in allowed:
        raise ValueError(f"{value!r}: {root} has no field {child!r} (it has {', '.join(allowed)})")
    return value


Duration = Annotated[int, BeforeValidator(_duration)]
Schedule = Annotated[str, BeforeValidator(_schedule)]
Percent = Annotated[float, BeforeValidator(_percent)]
OneOrMany = Annotated[list[str], BeforeValidator(_one_or_many), Field(min_length=1)]
SensitivePath = Annotated[str, BeforeValidator(_sensitive_path)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class Hours(Strict):
    """Business hours: the SLA counts only working time."""

    tz: str
    days: str = "mon-fri"
    start: str = Field(default="09:00", alias="from")
    end: str = Field(default="17:00", alias="to")
    holidays: list[date] = Field(default_factory=list, max_length=1000)

    @field_validator("tz")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"{value!r} is not a time zone (use one such as Europe/Berlin)"
            ) from exc
        return value

    @field_validator("days")
    @classmethod
    def _days(cls, value: str) -> str:
        if not re.fullmatch(DAYS, value):
            raise ValueError(f"{value!r} is not a list of days: write e.g. `mon-fri` or `mon,wed`")
        return value

    @field_validator("start", "end")
    @classmethod
    def _time(cls, value: str) -> str:
        if not HHMM.match(value):
            raise ValueError(f"{value!r} is not a time of day: write HH:MM, e.g. 09:00")
        return value

    @model_validator(mode="after")
    def _window(self) -> Hours:
        if self.start >= self.end:
            raise ValueError(f"the working day ends ({self.end}) before it starts ({self.start})")
        return self


SNOWFLAKE = re.compile(r"[0-9]{17,20}")


def _discord_channels(value: dict[str, str]) -> dict[str, str]:
    channel = value.get("discord")
    if channel is not None and not SNOWFLAKE.fullmatch(channel):
        raise ValueError(
            f"discord channel {channel!r} is not a channel ID: 17 to 20 digits, quoted "
            '(Developer Mode on, right-click the channel, "Copy Channel ID")'
        )
    return value


def _discord_entry(entry: str, what: str) -> None:
    kind, _, ident = entry.partition(":")
    if kind not in ("role", "user") or not SNOWFLAKE.fullmatch(ident):
        raise ValueError(
            f"discord {what} {entry!r} must be role:<role ID> or user:<user ID> "
            '(17 to 20 digits, e.g. "role:998877665544332211")'
        )


EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
GROUP_NAME = r"^[a-z][a-z0-9_-]{0,63}$"
pattern_rule(GROUP_NAME, "1 to 64 lower-case letters, digits, _ or -, starting with a letter")


def _web_entry(entry: str, what: str) -> None:
    if entry.startswith("group:"):
        if not re.fullmatch(GROUP_NAME, entry.removeprefix("group:")):
            raise ValueError(f"web {what} {entry!r}: a group name is {GROUP_NAME}")
        return
    if not EMAIL.fullmatch(entry) or entry != entry.strip().lower():
        raise ValueError(
            f"web {what} {entry!r} must be a lower-case e-mail address or group:<name> "
            '(e.g. "alice@example.com" or "group:reviewers")'
        )


class Lane(Strict):
    channels: dict[Platform, str] = Field(default_factory=dict)
    sla: Duration | None = None
    reminders: list[Percent] = Field(default_factory=list, max_length=10)
    approvers: dict[Platform, list[str]] = Field(default_factory=dict)
    quorum: int = Field(default=1, ge=1, le=10)
    reject_vetoes: bool = True
    on_timeout: Literal["reject", "approve"] = "reject"
    escalate_to: LaneName | None = None
    page: dict[Platform, str] = Field(default_factory=dict)
    ack_within: Duration | None = None
    hours: Hours | None = None  # business hours; the SLA counts working time only

    @field_validator("channels")
    @classmethod
    def _channel_ids(cls, value: dict[str, str]) -> dict[str, str]:
        return _discord_channels(value)

    @field_validator("approvers")
    @classmethod
    def _approver_entries(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for entry in value.get("discord", []):
            _discord_entry(entry, "approver")
        for entry in value.get("web", []):
            _web_entry(entry, "approver")
        return value

    @field_validator("page")
    @classmethod
    def _page_entry(cls, value: dict[str, str]) -> dict[str, str]:
        if "discord" in value:
            _discord_entry(value["discord"], "page")
        if "web" in value:
            _web_entry(value["web"], "page")
        return value

    def approver_entries(self, platform: str) -> list[str]:
        """Who may decide on `platform`: its approvers, or, where the lane names no
        approvers on that platform, the people it pages there."""
        if platform in self.approvers:
            return list(self.approvers[platform])
        return [self.page[platform]] if platform in self.page else []


class Condition(Strict):
    kind: OneOrMany | None = None
    source: OneOrMany | None = None
    confidence_below: Rate | None = None
    confidence_at_least: Rate | None = None
    margin_below: Rate | None = None
    amount_at_least: float | None = Field(default=None, ge=0)
    amount_below: float | None = Field(default=None, ge=0)
    currency: OneOrMany | None = None
    reversible: bool | None = None
    risk_level: list[Literal["low", "medium", "high", "critical"]] | None = None
    customer_tier: OneOrMany | None = None
    compliance_any: OneOrMany | None = None
    flags_any: OneOrMany | None = None
    flags_all: OneOrMany | None = None

    @field_validator("risk_level", mode="before")
    @classmethod
    def _levels(cls, value: object) -> object:
        return _one_or_many(value)

    @model_validator(mode="after")
    def _not_empty(self) -> Condition:
        if not self.model_fields_set:
            raise ValueError("an empty `if` matches everything: leave `if` out instead")
        return self


class Rule(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    when: Condition | None = Field(default=None, alias="if")
    lane: LaneName
    audit_sample: Rate = 0.0

    @model_validator(mode="after")
    def _if_given(self) -> Rule:
        if "when" in self.model_fields_set and self.when is None:
            raise ValueError("`if` is empty: give it conditions, or leave `if` out")
        return self


class Kind(Strict):
    reason_codes: list[Code] = Field(min_length=1, max_length=50)
    sensitive_fields: list[SensitivePath] = Field(default_factory=list, max_length=200)


class Summaries(Strict):
    channels: dict[Platform, str] = Field(default_factory=dict)

    @field_validator("channels")
    @classmethod
    def _channel_ids(cls, value: dict[str, str]) -> dict[str, str]:
        return _discord_channels(value)

    weekly: Schedule | None = None  # the weekly summary (issue 6)
    daily: Schedule | None = None  # a digest of the cases waiting for a person


class Policy(Strict):
    lanes: dict[LaneName, Lane] = Field(min_length=1)
    kinds: dict[Annotated[str, StringConstraints(max_length=64)], Kind] = Field(
        default_factory=dict
    )
    default_reason_codes: list[Code] = Field(
        default_factory=lambda: list(DEFAULT_REASON_CODES), min_length=1
    )
    rules: list[Rule] = Field(min_length=1, max_length=500)
    blind_review: Rate = 0.0
    audit_lane: LaneName | None = None
    summaries: Summaries | None = None
    # field paths redacted in exports: requested_by, facts.employee, facts.*, decisions.reason
    sensitive: list[SensitivePath] = Field(default_factory=list, max_length=200)
    # people of the web inbox by group: `group:<name>` in a lane's `web:` approvers
    groups: dict[
        Annotated[str, StringConstraints(pattern=GROUP_NAME)],
        Annotated[list[str], Field(max_length=1000)],
    ] = Field(default_factory=dict, max_length=200)

    @field_validator("groups")
    @classmethod
    def _group_members(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for members in value.values():
            for entry in members:
                if entry.startswith("group:"):
                    raise ValueError(f"groups hold e-mail addresses, not other groups ({entry!r})")
                _web_entry(entry, "group member")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        # Every problem keeps its place in the file (lanes.<name>..., rules[i]...), so that
        # `signoff policy check` names the line and the field, not just "(top level)".
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for name in self.lanes:
            if name in BUILTIN_LANES:
                why = f"lane {name!r} is built in and cannot be configured"
                problems.append((("lanes", name), why))
        known = set(self.lanes) | set(BUILTIN_LANES)
        last = len(self.rules) - 1
        for index, rule in enumerate(self.rules):
            if rule.lane not in known:
                why = (
                    f"rule {index + 1} sends cases to lane {rule.lane!r}, which is not defined "
                    f"(lanes: {', '.join(sorted(known))})"
                )
                problems.append((("rules", index, "lane"), why))
            if rule.when is None and index < last:
                why = f"rule {index + 1} has no `if`, so the rules after it can never match"
                problems.append((("rules", index), why))
        if self.rules[last].when is not None:
            why = "the last rule must have no `if`, so that every case gets a lane"
            problems.append((("rules", last, "if"), why))
        for name, lane in self.lanes.items():
            if lane.escalate_to is not None and lane.escalate_to not in self.lanes:
                why = f"lane {name!r} escalates to {lane.escalate_to!r}, which is not a human lane"
                problems.append((("lanes", name, "escalate_to"), why))
            if lane.escalate_to == name:
                problems.append(
                    (("lanes", name, "escalate_to"), f"lane {name!r} escalates to itself")
                )
            if not any(lane.approvers.values()) and not lane.page:
                why = f"lane {name!r} has no approvers and pages nobody: nobody could decide"
                problems.append((("lanes", name), why))
            if lane.reminders and lane.sla is None:
                why = f"lane {name!r} has reminders but no sla to take them as points of"
                problems.append((("lanes", name, "reminders"), why))
            if lane.ack_within is not None and not lane.page:
                why = f"lane {name!r} asks for an acknowledgement but pages nobody"
                problems.append((("lanes", name, "ack_within"), why))
        for name, lane in self.lanes.items():
            for entry in [*lane.approvers.get("web", []), lane.page.get("web", "")]:
                group = entry.removeprefix("group:")
                if entry.startswith("group:") and group not in self.groups:
                    known_groups = ", ".join(sorted(self.groups)) or "none"
                    why = (
                        f"lane {name!r} names {entry!r}, which the top-level `groups:` "
                        f"does not define (groups: {known_groups})"
                    )
                    problems.append((("lanes", name, "approvers", "web"), why))
        if self.audit_lane is not None and self.audit_lane not in self.lanes:
            why = f"audit_lane {self.audit_lane!r} is not a human lane"
            problems.append((("audit_lane",), why))
        if problems:
            raise ValidationError.from_exception_data(
                "Policy",
                [
                    InitErrorDetails(
                        type=PydanticCustomError("policy", "{why}", {"why": why}),
                        loc=loc,
                        input=None,
                    )
                    for loc, why in problems
                ],
            )
        return self

    def reason_codes(self, kind: str) -> list[str]:
        found = self.kinds.get(kind) or self.kinds.get("default")
        return list(found.reason_codes) if found else list(self.default_reason_codes)

    def sensitive_paths(self, kind: str) -> list[str]:
        """The paths redacted in an export of a case of `kind`: `sensitive`, plus the
        kind's own `sensitive_fields` (or the `default` kind's)."""
        found = self.kinds.get(kind) or self.kinds.get("default")
        return [*self.sensitive, *(found.sensitive_fields if found else ())]

    def audit_lane_name(self) -> str | None:
        if self.audit_lane:
            return self.audit_lane
        return "review" if "review" in self.lanes else None
