"""CardView to Block Kit, and the modals a click opens.

Built with `slack_sdk.models`, which checks Slack's limits as the JSON is made. Every
string a workflow sent goes through `escape` (mrkdwn) or a plain_text object, and is
cut to fit before it gets there: Slack must never refuse a card because of what a
workflow wrote. When something had to be cut, the card grows a "Show full context"
button that opens the whole case in a modal.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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
from bot.protocols import CardView, Fact, Link

SECTION = 3000
FIELD = 2000
HEADER = 150
FIELDS_PER_SECTION = 10
FACTS_ON_CARD = 20
FACT_LABEL = 100
FACT_VALUE = 300
LINKS_ON_CARD = 10
LINK_LINE = 600  # a link longer than this (its URL) is shown by its label only
EXCERPT = 200
MORE_NOTE = 40  # room kept for "_and N more in the full context_"
HISTORY_ON_CARD = 5
MODAL_BLOCKS = 100
# All the text of a card's blocks together: Slack refuses a message whose blocks hold
# more than about 12,000 characters (msg_blocks_too_long, see tests/slack_limits.py;
# it counts some of the blocks' structure too), so a card keeps well within it.
CARD_TEXT = 10_000
BUTTONS_TEXT = 120  # the labels of every button a card can show
STATE_TEXT = 2500  # outcome, votes, acknowledgement, claim, the waiting question
QUESTION_TEXT = 2000
RATIONALE_TEXT = 1200  # the recommendation line and the AI's rationale
WHY_TEXT = 1200  # the rule, why it matched and the flags
SUMMARY_TEXT = 1500
FACTS_TEXT = 1500
EVIDENCE_TEXT = 1200
POLICY_TEXT = 600
HISTORY_TEXT = 800
# A full-context page: the same budget as a card (Slack documents no total for a
# view; the message limit is the one known), and room for the page's own blocks.
PAGE_TEXT = 10_000
PAGE_BLOCKS = MODAL_BLOCKS - 3
FACT_FIELD = FIELD - 10
PAGE_CONTENT = PAGE_TEXT - 400  # the page line and the Previous / Next buttons
MAX_OPTIONS = 100
OPTION_TEXT = 75
# Slack refuses a plain_text_input whose max_length is over 3000 (views.open answers
# invalid_arguments), so a Slack reviewer writes at most 3000 characters. The service
# keeps its own bound (bot.service.MAX_REASON, 4000: Discord's text input allows that);
# the Slack form is tighter, never looser, and the submission handler refuses more.
REASON_MAX = 3000

ACTIONS_BLOCK = "signoff_actions"
PAGES_BLOCK = "signoff_pages"
PAGE_SEP = ":"
ACTION_PREFIX = "signoff_"
DECIDE_VIEW = "signoff_decide"
INFO_VIEW = "signoff_info"
EDIT_VIEW = "signoff_edit"
ARG_BLOCK_PREFIX, ARG_ACTION = "arg:", "json"
#: editable arguments one Slack form takes; a proposal with more is edited on the web
EDIT_ARGS_MAX = 20
PROPOSAL_TEXT = 1500
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


class Room:
    """What is left of a card's text budget (CARD_TEXT), handed out part by part in
    order of importance: a part gets at most its own cap and what is left."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.cut = False

    def take(self, cap: int) -> int:
        return max(0, min(cap, self.left))

    def spend(self, text: str) -> str:
        self.left -= len(text)
        return text


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text))


def _link_line(item: Link, long_url: str) -> str:
    line = f"• {link(item)}"
    if len(line) > LINK_LINE:
        line = f"• {escape(item.label)} ({long_url})"  # a link cannot be cut in the middle
    if item.excerpt:
        line += f" — {fit(item.excerpt, EXCERPT)[0]}"
    return line


def _links(title: str, items: Sequence[Link], limit: int, room: int) -> tuple[str, bool]:
    """Whole lines (never a link cut in two) up to `limit` items and `room` characters."""
    head = f"*{title}*"
    lines: list[str] = []
    used = len(head) + MORE_NOTE
    for item in items[:limit]:
        line = _link_line(item, "the link is in the full context")
        if used + len(line) + 1 > room:
            break
        lines.append(line)
        used += len(line) + 1
    more = len(items) - len(lines)
    if more:
        lines.append(f"_and {more} more in the full context_")
    return head + "\n" + "\n".join(lines), more > 0


def _fact_fields(facts: Sequence[Fact], room: int) -> tuple[list[MarkdownTextObject], bool]:
    fields: list[MarkdownTextObject] = []
    cut = False
    for fact in facts:
        name, name_cut = fit(fact.label, FACT_LABEL)
        shown, value_cut = fit(fact.value, FACT_VALUE)
        text = f"*{name}*\n{shown}"
        if len(text) > room:
            return fields, True
        room -= len(text)
        cut |= name_cut or value_cut
        fields.append(MarkdownTextObject(text=text))
    return fields, cut


