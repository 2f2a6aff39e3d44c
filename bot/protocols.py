"""The interfaces between Signoff's core and everything around it.

Adapters (Slack, Discord, the log) implement `Adapter`; the core never imports a
platform library. The core hands an adapter a `CardView` (what a reviewer should
see, already decided by the core: which buttons, whether the AI's recommendation is
hidden, the outcome) and gets back a `MessageRef` it stores to update that message
later. Anything an adapter raises while delivering is mapped to `DeliveryFailed`,
which tells the outbox whether and when to try again.

Every create (a card, a thread reply, a page, a summary) comes with its `Delivery`:
the outbox row it delivers. A delivery can be made more than once (the process died
after the platform accepted a post but before its answer was stored; a timeout whose
post went through), so an adapter marks each message it creates with the delivery's
identity and, when `Delivery.retried`, looks for that mark before it posts again.

An adapter whose reviewers click (Slack, Discord) is also a `Surface`: started with
the decision service, serving its own HTTP routes if it needs any.

`Clock` is how the core reads time, so tests can move it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

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
    args: Mapping[str, Any] | None = None  # a `modify`'s edited arguments


@dataclass(frozen=True)
class ProposalView:
    """What the AI proposes to do: a tool or action `name` and its `args` (JSON
    values), of which `editable` (never empty here: all when the case named none)
    may be changed by a reviewer with Edit."""

    name: str
    args: Mapping[str, Any]
    editable: Sequence[str]


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
    proposal: ProposalView | None = None


@dataclass(frozen=True)
class Summary:
    """A manager's summary: text, and charts as PNG bytes."""

    title: str
    text: str
    images: Sequence[tuple[str, bytes]] = field(default_factory=tuple)


@dataclass(frozen=True)
class Delivery:
    """Which outbox row a create delivers, so a repeat of it can be recognised.

    `id` is the row's id (unique, stable across retries and restarts); `case_id` its
    case (None for a summary); `kind` one of post_card, notify, page, summary;
    `created_at` when the row was written, so no try of it is older (an adapter looks
    back to a little before it); `attempts` how many tries may already have reached the
    platform (a failure, or a claim that ran out: the process died mid-delivery).

    An adapter must put `id` on every message it creates for the delivery (Slack:
    message metadata; Discord: a nonce derived from it) and, when `retried`, find
    such a message before posting (and use it instead). On a first try it must not
    spend a call looking: nothing can be there yet."""

    id: int
    case_id: str | None
    kind: str
    created_at: datetime
    attempts: int = 0

    @property
    def retried(self) -> bool:
        return self.attempts > 0


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

    async def post_card(
        self, channel: str, card: CardView, *, delivery: Delivery | None = None
    ) -> MessageRef:
        """Post a new card in `channel`; return the handle used to update it. On a
        retried `delivery`, the card it posted before (if any) is returned instead."""
        ...

    async def update_card(self, ref: MessageRef, card: CardView) -> None:
        """Replace the card at `ref` with `card` (buttons go when it is decided)."""
        ...

    async def notify(
        self,
        ref: MessageRef,
        text: str,
        mentions: Sequence[str] = (),
        *,
        delivery: Delivery | None = None,
    ) -> None:
        """Reply in the card's thread; `mentions` are approver entries to ping on purpose
        (or `#channel`, a channel to point to). A retried `delivery` whose reply is
        already in the thread is not replied again."""
        ...

    async def page(
        self,
        target: str,
        card: CardView,
        ref: MessageRef | None,
        *,
        delivery: Delivery | None = None,
    ) -> None:
        """Page on-call `target` (a group, role or user) about a stop-the-line card;
        `ref` is the card on this platform, when the lane has a channel here. A page
        is several messages (the ping at the card, a DM to each person): on a retried
        `delivery` each one already sent is found and not sent again, so every person
        is pinged once."""
        ...

    async def post_summary(
        self, channel: str, summary: Summary, *, delivery: Delivery | None = None
    ) -> None:
        """Post a manager's summary to `channel` (once per `delivery`, as above)."""
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
