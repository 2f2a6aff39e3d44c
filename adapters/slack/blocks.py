"""CardView to Block Kit, and the modals a click opens.

Built with `slack_sdk.models`, which checks Slack's limits as the JSON is made. Every
string a workflow sent goes through `escape` (mrkdwn) or a plain_text object, and is
cut to fit before it gets there: Slack must never refuse a card because of what a
workflow wrote. When something had to be cut, the card grows a "Show full context"
button that opens the whole case in a modal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from adapters import cardtext
from adapters.cardtext import LANE_ICONS, STATUS_WORDS, lane_title
from adapters.text import ELLIPSIS, cut, plain
from bot.protocols import CardView, Link

SECTION = 3000
FIELD = 2000
HEADER = 150
FIELDS_PER_SECTION = 10
FACTS_ON_CARD = 20
FACT_VALUE = 300
LINKS_ON_CARD = 10
EXCERPT = 200
HISTORY_ON_CARD = 5
MODAL_BLOCKS = 100
MAX_OPTIONS = 100
OPTION_TEXT = 75
REASON_MAX = 4000

ACTIONS_BLOCK = "signoff_actions"
ACTION_PREFIX = "signoff_"
DECIDE_VIEW = "signoff_decide"
INFO_VIEW = "signoff_info"
CODE_BLOCK, CODE_ACTION = "reason_code", "code"
REASON_BLOCK, REASON_ACTION = "reason", "text"
QUESTION_BLOCK, QUESTION_ACTION = "question", "text"

SLA_WORDS = {"at_risk": " · ⚠️ *At risk*", "overdue": " · 🔴 *Overdue*"}


def escape(text: str) -> str:
    """Make workflow text inert in mrkdwn: no mentions, no links, no special commands."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit(text: str, limit: int) -> tuple[str, bool]:
    """`escape(text)`, cut (on a character, never inside an entity) to at most `limit`
    characters; and whether anything was cut."""
    return cut(text, limit, escape)


def link(item: Link) -> str:
    """A link only for http(s) URLs, with its label escaped; anything else is shown as text."""
    label = escape(item.label)
    url = item.url or ""
    if url.lower().startswith(("https://", "http://")):
        safe = escape(url).replace("|", "%7C")
        return f"<{safe}|{label}>"
    return f"{label} ({escape(url)})" if url else label


def who(reviewer: str | None) -> str:
    """A reviewer key (`slack:U123`) as a Slack mention; anyone else by name."""
    if not reviewer:
        return "someone"
    platform, _, user = reviewer.partition(":")
    if platform == "slack" and user.isalnum():
        return f"<@{user}>"
    if platform == "discord" and user:
        return f"{escape(user)} on Discord"
    return escape(reviewer)


def slack_date(at: datetime, pattern: str = "{date_short_pretty} at {time}") -> str:
    """A date every reader sees in their own time zone (the fallback is UTC)."""
    fallback = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(at.timestamp())}^{pattern}|{fallback}>"


SLACK = cardtext.Markup(
    fit=fit,
    who=who,
    when=slack_date,
    bold="*",
    code="`",
    quote=">",
    reason_limit=1500,
    question_limit=1000,
)


def recommendation(card: CardView) -> str:
    return cardtext.recommendation(card, SLACK)


def state_lines(card: CardView) -> list[str]:
    return cardtext.state_lines(card, SLACK)


@dataclass(frozen=True)
class Rendered:
    text: str
    blocks: list[dict[str, Any]]
    cut: bool


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text))


def _links(title: str, items: Sequence[Link], limit: int) -> tuple[str, bool]:
    lines = []
    for item in items[:limit]:
        line = f"• {link(item)}"
        if item.excerpt:
            line += f" — {fit(item.excerpt, EXCERPT)[0]}"
        lines.append(line)
    more = len(items) > limit
    if more:
        lines.append(f"_and {len(items) - limit} more_")
    text = f"*{title}*\n" + "\n".join(lines)
    if len(text) <= SECTION:
        return text, more
    # Too long even so: drop whole lines rather than cut inside a link.
    while lines and len(text) > SECTION - 40:
        lines.pop()
        text = f"*{title}*\n" + "\n".join(lines) + "\n_more in the full context_"
    return text, True


def _fact_fields(facts: Iterable[tuple[str, str]]) -> list[MarkdownTextObject]:
    fields = []
    for label, value in facts:
        name, _ = fit(label, 200)
        shown, _ = fit(value, FACT_VALUE)
        fields.append(MarkdownTextObject(text=f"*{name}*\n{shown}"))
    return fields


