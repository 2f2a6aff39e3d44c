"""An in-memory review surface: records every call, and is told who belongs to
which group. Tests use it to speak to the core the way a platform would; it is also
a small worked example of the adapter protocol."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.protocols import CardView, Delivery, DeliveryFailed, MessageRef, Summary


@dataclass
class MemoryAdapter:
    platform: str = "memory"
    groups: dict[str, set[str]] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    deliveries: list[tuple[str, Delivery | None]] = field(default_factory=list)  # per create
    posted: dict[int, MessageRef] = field(default_factory=dict)  # delivery id -> its card
    fail_next: int = 0
    retry_after: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _record(self, name: str, value: Any) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise DeliveryFailed(f"{name} failed on purpose", retry_after=self.retry_after)
        self.calls.append((name, value))
        self.changed.set()

    def of(self, name: str) -> list[Any]:
        return [value for kind, value in self.calls if kind == name]

    async def post_card(
        self, channel: str, card: CardView, *, delivery: Delivery | None = None
    ) -> MessageRef:
        # As a platform adapter must: a retried delivery finds the card it posted.
        if delivery is not None and delivery.retried and delivery.id in self.posted:
            return self.posted[delivery.id]
        self._record("post_card", (channel, card))
        self.deliveries.append(("post_card", delivery))
        ref = MessageRef(self.platform, channel, {"message": str(next(self._ids))})
        if delivery is not None:
            self.posted[delivery.id] = ref
        return ref

    async def update_card(self, ref: MessageRef, card: CardView) -> None:
        self._record("update_card", (ref, card))

    async def notify(
        self,
        ref: MessageRef,
        text: str,
        mentions: Sequence[str] = (),
        *,
        delivery: Delivery | None = None,
    ) -> None:
        self._record("notify", (ref, text))
        self.deliveries.append(("notify", delivery))

    async def page(
        self,
        target: str,
        card: CardView,
        ref: MessageRef | None,
        *,
        delivery: Delivery | None = None,
    ) -> None:
        self._record("page", (target, card))
        self.deliveries.append(("page", delivery))

    async def post_summary(
        self, channel: str, summary: Summary, *, delivery: Delivery | None = None
    ) -> None:
        self._record("post_summary", (channel, summary))
        self.deliveries.append(("post_summary", delivery))

    async def identities(self, user_id: str) -> set[str]:
        email = self.emails.get(user_id)
        return {email.lower()} if email else set()

    async def is_member(self, user_id: str, entries: Sequence[str]) -> bool:
        return any(user_id == e or user_id in self.groups.get(e, set()) for e in entries)
