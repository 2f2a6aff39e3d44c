"""An in-memory review surface: records every call, and is told who belongs to
which group. Tests use it to speak to the core the way a platform would; it is also
a small worked example of the adapter protocol."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.protocols import CardView, DeliveryFailed, MessageRef, Summary


@dataclass
class MemoryAdapter:
    platform: str = "memory"
    groups: dict[str, set[str]] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
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

    async def post_card(self, channel: str, card: CardView) -> MessageRef:
        self._record("post_card", (channel, card))
        return MessageRef(self.platform, channel, {"message": str(next(self._ids))})

    async def update_card(self, ref: MessageRef, card: CardView) -> None:
        self._record("update_card", (ref, card))

    async def notify(self, ref: MessageRef, text: str, mentions: Sequence[str] = ()) -> None:
        self._record("notify", (ref, text))

    async def page(self, target: str, card: CardView, ref: MessageRef | None) -> None:
        self._record("page", (target, card))

    async def post_summary(self, channel: str, summary: Summary) -> None:
        self._record("post_summary", (channel, summary))

    async def identities(self, user_id: str) -> set[str]:
        email = self.emails.get(user_id)
        return {email.lower()} if email else set()

    async def is_member(self, user_id: str, entries: Sequence[str]) -> bool:
        return any(user_id == e or user_id in self.groups.get(e, set()) for e in entries)