def render_card(card: CardView) -> Rendered:
    """The message for a card: notification text, blocks, and whether text was cut."""
    cut = False
    icon = LANE_ICONS.get(card.lane, "📋")
    kind = "Audit sample" if card.audit else lane_title(card.lane)
    header = plain(f"{icon} {kind}: {card.title}", HEADER)
    cut |= len(f"{icon} {kind}: {card.title}") > HEADER
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text=header, emoji=True))]

    question, was_cut = fit(card.question, SECTION - 20)
    cut |= was_cut
    blocks.append(_section(f"*Question:* {question}"))
    if card.summary:
        summary, was_cut = fit(card.summary, SECTION)
        cut |= was_cut
        blocks.append(_section(summary))

    rec = recommendation(card)
    if card.rationale and not card.hide_recommendation:
        rationale, was_cut = fit(card.rationale, SECTION - len(rec) - 10)
        cut |= was_cut
        rec += f"\n>{rationale}"
    blocks.append(_section(rec))

    why = f"*Why a person:* {fit(card.rule, 300)[0]}"
    if card.why:
        why += f": {fit('; '.join(card.why), 1000)[0]}"
    if card.flags:
        flags, was_cut = fit(", ".join(card.flags), 1500)
        cut |= was_cut
        why += f" · flags: {flags}"
    blocks.append(_section(why))

    shown = list(card.facts[:FACTS_ON_CARD])
    cut |= len(card.facts) > FACTS_ON_CARD or any(len(escape(f.value)) > FACT_VALUE for f in shown)
    fields = _fact_fields((f.label, f.value) for f in shown)
    for start in range(0, len(fields), FIELDS_PER_SECTION):
        blocks.append(SectionBlock(fields=fields[start : start + FIELDS_PER_SECTION]))
    if len(card.facts) > FACTS_ON_CARD:
        blocks.append(
            _context(f"_{len(card.facts) - FACTS_ON_CARD} more facts in the full context_")
        )

    for title, items in (("Evidence", card.evidence), ("Policy", card.policy_refs)):
        if items:
            text, was_cut = _links(title, items, LINKS_ON_CARD)
            cut |= was_cut
            blocks.append(_section(text))
    if card.history:
        recent = card.history[-HISTORY_ON_CARD:]
        cut |= len(card.history) > HISTORY_ON_CARD
        text, was_cut = fit("\n".join(recent), SECTION - 20)
        cut |= was_cut
        blocks.append(_section(f"*History*\n{text}"))

    if card.due_at is not None and card.outcome is None:
        due = slack_date(card.due_at, "{date_short_pretty} at {time} ({ago})")
        blocks.append(_context(f"⏰ Decide by {due}{SLA_WORDS.get(card.sla_state or '', '')}"))
    blocks.append(_context(f"Case `{card.case_id}` · {escape(card.kind)}"))

    state = state_lines(card)
    if state:
        blocks.append(DividerBlock())
        text, _ = _join_fit(state)
        blocks.append(_section(text))

    buttons = _buttons(card, cut)
    if buttons:
        blocks.append(ActionsBlock(block_id=ACTIONS_BLOCK, elements=buttons))
    status = STATUS_WORDS.get(card.status, "Needs a decision")
    text = f"{kind} case ({status}): {escape(plain(card.title, 300))}"
    return Rendered(text, [b.to_dict() for b in blocks], cut)


def _join_fit(lines: list[str]) -> tuple[str, bool]:
    text = "\n".join(lines)
    return (text, False) if len(text) <= SECTION else (text[: SECTION - 1] + ELLIPSIS, True)


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=text)])


def _button(action: str, label: str, case_id: str, **extra: Any) -> ButtonElement:
    return ButtonElement(
        text=PlainTextObject(text=label, emoji=True),
        action_id=ACTION_PREFIX + action,
        value=case_id,
        **extra,
    )


def _buttons(card: CardView, cut: bool) -> list[ButtonElement]:
    buttons = []
    if card.needs_ack:
        buttons.append(_button("acknowledge", "Acknowledge", card.case_id, style="primary"))
    if "approve" in card.actions:
        style = {} if card.needs_ack else {"style": "primary"}
        buttons.append(_button("approve", "Approve", card.case_id, **style))
    if "reject" in card.actions:
        confirm = ConfirmObject(
            title=PlainTextObject(text="Reject this case?"),
            text=MarkdownTextObject(text="You will be asked for a reason next."),
            confirm=PlainTextObject(text="Reject"),
            deny=PlainTextObject(text="Cancel"),
            style="danger",
        )
        buttons.append(_button("reject", "Reject", card.case_id, style="danger", confirm=confirm))
    if "request_info" in card.actions and card.info_question is None:
        buttons.append(_button("request_info", "Request info", card.case_id))
    if card.actions:
        if card.claimed_by:
            buttons.append(_button("release", "Release", card.case_id))
        else:
            buttons.append(_button("claim", "Claim", card.case_id))
    if cut:
        buttons.append(_button("full_context", "Show full context", card.case_id))
    return buttons


# -- modals --------------------------------------------------------------------------


def metadata(case_id: str, action: str, channel: str | None, ts: str | None) -> str:
    return json.dumps({"case": case_id, "action": action, "channel": channel, "ts": ts})


def _about(card: CardView) -> list[Block]:
    title, _ = fit(card.title, 500)
    blocks: list[Block] = [_section(f"*{title}*")]
    if not card.hide_recommendation:
        blocks.append(_context(recommendation(card)))
    return blocks