def render_card(card: CardView) -> Rendered:
    """The message for a card: notification text, blocks, and whether text was cut.

    All its text together stays within CARD_TEXT (Slack refuses a message whose blocks
    hold more than about 12,000 characters, `msg_blocks_too_long`): the header, the
    buttons and the state first, then the question, the recommendation, why, the
    summary, facts, evidence, policy and history, each within its own cap and what is
    left. Whatever did not fit is behind the Show full context button."""
    room = Room(CARD_TEXT)
    icon = LANE_ICONS.get(card.lane, "📋")
    kind = "Audit sample" if card.audit else lane_title(card.lane)
    header = room.spend(plain(f"{icon} {kind}: {card.title}", HEADER))
    room.cut |= len(f"{icon} {kind}: {card.title}") > HEADER
    room.spend(" " * BUTTONS_TEXT)  # the buttons, whichever show
    case_line = room.spend(f"Case `{card.case_id}` · {fit(card.kind, 100)[0]}")
    due_line = ""
    if card.due_at is not None and card.outcome is None:
        due = slack_date(card.due_at, "{date_short_pretty} at {time} ({ago})")
        due_line = room.spend(f"⏰ Decide by {due}{SLA_WORDS.get(card.sla_state or '', '')}")

    state = state_lines(card)
    state_text = room.spend(_join_fit(state, room.take(STATE_TEXT))[0]) if state else ""

    question, was_cut = fit(card.question, room.take(QUESTION_TEXT) - 13)
    room.cut |= was_cut
    question_text = room.spend(f"*Question:* {question}")

    rec = recommendation(card)
    if card.rationale and not card.hide_recommendation:
        rationale, was_cut = fit(card.rationale, room.take(RATIONALE_TEXT) - len(rec) - 2)
        room.cut |= was_cut
        if rationale:
            rec += f"\n>{rationale}"
    rec = room.spend(rec)

    proposal = ""
    if card.proposal is not None:
        proposal, was_cut = _join_fit(
            cardtext.proposal_lines(card, SLACK), room.take(PROPOSAL_TEXT)
        )
        room.cut |= was_cut
        proposal = room.spend(proposal)

    why = f"*Why a person:* {fit(card.rule, 300)[0]}"
    if card.why:
        why += f": {fit('; '.join(card.why), 600)[0]}"
    if card.flags:
        flags, was_cut = fit(", ".join(card.flags), max(WHY_TEXT - len(why) - 10, 0))
        room.cut |= was_cut
        why += f" · flags: {flags}" if flags else ""
    why = room.spend(why)

    summary = ""
    if card.summary:
        summary, was_cut = fit(card.summary, room.take(SUMMARY_TEXT))
        room.cut |= was_cut
        room.spend(summary)

    shown = list(card.facts[:FACTS_ON_CARD])
    fields, was_cut = _fact_fields(shown, room.take(FACTS_TEXT))
    room.cut |= was_cut or len(fields) < len(card.facts)
    for field in fields:
        room.spend(field.text)
    more_facts = ""
    if len(fields) < len(card.facts):
        more_facts = room.spend(f"_{len(card.facts) - len(fields)} more facts in the full context_")

    lists: list[str] = []
    for title, items, cap in (
        ("Evidence", card.evidence, EVIDENCE_TEXT),
        ("Policy", card.policy_refs, POLICY_TEXT),
    ):
        if items:
            text, was_cut = _links(title, items, LINKS_ON_CARD, room.take(cap))
            room.cut |= was_cut
            lists.append(room.spend(text))
    history = ""
    if card.history:
        recent = card.history[-HISTORY_ON_CARD:]
        room.cut |= len(card.history) > HISTORY_ON_CARD
        text, was_cut = fit("\n".join(recent), room.take(HISTORY_TEXT) - 10)
        room.cut |= was_cut
        history = room.spend(f"*History*\n{text}") if text else ""
        room.cut |= not text

    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text=header, emoji=True))]
    blocks.append(_section(question_text))
    if summary:
        blocks.append(_section(summary))
    blocks.append(_section(rec))
    if proposal:
        blocks.append(_section(proposal))
    blocks.append(_section(why))
    for start in range(0, len(fields), FIELDS_PER_SECTION):
        blocks.append(SectionBlock(fields=fields[start : start + FIELDS_PER_SECTION]))
    if more_facts:
        blocks.append(_context(more_facts))
    blocks += [_section(text) for text in lists]
    if history:
        blocks.append(_section(history))
    if due_line:
        blocks.append(_context(due_line))
    blocks.append(_context(case_line))
    if state_text:
        blocks.append(DividerBlock())
        blocks.append(_section(state_text))

    buttons = _buttons(card, room.cut)
    if buttons:
        blocks.append(ActionsBlock(block_id=ACTIONS_BLOCK, elements=buttons))
    status = STATUS_WORDS.get(card.status, "Needs a decision")
    text = f"{kind} case ({status}): {escape(plain(card.title, 300))}"
    return Rendered(text, [b.to_dict() for b in blocks], room.cut)


