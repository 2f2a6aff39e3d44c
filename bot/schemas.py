"""The case a workflow submits, and the answers the API gives, as pydantic models.

Every field is bounded, unknown fields are refused, and every URL must be http(s):
a case is untrusted input that ends up in front of a person.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from bot.durations import parse_duration

MAX_BODY_BYTES = 256 * 1024
Action = Literal["approve", "reject", "request_info"]
FinalAction = Literal["approve", "reject"]
DEFAULT_ACTIONS: tuple[Action, ...] = ("approve", "reject", "request_info")


_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


# scheme, optional user info, a host (name, IPv4 or [IPv6]), optional port, then the rest
_HTTP_URL = re.compile(
    r"https?://(?:[^/?#@]*@)?(?:\[[0-9A-Fa-f:.]+\]|[^/?#@:\[\]]+)(?::\d{1,5})?(?:[/?#].*)?",
    re.IGNORECASE,
)


def _http_url(value: str) -> str:
    if _SPACE_OR_CONTROL.search(value):
        raise ValueError("URL must not contain spaces or control characters")
    if not _HTTP_URL.fullmatch(value):
        raise ValueError("must be an http:// or https:// URL")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


HttpUrl = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_http_url)]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Flag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
Scalar = Annotated[str, StringConstraints(max_length=2000)] | int | float | bool | None
Text = Annotated[str, StringConstraints(max_length=2000)]
FactKey = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=50_000)


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
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = None
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


class CaseIn(Strict):
    """The body of `POST /v1/escalations`."""

    source: Name = "default"
    kind: Name
    title: Annotated[
        str, StringConstraints(min_length=1, max_length=300), AfterValidator(_not_blank)
    ]
    question: Annotated[
        str, StringConstraints(min_length=1, max_length=3000), AfterValidator(_not_blank)
    ]
    summary: Annotated[str, StringConstraints(max_length=100_000)] = ""
    recommendation: Recommendation
    risk: Risk = Field(default_factory=Risk)
    flags: list[Flag] = Field(default_factory=list, max_length=50)
    facts: dict[FactKey, Scalar] = Field(default_factory=dict, max_length=500)
    evidence: list[Evidence] = Field(default_factory=list, max_length=50)
    policy_refs: list[PolicyRef] = Field(default_factory=list, max_length=20)
    history: list[HistoryEntry] = Field(default_factory=list, max_length=100)
    actions: list[Action] = Field(
        default_factory=lambda: list(DEFAULT_ACTIONS), min_length=2, max_length=3
    )
    requested_by: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    callback_url: HttpUrl | None = None
    sla: str | int | None = None
    metadata: dict[FactKey, Scalar] = Field(default_factory=dict, max_length=50)
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None

    @field_validator("sla")
    @classmethod
    def _sla(cls, value: str | int | None) -> str | int | None:
        if value is None:
            return None
        seconds = value if isinstance(value, int) else parse_duration(value)
        if not 60 <= seconds <= 30 * 86400:
            raise ValueError("SLA must be between 1 minute and 30 days")
        return value

    @field_validator("actions")
    @classmethod
    def _actions(cls, value: list[Action]) -> list[Action]:
        if len(set(value)) != len(value):
            raise ValueError("actions must not repeat")
        if "approve" not in value or "reject" not in value:
            raise ValueError("actions must include approve and reject")
        return value

    def sla_seconds(self) -> int | None:
        if self.sla is None:
            return None
        return self.sla if isinstance(self.sla, int) else parse_duration(self.sla)


class InfoIn(Strict):
    """The body of `POST /v1/escalations/{id}/info`."""

    text: Annotated[
        str, StringConstraints(min_length=1, max_length=10_000), AfterValidator(_not_blank)
    ]
    facts: dict[FactKey, Scalar] | None = Field(default=None, max_length=500)


class CancelIn(Strict):
    """The body of `POST /v1/escalations/{id}/cancel` (may be empty)."""

    reason: Annotated[str, StringConstraints(max_length=2000)] | None = None


class DecisionOut(BaseModel):
    action: str
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
