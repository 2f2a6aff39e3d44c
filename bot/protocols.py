"""The interfaces between Signoff's core and everything around it.

Adapters (Slack, Discord, the log) implement `Adapter`; the core never imports a
platform library. The core hands an adapter a `CardView` (what a reviewer should
see, already decided by the core: which buttons, whether the AI's recommendation is
hidden, the outcome) and gets back a `MessageRef` it stores to update that message
later. Anything an adapter raises while delivering is mapped to `DeliveryFailed`,
which tells the outbox whether and when to try again.

An adapter whose reviewers click (Slack, Discord) is also a `Surface`: started with
the decision service, serving its own HTTP routes if it needs any.

`Clock` is how the core reads time, so tests can move it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from starlette.requests import Request
from starlette.responses import Response

from bot.errors import SignoffError

if TYPE_CHECKING:
    from bot.service import Service

Endpoint = Callable[[Request], Awaitable[Response]]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


@dataclass(frozen=True)
class Reviewer:
    """A person acting on a card, as the platform knows them."""

    platform: str
    user_id: str
    name: str | None = None

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.user_id}"


@dataclass(frozen=True)
class MessageRef:
    """Where a card lives: the platform, the channel, and the platform's message handle."""

    platform: str
    channel: str
    ref: dict[str, str]


@dataclass(frozen=True)
class Fact:
    label: str
    value: str


@dataclass(frozen=True)
class Link:
    label: str
    url: str | None
    excerpt: str = ""


@dataclass(frozen=True)
class Outcome:
    action: str
    decided_by: str
    reviewer: str | None
    reason_code: str | None
    reason: str | None
    at: datetime


@dataclass(frozen=True)
class CardView:
    """Everything a card shows. Strings are the workflow's raw text: each adapter
    escapes them for its own markup before they reach a message."""

    case_id: str
    lane: str
    kind: str
    status: str
    title: str
    question: str
    summary: str
    recommended_action: str
    confidence: float
    rationale: str
    runner_up: str | None
    runner_up_confidence: float | None
    hide_recommendation: bool
    rule: str
    flags: Sequence[str]
    facts: Sequence[Fact]
    evidence: Sequence[Link]
    policy_refs: Sequence[Link]
    history: Sequence[str]
    due_at: datetime | None
    actions: Sequence[str]
    reason_codes: Sequence[str]
    audit: bool = False
    acknowledged_by: str | None = None
    needs_ack: bool = False
    outcome: Outcome | None = None
    votes: Sequence[Outcome] = field(default_factory=tuple)
    info_question: str | None = None
    why: Sequence[str] = field(default_factory=tuple)
    sla_state: str | None = None  # on_time, at_risk (the SLA's last fifth), overdue
    claimed_by: str | None = None  # a reviewer key; reminders go to them


@dataclass(frozen=True)
class Summary:
    """A manager's summary: text, and charts as PNG bytes."""

    title: str
    text: str
    images: Sequence[tuple[str, bytes]] = field(default_factory=tuple)


class DeliveryFailed(SignoffError):
    """A delivery did not go through. `retry_after` (seconds) when the platform said
    when to come back; `permanent` when trying again cannot help."""

    code = "delivery_failed"

    def __init__(self, message: str, *, retry_after: float | None = None, permanent: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent


@runtime_checkable
class Adapter(Protocol):
    """A review surface. One instance per platform, shared by all cases."""

    platform: str

    async def post_card(self, channel: str, card: CardView) -> MessageRef:
        """Post a new card in `channel`; return the handle used to update it."""
        ...

    async def update_card(self, ref: MessageRef, card: CardView) -> None:
        """Replace the card at `ref` with `card` (buttons go when it is decided)."""
        ...

    async def notify(self, ref: MessageRef, text: str, mentions: Sequence[str] = ()) -> None:
        """Reply in the card's thread; `mentions` are approver entries to ping on purpose
        (or `#channel`, a channel to point to)."""
        ...

    async def page(self, target: str, card: CardView, ref: MessageRef | None) -> None:
        """Page on-call `target` (a group, role or user) about a stop-the-line card;
        `ref` is the card on this platform, when the lane has a channel here."""
        ...

    async def post_summary(self, channel: str, summary: Summary) -> None:
        """Post a manager's summary to `channel`."""
        ...

    async def identities(self, user_id: str) -> set[str]:
        """Names the workflow may use for this person (e-mail addresses, usernames),
        lower-cased, to refuse self-approval. Empty when unknown."""
        ...

    async def is_member(self, user_id: str, entries: Sequence[str]) -> bool:
        """Whether the user is one of `entries` (user IDs, or groups and roles they belong to)."""
        ...


@runtime_checkable
class Surface(Protocol):
    """An adapter whose reviewers act on cards (Slack, Discord). The runtime starts it
    with the decision service, which its clicks go to, and stops it at shutdown."""

    def routes(self) -> Mapping[str, Endpoint]:
        """HTTP routes (POST) it takes in the server, such as Slack's `/slack/events`.
        They exist before `start` and answer 503 until then."""
        ...

    async def start(self, service: Service) -> None:
        """Take clicks from now on, sending them to `service`; open any connection."""
        ...

    async def stop(self) -> None:
        """Stop taking clicks and close connections."""
        ...