def _join_fit(lines: list[str], limit: int = SECTION) -> tuple[str, bool]:
    """The lines, cut to `limit` on a whole line where one fits (a line holds mentions
    and dates that must not be cut in the middle), else on a character."""
    text = "\n".join(lines)
    if len(text) <= limit:
        return text, False
    kept: list[str] = []
    for line in lines:
        if len("\n".join([*kept, line])) + len(ELLIPSIS) + 1 > limit:
            break
        kept.append(line)
    if kept:
        return "\n".join(kept) + "\n" + ELLIPSIS, True
    return text[: max(limit - 1, 0)] + ELLIPSIS, True


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=text)])


def _button(action: str, label: str, value: str, **extra: Any) -> ButtonElement:
    return ButtonElement(
        text=PlainTextObject(text=label, emoji=True),
        action_id=ACTION_PREFIX + action,
        value=value,
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
    if "modify" in card.actions and card.proposal is not None:
        buttons.append(_button("modify", "Edit", card.case_id))
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


def _reason_blocks(card: CardView, label: str, hint: str, *, optional: bool = False) -> list[Block]:
    """The reason code (a select of the kind's codes) and the reasoning, as every
    decision form asks for them."""
    options = [
        Option(value=code, text=PlainTextObject(text=plain(code, OPTION_TEXT)))
        for code in card.reason_codes[:MAX_OPTIONS]
    ]
    return [
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
            label=PlainTextObject(text=label),
            element=PlainTextInputElement(
                action_id=REASON_ACTION, multiline=True, max_length=REASON_MAX
            ),
            hint=PlainTextObject(text=hint),
            optional=optional,
        ),
    ]


def _modal(
    callback_id: str, title: str, submit: str, blocks: list[Block], private_metadata: str
) -> dict[str, Any]:
    view = View(
        type="modal",
        callback_id=callback_id,
        title=PlainTextObject(text=title),
        submit=PlainTextObject(text=submit),
        close=PlainTextObject(text="Cancel"),
        blocks=blocks,
        private_metadata=private_metadata,
    )
    return view.to_dict()


def decision_modal(card: CardView, action: str, private_metadata: str) -> dict[str, Any]:
    """Ask for the reason code and the reasoning. Reasoning is required on an override
    or `other`; on a blind-review card always, so that the form gives nothing away."""
    verb = "Approve" if action == "approve" else "Reject"
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
    blocks = [*_about(card), *_reason_blocks(card, "Your reasoning", hint, optional=optional)]
    return _modal(DECIDE_VIEW, f"{verb} case", verb, blocks, private_metadata)


def edit_modal(card: CardView, private_metadata: str) -> dict[str, Any] | None:
    """Edit the proposal, then approve it: one field per editable argument, pre-filled
    with its JSON (a number stays a number), then the reason code and the reasoning,
    required (an edit changes what the AI proposed). None when the proposal does not fit
    a Slack form (too many editable arguments, or one longer than a field holds)."""
    found = card.proposal
    if found is None:
        return None
    names = list(found.editable)
    values = {name: cardtext.arg_json(found.args.get(name)) for name in names}
    if len(names) > EDIT_ARGS_MAX or any(len(v) > REASON_MAX for v in values.values()):
        return None
    blocks: list[Block] = [
        *_about(card),
        _context(
            f"*Proposed:* `{fit(found.name, 200)[0]}`. Each value is JSON: text in "
            "double quotes, numbers and true/false as they are."
        ),
    ]
    for name in names:
        blocks.append(
            InputBlock(
                block_id=ARG_BLOCK_PREFIX + name,
                label=PlainTextObject(text=plain(name, 200)),
                element=PlainTextInputElement(
                    action_id=ARG_ACTION,
                    initial_value=values[name],
                    multiline=len(values[name]) > 60,
                    max_length=REASON_MAX,
                ),
            )
        )
    blocks += _reason_blocks(
        card, "Why you changed it", "Required: you are changing what the AI proposed."
    )
    return _modal(EDIT_VIEW, "Edit and approve", "Approve with changes", blocks, private_metadata)


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
    return _modal(INFO_VIEW, "Request info", "Ask", blocks, private_metadata)


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


