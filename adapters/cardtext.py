"""The words of a card that Slack and Discord share: the recommendation line, the
outcome, votes, acknowledgement, claim and the question waiting for the workflow.
Each platform supplies its `Markup` (how it escapes, cuts, emphasises, quotes, names a
reviewer and writes a date); the sentences are written once, here."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.protocols import CardView, Outcome

LANE_NAMES = {"stop_the_line": "Stop the line", "review": "Review", "expert": "Expert"}
LANE_ICONS = {"stop_the_line": "🚨", "expert": "🧐", "review": "📝"}
OUTCOME_ICONS = {"approve": "✅", "modify": "✏️", "reject": "⛔"}
ARGS_ON_CARD = 10  # a proposal's arguments shown on a card; the rest in the web inbox
ARG_VALUE = 200  # how much of one argument's JSON a card shows
STATUS_WORDS = {
    "approved": "Approved",
    "rejected": "Rejected",
    "expired": "Expired",
    "cancelled": "Cancelled by the workflow",
    "auto_decided": "Decided automatically",
}


@dataclass(frozen=True)
class Markup:
    """How one platform writes a card's words."""

    fit: Callable[[str, int], tuple[str, bool]]  # escape, then cut to a length
    who: Callable[[str | None], str]  # a reviewer key as a mention or a name
    when: Callable[[datetime], str]  # a date each reader sees in their own zone
    bold: str  # the emphasis mark: `*` (Slack) or `**` (Discord)
    code: str  # how an action or a code is set off
    quote: str  # how a quoted line starts
    reason_limit: int  # how much of a reviewer's reasoning the card shows
    question_limit: int  # how much of a waiting question the card shows
    one_line: bool = False  # whether a quote must stay on one line

    def strong(self, text: str) -> str:
        return f"{self.bold}{text}{self.bold}"

    def term(self, text: str) -> str:
        """Workflow text set off as a term (an action, a reason code), escaped."""
        return f"{self.code}{self.fit(text, 10**6)[0]}{self.code}"

    def quoted(self, text: str, limit: int) -> str:
        shown = " ".join(text.split()) if self.one_line else text
        return f"{self.quote}{self.fit(shown, limit)[0]}"


def lane_title(lane: str) -> str:
    return LANE_NAMES.get(lane, lane.replace("_", " ").capitalize())


def recommendation(card: CardView, m: Markup) -> str:
    if card.hide_recommendation:
        hidden = "hidden for blind review; it is shown once you decide."
        return f"{m.strong('AI recommendation:')} {hidden}"
    line = (
        f"{m.strong('AI recommends:')} {m.term(card.recommended_action)} at {card.confidence:.0%}"
    )
    if card.runner_up:
        line += f" · runner-up {m.term(card.runner_up)}"
        if card.runner_up_confidence is not None:
            line += f" at {card.runner_up_confidence:.0%}"
    return line


def arg_json(value: Any) -> str:
    """An argument's value as the JSON a reviewer reads and edits."""
    return json.dumps(value, ensure_ascii=False)


def proposal_lines(card: CardView, m: Markup) -> list[str]:
    """The call the AI proposes: its name, then an argument a line (✏️: editable)."""
    found = card.proposal
    if found is None:
        return []
    editing = "modify" in card.actions
    lines = [f"{m.strong('Proposed:')} {m.term(found.name)}"]
    names = list(found.args)
    for name in names[:ARGS_ON_CARD]:
        mark = " ✏️" if editing and name in found.editable else ""
        value = m.fit(arg_json(found.args[name]), ARG_VALUE)[0]
        lines.append(f"• {m.term(name)} = {value}{mark}")
    if len(names) > ARGS_ON_CARD:
        lines.append(f"… and {len(names) - ARGS_ON_CARD} more arguments")
    return lines


def changes(card: CardView, m: Markup) -> list[str]:
    """What a `modify` changed, an argument a line: `amount`: 120 → 90."""
    outcome, found = card.outcome, card.proposal
    if outcome is None or outcome.action != "modify" or not outcome.args or found is None:
        return []
    lines = []
    for name, value in outcome.args.items():
        if name in found.args and found.args[name] == value:
            continue
        before = m.fit(arg_json(found.args.get(name)), ARG_VALUE // 2)[0]
        after = m.fit(arg_json(value), ARG_VALUE)[0]
        lines.append(f"✏️ {m.term(name)}: {before} → {after}")
    return lines[:ARGS_ON_CARD]


def outcome_text(outcome: Outcome, status: str, m: Markup) -> str:
    icon = OUTCOME_ICONS.get(outcome.action, "⏱️")
    words = STATUS_WORDS.get(status, status)
    if outcome.action == "modify":
        words = "Approved with changes"
    human = outcome.decided_by == "human"
    by = m.who(outcome.reviewer) if human else m.fit(outcome.decided_by, 100)[0]
    text = f"{icon} {m.strong(words)} by {by} {m.when(outcome.at)}"
    if outcome.reason_code:
        text += f" · reason {m.term(outcome.reason_code)}"
    if outcome.reason:
        text += "\n" + m.quoted(outcome.reason, m.reason_limit)
    return text


def state_lines(card: CardView, m: Markup) -> list[str]:
    """What has happened to the case so far, a line each."""
    lines: list[str] = []
    if card.outcome is not None:
        lines.append(outcome_text(card.outcome, card.status, m))
        lines += changes(card, m)
    elif card.status in STATUS_WORDS:
        lines.append(m.strong(STATUS_WORDS[card.status]))
    for vote in card.votes:
        lines.append(
            f"🗳️ {m.who(vote.reviewer)} voted {m.term(vote.action)} {m.when(vote.at)}"
            + (f" · reason {m.term(vote.reason_code)}" if vote.reason_code else "")
        )
    if card.needs_ack:
        lines.append(f"🚨 {m.strong('Waiting for on-call to acknowledge.')}")
    elif card.acknowledged_by:
        lines.append(f"🟢 Acknowledged by {m.who(card.acknowledged_by)}")
    if card.claimed_by:
        lines.append(f"🙋 Claimed by {m.who(card.claimed_by)}: reminders go to them")
    if card.info_question is not None:
        question = m.fit(card.info_question, m.question_limit)[0]
        lines.append(f"❓ {m.strong('Waiting for the workflow to answer:')} {question}")
    return lines
