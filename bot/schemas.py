"""The case a workflow submits, and the answers the API gives, as pydantic models.

Every field is bounded, unknown fields are refused, and every URL must be http(s):
a case is untrusted input that ends up in front of a person.
"""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bot.durations import parse_duration
from bot.validation import rule, shown

MAX_BODY_BYTES = 256 * 1024
Action = Literal["approve", "reject", "request_info", "modify"]
FinalAction = Literal["approve", "reject"]
DEFAULT_ACTIONS: tuple[Action, ...] = ("approve", "reject", "request_info")
#: A proposal's arguments, as JSON, at most this many bytes (a Slack modal field holds
#: 3000 characters, so one argument's JSON above that can be edited on the web only)
MAX_PROPOSAL_ARGS_BYTES = 20_000
MAX_PROPOSAL_ARGS = 50


# scheme, optional user info, a host (name, IPv4 or [IPv6]), optional port, then the rest;
# nowhere a space or a control character. Written for Python, Rust (pydantic) and
# ECMA-262 (the OpenAPI document) alike, so all three read it the same way.
_NOT_SPACE = r"\s\x00-\x1f\x7f"
HTTP_URL = (
    rf"^[Hh][Tt][Tt][Pp][Ss]?://(?:[^/?#@{_NOT_SPACE}]*@)?"
    rf"(?:\[[0-9A-Fa-f:.]+\]|[^/?#@:\[\]{_NOT_SPACE}]+)(?::[0-9]{{1,5}})?"
    rf"(?:[/?#][^{_NOT_SPACE}]*)?$"
)
_HTTP_URL = re.compile(HTTP_URL)
URL_RULE = rule(
    HTTP_URL,
    "an http:// or https:// URL with a host and without spaces or control characters",
)


def _http_url(value: str) -> str:
    if not _HTTP_URL.fullmatch(value):
        raise ValueError(f"must be {URL_RULE}")
    try:
        # what the pattern cannot say: a bracketed host must be an IPv6 address, and a
        # port at most 65535 (urllib raises ValueError on either)
        parts = urlsplit(value)
        _ = parts.hostname, parts.port
        if "[" in parts.netloc:
            # urllib lets an IPvFuture literal ("[v1.x]") through; nothing can connect to one
            ipaddress.IPv6Address((parts.hostname or "").split("%", 1)[0])
    except ValueError as exc:
        raise ValueError(f"must be {URL_RULE} (got {shown(value)})") from exc
    return value


NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
FLAG = r"^[A-Za-z0-9_.:-]{1,64}$"
CURRENCY = r"^[A-Z]{3}$"
NOT_BLANK = r"\S"
# 1 minute to 30 days, as seconds or as a number and a unit (bot.durations)
SLA_MIN, SLA_MAX = 60, 30 * 86400
SLA_TEXT = (
    r"^(?:(?:[6-9][0-9]|[1-9][0-9]{2,5}|1[0-9]{6}|2[0-4][0-9]{5}|25[0-8][0-9]{4}"
    r"|259[01][0-9]{3}|2592000)s"
    r"|(?:[1-9][0-9]{0,3}|[1-3][0-9]{4}|4[0-2][0-9]{3}|43[01][0-9]{2}|43200)m"
    r"|(?:[1-9][0-9]?|[1-6][0-9]{2}|7[01][0-9]|720)h"
    r"|(?:[1-9]|[12][0-9]|30)d"
    r"|[1-4]w)$"
)
SLA_RULE = (
    "a duration from 1 minute to 30 days: a whole number of seconds from 60 to 2592000, "
    "or a number and a unit (s, m, h, d or w) such as 90s, 15m, 4h or 2d"
)
NUL_MESSAGE = "must not contain the NUL character (\\u0000)"
NO_NUL = r"^[^\x00]*$"
rule(NO_NUL, "text without the NUL character (\\u0000)")
SCALAR_RULE = "text (at most 2000 characters), a number, true, false or null"

HttpUrl = Annotated[
    str,
    StringConstraints(max_length=2048, pattern=HTTP_URL),
    AfterValidator(_http_url),
    Field(description=f"{URL_RULE}; at most 2048 characters"),
]
Name = Annotated[
    str,
    StringConstraints(pattern=NAME),
    Field(
        description=rule(
            NAME, "1 to 64 lower-case letters, digits or _ . -, starting with a letter or digit"
        )
    ),
]
Flag = Annotated[
    str,
    StringConstraints(pattern=FLAG),
    Field(description=rule(FLAG, "1 to 64 letters, digits or _ . : -")),
]
Currency = Annotated[
    str,
    StringConstraints(pattern=CURRENCY),
    Field(description=rule(CURRENCY, "a three-letter currency code in capitals, such as EUR")),
]
rule(NOT_BLANK, "text that is not only spaces")
rule(SLA_TEXT, SLA_RULE)