def decision_modal(card: CardView, action: str, private_metadata: str) -> dict[str, Any]:
    """Ask for the reason code and the reasoning. Reasoning is required on an override
    or `other`; on a blind-review card always, so that the form gives nothing away."""
    verb = "Approve" if action == "approve" else "Reject"
    options = [
        Option(value=code, text=PlainTextObject(text=plain(code, OPTION_TEXT)))
        for code in card.reason_codes[:MAX_OPTIONS]
    ]
    if card.hide_recommendation:
        hint = "Required: this is a blind review."
        optional = False
    else:
        overriding = action != card.recommended_action
        hint = (
            "Required: you are going against the AI's recommendation."
            if overriding
            else "Required if you pick `other`."
        )
        optional = not overriding
    blocks = [
        *_about(card),
        InputBlock(
            block_id=CODE_BLOCK,
            label=PlainTextObject(text="Reason code"),
            element=StaticSelectElement(
                action_id=CODE_ACTION,
                placeholder=PlainTextObject(text="Pick a reason"),
                options=options,
            ),
        ),
        InputBlock(
            block_id=REASON_BLOCK,
            label=PlainTextObject(text="Your reasoning"),
            element=PlainTextInputElement(
                action_id=REASON_ACTION, multiline=True, max_length=REASON_MAX
            ),
            hint=PlainTextObject(text=hint),
            optional=optional,
        ),
    ]
    view = View(
        type="modal",
        callback_id=DECIDE_VIEW,
        title=PlainTextObject(text=f"{verb} case"),
        submit=PlainTextObject(text=verb),
        close=PlainTextObject(text="Cancel"),
        blocks=blocks,
        private_metadata=private_metadata,
    )
    return view.to_dict()


def info_modal(card: CardView, private_metadata: str) -> dict[str, Any]:
    blocks = [
        *_about(card),
        InputBlock(
            block_id=QUESTION_BLOCK,
            label=PlainTextObject(text="What does the workflow need to tell you?"),
            element=PlainTextInputElement(
                action_id=QUESTION_ACTION, multiline=True, max_length=REASON_MAX
            ),
            hint=PlainTextObject(text="The case waits until the workflow answers."),
        ),
    ]
    view = View(
        type="modal",
        callback_id=INFO_VIEW,
        title=PlainTextObject(text="Request info"),
        submit=PlainTextObject(text="Ask"),
        close=PlainTextObject(text="Cancel"),
        blocks=blocks,
        private_metadata=private_metadata,
    )
    return view.to_dict()


def message_modal(title: str, text: str) -> dict[str, Any]:
    """A modal that only says something (a refusal after submit, for instance)."""
    view = View(
        type="modal",
        title=PlainTextObject(text=plain(title, 24)),
        close=PlainTextObject(text="Close"),
        blocks=[_section(fit(text, SECTION)[0])],
    )
    return view.to_dict()


def _chunks(text: str, size: int) -> list[str]:
    escaped = escape(text)
    out = []
    while escaped:
        piece = escaped[:size]
        cut_at = piece.rfind("&", max(0, len(piece) - 5))
        if len(escaped) > size and cut_at != -1 and ";" not in piece[cut_at:]:
            piece = piece[:cut_at]  # do not split an entity
        out.append(piece)
        escaped = escaped[len(piece) :]
    return out


def full_context_modal(card: CardView) -> dict[str, Any]:
    """The whole case, as far as a modal's 100 blocks reach."""
    blocks: list[Block] = [_section(fit(card.title, SECTION)[0])]
    texts = [("Question", card.question), ("Summary", card.summary)]
    if not card.hide_recommendation and card.rationale:
        texts.append(("AI rationale", card.rationale))
    for title, text in texts:
        if text:
            blocks.append(_context(f"*{title}*"))
            blocks += [_section(piece) for piece in _chunks(text, SECTION)]
    fields = [
        MarkdownTextObject(text=f"*{fit(f.label, 200)[0]}*\n{fit(f.value, FIELD - 210)[0]}")
        for f in card.facts
    ]
    for start in range(0, len(fields), FIELDS_PER_SECTION):
        blocks.append(SectionBlock(fields=fields[start : start + FIELDS_PER_SECTION]))
    for title, items in (("Evidence", card.evidence), ("Policy", card.policy_refs)):
        for start in range(0, len(items), LINKS_ON_CARD):
            text, _ = _links(title, items[start : start + LINKS_ON_CARD], LINKS_ON_CARD)
            blocks.append(_section(text))
    for entry in card.history:
        blocks += [_section(piece) for piece in _chunks(entry, SECTION)]
    if len(blocks) > MODAL_BLOCKS:
        rest = f"`GET /v1/escalations/{card.case_id}`"
        blocks = [*blocks[: MODAL_BLOCKS - 1], _context(f"_Cut here: the rest is in {rest}._")]
    view = View(
        type="modal",
        title=PlainTextObject(text="Full context"),
        close=PlainTextObject(text="Close"),
        blocks=blocks,
    )
    return view.to_dict()
