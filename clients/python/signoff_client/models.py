"""The server's answers as pydantic models. Fields the server adds later are kept (as
extra attributes), never refused: a newer server must not break an older workflow."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: statuses after which a case never changes again
TERMINAL = frozenset({"approved", "rejected", "expired", "cancelled", "auto_decided"})
Action = Literal["approve", "reject", "modify"]


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class Decision(Answer):
    """A decision on a case, or what `wait()` settled on.

    `decided_by` is `human`, `policy` (the auto and block lanes), `timeout` (the
    lane's SLA ran out on the server, or, with `timed_out`, the client stopped
    waiting), or `workflow` (the case was cancelled). `args` are the full edited
    arguments of a `modify` (approve with changes), else None."""

    action: Action
    reason_code: str | None = None
    reason: str | None = None
    reviewer: str | None = None
    decided_by: str = "human"
    args: dict[str, Any] | None = None
    timed_out: bool = False
    platform: str | None = None
    at: datetime | None = None
    final: bool | None = None
    policy_version: str | None = None

    @property
    def approved(self) -> bool:
        """Approve, or approve with changes (`modify`)."""
        return self.action in ("approve", "modify")


class Event(Answer):
    at: datetime
    type: str
    actor: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class Case(Answer):
    """A case: the answer to a submit (`id, status, lane, due_at, decision?`) or, from
    `get()`, the whole record (decisions, events, deliveries, ...)."""

    id: str
    status: str
    lane: str | None = None
    due_at: datetime | None = None
    kind: str | None = None
    title: str | None = None
    source: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    decision: Decision | None = None
    decisions: list[Decision] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    deliveries: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def outcome(self) -> Decision | None:
        """The decision that settled the case, or None while it is open. A cancelled
        case settles as a reject by the workflow, with the reason it was withdrawn for."""
        if not self.terminal:
            return None
        if self.status == "cancelled":
            reason = next(
                (e.detail.get("reason") for e in reversed(self.events) if e.type == "cancelled"),
                None,
            )
            return Decision(
                action="reject",
                reason_code="cancelled",
                reason=reason if isinstance(reason, str) else "the case was cancelled",
                decided_by="workflow",
            )
        made = [d for d in self.decisions if d.final] or self.decisions
        if made:
            return made[-1]
        return self.decision


class Change(Answer):
    """The answer to `cancel`, `answer_info` and `report_outcome`."""

    id: str | None = None
    status: str | None = None


class CasePage(Answer):
    """One page of `cases()`, newest first; `next` is the cursor of the next page."""

    items: list[Case]
    next: str | None = None