def _one_error(words: str) -> Any:
    """A validator that reports a union's failure as one sentence, not one per member."""

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError(
                "not_allowed",
                "must be {allowed} (got {got})",
                {"allowed": words, "got": shown(value)},
            ) from None

    return WrapValidator(check)


Text = Annotated[str, StringConstraints(max_length=2000)]
Scalar = Annotated[
    Text | int | float | bool | None,
    _one_error(SCALAR_RULE),
    Field(description=SCALAR_RULE),
]
FactKey = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Sla = Annotated[
    Annotated[int, Field(strict=True, ge=SLA_MIN, le=SLA_MAX)]
    | Annotated[str, StringConstraints(pattern=SLA_TEXT)]
    | None,
    _one_error(SLA_RULE),
    Field(description=SLA_RULE),
]


def _text(min_length: int, max_length: int) -> Any:
    return StringConstraints(min_length=min_length, max_length=max_length, pattern=NOT_BLANK)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=50_000)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL's text and jsonb cannot hold U+0000; refuse it on every database alike
        if _has_nul(value):
            raise PydanticCustomError("nul_character", NUL_MESSAGE)
        return value


class Alternative(Strict):
    action: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    confidence: float | None = Field(default=None, ge=0, le=1)
    rationale: Text = ""


class Recommendation(Strict):
    action: FinalAction
    confidence: float = Field(ge=0, le=1)
    rationale: Annotated[str, StringConstraints(max_length=10_000)] = ""
    alternatives: list[Alternative] = Field(default_factory=list, max_length=10)

    def runner_up(self) -> Alternative | None:
        scored = [a for a in self.alternatives if a.confidence is not None]
        if scored:
            return max(scored, key=lambda a: a.confidence or 0.0)
        return self.alternatives[0] if self.alternatives else None

    def margin(self) -> float | None:
        """Confidence of the recommendation minus that of the runner-up, if it has one."""
        up = self.runner_up()
        if up is None or up.confidence is None:
            return None
        return self.confidence - up.confidence


class Risk(Strict):
    level: Literal["low", "medium", "high", "critical"] | None = None
    amount: float | None = Field(default=None, ge=0, le=1e15)
    currency: Currency | None = None
    reversible: bool | None = None
    customer_tier: Annotated[str, StringConstraints(max_length=64)] | None = None
    compliance: list[Flag] = Field(default_factory=list, max_length=20)


class Evidence(Strict):
    label: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    url: HttpUrl | None = None
    excerpt: Annotated[str, StringConstraints(max_length=5000)] = ""


class PolicyRef(Strict):
    label: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    url: HttpUrl | None = None


class HistoryEntry(Strict):
    text: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    at: datetime | None = None
    actor: Annotated[str, StringConstraints(max_length=200)] | None = None


ArgName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"),
    Field(description="1 to 64 letters, digits or _ . -, starting with a letter or _"),
]