def _fact_blocks(facts: Sequence[Fact]) -> list[Block]:
    """Facts as two-column fields, ten to a section and at most a section's length
    each; a value too long for a field gets sections of its own."""
    blocks: list[Block] = []
    fields: list[MarkdownTextObject] = []
    used = 0
    for fact in facts:
        name = fit(fact.label, 200)[0]
        value = escape(fact.value)
        text = f"*{name}*\n{value}"
        if len(text) > FACT_FIELD:
            head = f"*{name}*\n"
            blocks += [_section(head + piece) for piece in _chunks(fact.value, SECTION - len(head))]
            continue
        if len(fields) == FIELDS_PER_SECTION or used + len(text) > SECTION:
            blocks.append(SectionBlock(fields=fields))
            fields, used = [], 0
        fields.append(MarkdownTextObject(text=text))
        used += len(text)
    if fields:
        blocks.append(SectionBlock(fields=fields))
    return blocks


def _context_blocks(card: CardView) -> list[Block]:
    """The whole case, a block at a time, each within Slack's limits."""
    rest = f"`GET /v1/escalations/{card.case_id}`"
    blocks: list[Block] = [_section(piece) for piece in _chunks(card.title, SECTION)]
    texts = [("Question", card.question), ("Summary", card.summary)]
    if not card.hide_recommendation and card.rationale:
        texts.append(("AI rationale", card.rationale))
    for title, text in texts:
        if text:
            blocks.append(_context(f"*{title}*"))
            blocks += [_section(piece) for piece in _chunks(text, SECTION)]
    blocks += _fact_blocks(card.facts)
    for title, items in (("Evidence", card.evidence), ("Policy", card.policy_refs)):
        if items:
            blocks.append(_context(f"*{title}*"))
        for item in items:
            line = _link_line(item, f"the URL is too long for Slack: see {rest}")
            blocks += [_section(piece) for piece in _split(line, SECTION)]
    if card.history:
        blocks.append(_context("*History*"))
    for entry in card.history:
        blocks += [_section(piece) for piece in _chunks(entry, SECTION)]
    return blocks


def _split(line: str, size: int) -> list[str]:
    """An already escaped line in pieces of `size`, never inside an entity."""
    out = []
    while line:
        piece = line[:size]
        cut_at = piece.rfind("&", max(0, len(piece) - 5))
        if len(line) > size and cut_at != -1 and ";" not in piece[cut_at:]:
            piece = piece[:cut_at]
        out.append(piece)
        line = line[len(piece) :]
    return out


def _pages(blocks: list[Block]) -> list[list[Block]]:
    """Blocks in pages of at most PAGE_BLOCKS blocks and PAGE_TEXT characters."""
    pages: list[list[Block]] = [[]]
    used = 0
    for block in blocks:
        size = _text_of(block.to_dict())
        if pages[-1] and (len(pages[-1]) == PAGE_BLOCKS or used + size > PAGE_CONTENT):
            pages.append([])
            used = 0
        pages[-1].append(block)
        used += size
    return pages


def _text_of(value: Any) -> int:
    if isinstance(value, list):
        return sum(_text_of(item) for item in value)
    if isinstance(value, dict):
        return sum(
            len(item) if key == "text" and isinstance(item, str) else _text_of(item)
            for key, item in value.items()
        )
    return 0


def page_value(case_id: str, page: int) -> str:
    return f"{case_id}{PAGE_SEP}{page}"


def parse_page(value: str) -> tuple[str, int]:
    """A page button's value: the case and the page (0 for anything malformed)."""
    case_id, _, page = value.rpartition(PAGE_SEP)
    return (case_id, int(page)) if page.isdigit() and case_id else (value, 0)


def full_context_modal(card: CardView, page: int = 0) -> dict[str, Any]:
    """The whole case, in pages a modal holds (at most 100 blocks, and text as a
    message holds), with Previous / Next buttons and a pointer to the API."""
    pages = _pages(_context_blocks(card))
    page = min(max(page, 0), len(pages) - 1)
    rest = f"`GET /v1/escalations/{card.case_id}`"
    where = f"Page {page + 1} of {len(pages)} · " if len(pages) > 1 else ""
    blocks: list[Block] = [_context(f"{where}The whole case, as the API keeps it: {rest}")]
    blocks += pages[page]
    nav = []
    if page > 0:
        nav.append(_button("page_previous", "◀ Previous", page_value(card.case_id, page - 1)))
    if page + 1 < len(pages):
        nav.append(_button("page_next", "Next ▶", page_value(card.case_id, page + 1)))
    if nav:
        blocks.append(ActionsBlock(block_id=PAGES_BLOCK, elements=nav))
    title = f"Full context {page + 1}/{len(pages)}" if len(pages) > 1 else "Full context"
    view = View(
        type="modal",
        title=PlainTextObject(text=plain(title, 24)),
        close=PlainTextObject(text="Close"),
        blocks=blocks,
        private_metadata=json.dumps({"case": card.case_id, "page": page}),
    )
    return view.to_dict()
