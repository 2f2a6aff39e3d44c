"""The `log` adapter: cards go to the log. Used when no platform is connected, so
`signoff serve` runs out of the box. Nobody can decide through it."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

from bot.protocols import CardView, Delivery, MessageRef, Summary

log = logging.getLogger("signoff.cards")


def render(card: CardView) -> str:
    rec = (
        "hidden (blind review)"
        if card.hide_recommendation
        else f"{card.recommended_action} at {card.confidence:.0%}"
        + (f", runner-up {card.runner_up}" if card.runner_up else "")
    )
    lines = [
        f"[{card.lane}] {card.title!r} ({card.kind}, {card.status})",
        f"  question: {card.question!r}",
        f"  AI recommends: {rec}",
        f"  escalated by: {card.rule}"
        + (f"; flags: {', '.join(card.flags)}" if card.flags else ""),
    ]
    if card.due_at:
        lines.append(f"  due: {card.due_at.isoformat()}")
    if card.outcome:
        lines.append(
            f"  outcome: {card.outcome.action} by {card.outcome.reviewer} "
            f"({card.outcome.reason_code})"
        )
    elif card.actions:
        lines.append(f"  buttons: {', '.join(card.actions)}")
    return "\n".join(lines)


class LogAdapter:
    """A log line repeated after a crash harms nobody: `delivery` is taken and not used."""

    platform = "log"

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    async def post_card(
        self, channel: str, card: CardView, *, delivery: Delivery | None = None
    ) -> MessageRef:
        ref = MessageRef(self.platform, channel, {"message": str(next(self._ids))})
        if log.isEnabledFor(logging.INFO):
            log.info(
                "card %s for case %s in %s\n%s",
                ref.ref["message"],
                card.case_id,
                channel,
                render(card),
            )
        return ref

    async def update_card(self, ref: MessageRef, card: CardView) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info(
                "card %s for case %s updated\n%s",
                ref.ref.get("message"),
                card.case_id,
                render(card),
            )

    async def notify(
        self,
        ref: MessageRef,
        text: str,
        mentions: Sequence[str] = (),
        *,
        delivery: Delivery | None = None,
    ) -> None:
        log.info("thread of card %s in %s: %r", ref.ref.get("message"), ref.channel, text)

    async def page(
        self,
        target: str,
        card: CardView,
        ref: MessageRef | None,
        *,
        delivery: Delivery | None = None,
    ) -> None:
        log.warning("PAGE %s: stop-the-line case %s: %r", target, card.case_id, card.title)

    async def post_summary(
        self, channel: str, summary: Summary, *, delivery: Delivery | None = None
    ) -> None:
        log.info("summary for %s: %s\n%s", channel, summary.title, summary.text)

    async def identities(self, user_id: str) -> set[str]:
        return set()

    async def is_member(self, user_id: str, entries: Sequence[str]) -> bool:
        return False