class Proposal(Strict):
    """What the AI wants to do, so that a reviewer can change it before approving: a
    tool or action name, its arguments as JSON, and the arguments a reviewer may edit
    (empty: all of them)."""

    name: Annotated[str, _text(1, 200)]
    args: dict[ArgName, Any] = Field(default_factory=dict, max_length=MAX_PROPOSAL_ARGS)
    editable: list[ArgName] = Field(default_factory=list, max_length=MAX_PROPOSAL_ARGS)

    @field_validator("args")
    @classmethod
    def _args(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            size = len(json.dumps(value, allow_nan=False, separators=(",", ":")))
        except (TypeError, ValueError) as exc:
            raise PydanticCustomError(
                "args_not_json", "must be JSON values (no NaN or infinity)"
            ) from exc
        if size > MAX_PROPOSAL_ARGS_BYTES:
            raise PydanticCustomError(
                "args_too_large",
                "must be at most {limit} bytes as JSON (got {size})",
                {"limit": MAX_PROPOSAL_ARGS_BYTES, "size": size},
            )
        return value

    @model_validator(mode="after")
    def _editable(self) -> Proposal:
        unknown = [name for name in self.editable if name not in self.args]
        if unknown:
            raise PydanticCustomError(
                "editable_unknown",
                "editable names arguments that args does not have: {names}",
                {"names": ", ".join(unknown)},
            )
        if len(set(self.editable)) != len(self.editable):
            raise PydanticCustomError("editable_repeat", "editable must name each argument once")
        return self

    def editable_names(self) -> list[str]:
        return list(self.editable) if self.editable else list(self.args)


class CaseIn(Strict):
    """The body of `POST /v1/escalations`."""

    source: Name = "default"
    kind: Name
    title: Annotated[str, _text(1, 300)]
    question: Annotated[str, _text(1, 3000)]
    summary: Annotated[str, StringConstraints(max_length=100_000)] = ""
    recommendation: Recommendation
    risk: Risk = Field(default_factory=Risk)
    flags: list[Flag] = Field(default_factory=list, max_length=50)
    facts: dict[FactKey, Scalar] = Field(default_factory=dict, max_length=500)
    evidence: list[Evidence] = Field(default_factory=list, max_length=50)
    policy_refs: list[PolicyRef] = Field(default_factory=list, max_length=20)
    history: list[HistoryEntry] = Field(default_factory=list, max_length=100)
    actions: list[Action] = Field(
        default_factory=lambda: list(DEFAULT_ACTIONS),
        min_length=2,
        max_length=4,
        description=(
            "approve and reject, request_info if the reviewer may ask for more, and modify "
            "(only with a proposal) if they may edit it; with a proposal, the default adds "
            "modify"
        ),
        json_schema_extra={
            "uniqueItems": True,
            "allOf": [{"contains": {"const": "approve"}}, {"contains": {"const": "reject"}}],
        },
    )
    requested_by: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    callback_url: HttpUrl | None = None
    sla: Sla = None
    metadata: dict[FactKey, Scalar] = Field(default_factory=dict, max_length=50)
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    proposal: Proposal | None = None

    @model_validator(mode="after")
    def _modify_needs_a_proposal(self) -> CaseIn:
        if self.proposal is None:
            if "modify" in self.actions:
                raise PydanticCustomError(
                    "modify_without_proposal",
                    "actions may include modify only when the case has a proposal to edit",
                )
        elif "actions" not in self.model_fields_set and "modify" not in self.actions:
            self.actions = [*self.actions, "modify"]
        return self

    @field_validator("actions")
    @classmethod
    def _actions(cls, value: list[Action]) -> list[Action]:
        if len(set(value)) != len(value):
            raise PydanticCustomError(
                "actions_repeat",
                "must name each action once (got {got})",
                {"got": json.dumps(value)},
            )
        if "approve" not in value or "reject" not in value:
            raise PydanticCustomError(
                "actions_incomplete",
                "must include both approve and reject; request_info and modify are optional"
                " (got {got})",
                {"got": json.dumps(value)},
            )
        return value

    def sla_seconds(self) -> int | None:
        if self.sla is None:
            return None
        return self.sla if isinstance(self.sla, int) else parse_duration(self.sla)


class InfoIn(Strict):
    """The body of `POST /v1/escalations/{id}/info`."""

    text: Annotated[str, _text(1, 10_000)]
    facts: dict[FactKey, Scalar] | None = Field(default=None, max_length=500)


class CancelIn(Strict):
    """The body of `POST /v1/escalations/{id}/cancel` (may be empty)."""

    reason: Annotated[str, StringConstraints(max_length=2000)] | None = None


class DecisionOut(BaseModel):
    action: str
    args: dict[str, Any] | None = None
    reason_code: str | None
    reason: str | None
    reviewer: str | None
    decided_by: Literal["human", "policy", "timeout"]
    platform: str | None = None
    at: datetime
    policy_version: str


class SubmitOut(BaseModel):
    id: str
    status: str
    lane: str
    due_at: datetime | None
    decision: DecisionOut | None = None


class EventOut(BaseModel):
    at: datetime
    type: str
    actor: str | None
    detail: dict[str, Any]
    policy_version: str | None


class DeliveryOut(BaseModel):
    id: int
    kind: str
    target: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None


class TimerOut(BaseModel):
    what: str
    due_at: datetime
    fired_at: datetime | None


class CaseOut(BaseModel):
    id: str
    status: str
    lane: str
    kind: str
    title: str
    source: str
    due_at: datetime | None
    created_at: datetime
    updated_at: datetime
    policy_version: str
    rule: str
    audit_sampled: bool
    blind_review: bool
    acknowledged_at: datetime | None
    case: dict[str, Any]
    decisions: list[DecisionOut]
    events: list[EventOut]
    deliveries: list[DeliveryOut]
    timers: list[TimerOut]


class CaseSummary(BaseModel):
    id: str
    status: str
    lane: str
    kind: str
    title: str
    due_at: datetime | None
    created_at: datetime


class CaseList(BaseModel):
    items: list[CaseSummary]
    next: str | None


class FieldError(BaseModel):
    field: str = Field(description="where: `title`, `evidence.0.url`, `(body)`, a header's name")
    message: str = Field(description="what is wrong there, and what would be allowed")


class ErrorOut(BaseModel):
    """Every refusal: a stable code for programs and a sentence for people."""

    error: str = Field(
        description="validation_failed, invalid, unauthorized, forbidden, not_found, conflict, "
        "too_large, or the decision service's code (already_decided, no_info_requested, ...)"
    )
    message: str
    errors: list[FieldError] = Field(
        default_factory=list, description="each problem of a 422, by field"
    )
    field: str | None = Field(default=None, description="the one field an `invalid` 422 is about")


class ChangeOut(BaseModel):
    """The answer to `/info` and `/cancel`."""

    id: str
    status: str


class HealthOut(BaseModel):
    status: Literal["ok", "unhealthy"]
    database: Literal["ok", "unreachable"]
    version: str | None = None
    policy_version: str | None = None
