"""CardView to a Discord embed and buttons, and the modals a click opens.

Built with discord.py's `Embed` and `ui` items. Every string a workflow sent goes
through `md` (Discord markdown escaped, so that `@everyone`, `<@&role>`, `[label](url)`
and headings stay text) and is cut to Discord's limits before it gets there. Messages
are sent with no allowed mentions as well, so even a missed escape cannot ping anyone.
When something had to be cut, the card grows a "Full context" button that answers with
the whole case as a file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import discord

from adapters import cardtext
from adapters.cardtext import LANE_ICONS, STATUS_WORDS, lane_title
from adapters.text import cut, plain
from bot.protocols import CardView, Link

TITLE = 256
DESCRIPTION = 4096
FIELDS = 25
FIELD_NAME = 256
FIELD_VALUE = 1024
FOOTER = 2048
EMBED_TOTAL = 6000
CONTENT = 2000
MODAL_TITLE = 45
LABEL = 45
LABEL_DESCRIPTION = 100
OPTIONS = 25
OPTION_TEXT = 100
TEXT_INPUT = 4000
TEXT_DISPLAY = 4000
FACTS_ON_CARD = 15
FACT_VALUE = 300
LINKS_ON_CARD = 8
HISTORY_ON_CARD = 5
BUDGET = 5800  # of EMBED_TOTAL (title, description, fields and footer together)
SCALES = (1.0, 0.75, 0.5, 0.3, 0.15, 0.0)  # how far limits shrink when a card is too big
MIN_SHOWN = 40  # the shortest any cut text gets (with its ellipsis)
FOOTER_SHOWN = 200
MORE_FACTS = "*and {} more facts in the full context*"  # {} is at most 3 digits wide
LINK_URL = 512  # the longest URL a masked link takes (a link button's limit, the stricter)

# custom_id: `signoff:<verb>:<case>` on buttons, `signoff:form:<verb>:<case>` on modals
CASE_ID = r"[A-Za-z0-9_-]{1,64}"
VERBS = "approve|reject|modify|request_info|acknowledge|claim|release|full_context"
BUTTON_ID = re.compile(rf"signoff:(?P<verb>{VERBS}):(?P<case>{CASE_ID})")
FORM_ID = re.compile(
    rf"signoff:form:(?P<verb>approve|reject|modify|request_info):(?P<case>{CASE_ID})"
)
CODE_INPUT, REASON_INPUT, QUESTION_INPUT = "code", "reason", "question"
ARG_INPUT_PREFIX, ARGS_INPUT = "arg:", "args"  # one argument's JSON; all of them, as an object
MODAL_COMPONENTS = 5  # a modal's top-level components (Labels, text displays)
PROPOSAL_SHOWN = 900

LANE_COLOURS = {"review": 0x3B82F6, "expert": 0x8B5CF6, "stop_the_line": 0xDC2626}
STATE_COLOURS = {"approved": 0x16A34A, "rejected": 0x991B1B}
SLA_COLOURS = {"at_risk": 0xF59E0B, "overdue": 0xB91C1C}
DONE_COLOUR = 0x6B7280
SLA_WORDS = {"at_risk": " · ⚠️ **At risk**", "overdue": " · 🔴 **Overdue**"}
PLATFORM_NAMES = {"slack": "Slack", "discord": "Discord"}

_SPECIAL = re.compile(r"([\\*_~`|>\[\]#@<:-])")


def md(text: str) -> str:
    """Make workflow text inert in Discord markdown: a backslash before every character
    that starts formatting, a link, a mention (`@everyone`, `<@…>`) or an emoji."""
    return _SPECIAL.sub(r"\\\1", text)


def fit(text: str, limit: int) -> tuple[str, bool]:
    """`md(text)` cut to at most `limit` characters, never inside an escape."""
    return cut(text, limit, md)


def who(reviewer: str | None) -> str:
    """A reviewer key (`discord:123`) as a mention (shown, never pinged); someone on
    another platform by their ID there."""
    if not reviewer:
        return "someone"
    platform, _, user = reviewer.partition(":")
    if platform == "discord" and user.isdigit():
        return f"<@{user}>"
    if platform in PLATFORM_NAMES and user:
        return f"{md(user)} on {PLATFORM_NAMES[platform]}"
    return md(reviewer)


def when(at: datetime, style: str = "f") -> str:
    """A Discord timestamp: every reader sees it in their own time zone."""
    return f"<t:{int(at.timestamp())}:{style}>"


DISCORD = cardtext.Markup(
    fit=fit,
    who=who,
    when=when,
    bold="**",
    code="**",  # a code span cannot be escaped inside: terms are bold instead
    quote="> ",
    reason_limit=500,
    question_limit=300,
    one_line=True,  # a quote in Discord markdown ends at the line's end
)


def recommendation(card: CardView) -> str:
    return cardtext.recommendation(card, DISCORD)


def state_lines(card: CardView) -> list[str]:
    return cardtext.state_lines(card, DISCORD)


def colour(card: CardView) -> int:
    if card.status in STATE_COLOURS:
        return STATE_COLOURS[card.status]
    if card.outcome is not None or card.status in STATUS_WORDS:
        return DONE_COLOUR
    if card.sla_state in SLA_COLOURS:
        return SLA_COLOURS[card.sla_state]
    return LANE_COLOURS.get(card.lane, DONE_COLOUR)


@dataclass(frozen=True)
class Rendered:
    embed: discord.Embed
    view: discord.ui.View
    cut: bool


class _Cuts:
    """Every cut made while rendering one card, so that none goes unnoticed: a card that
    cut anything offers "Full context"."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.any = False

    def fit(self, text: str, limit: int) -> str:
        shown, was_cut = fit(text, max(MIN_SHOWN, int(limit * self.scale)))
        self.any |= was_cut
        return shown

    def mark(self, was_cut: bool) -> None:
        self.any |= was_cut


def link(item: Link, cuts: _Cuts | None = None) -> str:
    """A masked link only for http(s) URLs, with its label escaped and the URL unable to
    end the link early; anything else is shown as text."""
    cuts = cuts or _Cuts(1.0)
    label = cuts.fit(item.label or item.url or "link", 200)
    url = item.url or ""
    if url.lower().startswith(("https://", "http://")) and len(url) <= LINK_URL:
        return f"[{label}]({quote(url, safe=':/?#@!$&*+,;=%~.-_')})"
    return f"{label} ({cuts.fit(url, 200)})" if url else label


def _links(items: Sequence[Link], cuts: _Cuts) -> str:
    limit = max(MIN_SHOWN, int(FIELD_VALUE * cuts.scale))
    lines: list[str] = []
    more = False
    for count, item in enumerate(items):
        line = f"• {link(item, cuts)}"
        if item.excerpt:
            line += f" — {cuts.fit(item.excerpt, 120)}"
        if count >= LINKS_ON_CARD or len("\n".join([*lines, line])) > limit - 40:
            more = True
            break
        lines.append(line)
    if more:
        lines.append(f"*and {len(items) - len(lines)} more in the full context*")
        cuts.mark(True)
    return "\n".join(lines)


def _join(lines: Sequence[str], limit: int) -> tuple[str, bool]:
    """Whole lines that fit in `limit` (a line is never cut inside an escape or a link)."""
    kept: list[str] = []
    for line in lines:
        if len("\n".join([*kept, line])) > limit - 2:
            return "\n".join(kept) + "\n…", True
        kept.append(line)
    return "\n".join(kept), False


def render_card(card: CardView) -> Rendered:
    """The embed and buttons for a card, and whether any text was cut. Everything is
    shown at its own limit if the whole fits Discord's 6000 characters; if not, the
    card is drawn again with every limit scaled down until it does."""
    for scale in SCALES:
        embed, was_cut = _render(card, scale)
        if len(embed) <= BUDGET:
            return Rendered(embed, buttons(card, was_cut), was_cut)
    return Rendered(embed, buttons(card, True), True)  # pragma: no cover (MIN_SHOWN fits)


def _render(card: CardView, scale: float) -> tuple[discord.Embed, bool]:
    cuts = _Cuts(scale)
    icon = LANE_ICONS.get(card.lane, "📋")
    kind = "Audit sample" if card.audit else lane_title(card.lane)
    title, c = fit(f"{icon} {kind}: {card.title}", TITLE)
    cuts.mark(c)

    parts = [f"**Question:** {cuts.fit(card.question, 1000)}"]
    if card.summary:
        parts.append(cuts.fit(card.summary, 1200))
    rec = recommendation(card)
    if card.rationale and not card.hide_recommendation:
        rec += f"\n> {cuts.fit(card.rationale.replace(chr(10), ' '), 600)}"
    parts.append(rec)
    if card.proposal is not None:
        limit = max(MIN_SHOWN, int(PROPOSAL_SHOWN * scale))
        text, c = _join(cardtext.proposal_lines(card, DISCORD), limit)
        cuts.mark(c)
        parts.append(text)
    why = f"**Why a person:** {cuts.fit(card.rule, 200)}"
    if card.why:
        why += f": {cuts.fit('; '.join(card.why), 400)}"
    if card.flags:
        why += f" · flags: {cuts.fit(', '.join(card.flags), 400)}"
    parts.append(why)

    embed = discord.Embed(title=title, description="\n\n".join(parts), colour=colour(card))
    tail: list[tuple[str, str]] = []
    for name, items in (("Evidence", card.evidence), ("Policy", card.policy_refs)):
        if items:
            tail.append((name, _links(items, cuts)))
    if card.history:
        recent = [cuts.fit(h, 300) for h in card.history[-HISTORY_ON_CARD:]]
        if len(card.history) > HISTORY_ON_CARD:
            earlier = len(card.history) - HISTORY_ON_CARD
            recent.insert(0, f"*{earlier} earlier in the full context*")
        limit = max(MIN_SHOWN, int(FIELD_VALUE * scale))
        text, c = _join(recent, limit)
        cuts.mark(c or len(card.history) > HISTORY_ON_CARD)
        tail.append(("History", text))
    if card.due_at is not None and card.outcome is None:
        risk = SLA_WORDS.get(card.sla_state or "", "")
        sla = f"{when(card.due_at)} ({when(card.due_at, 'R')}){risk}"
        tail.append(("⏰ Decide by", sla))
    state = state_lines(card)
    if state:
        text, c = _join(state, FIELD_VALUE)
        cuts.mark(c or _state_cut(card))
        tail.append(("Status", text))
    footer = plain(f"Case {card.case_id} · {card.kind}", FOOTER_SHOWN)

    used = len(title) + len(embed.description or "") + len(footer)
    used += sum(len(n) + len(v) for n, v in tail)
    facts = list(card.facts[:FACTS_ON_CARD])
    room = min(FIELDS - len(tail) - 1, len(facts))  # a field kept for the note on the rest
    for fact in facts[:room]:
        name = cuts.fit(fact.label.strip(), 200) or "—"
        value = cuts.fit(fact.value.strip(), FACT_VALUE) or "—"  # Discord refuses a blank
        if used + len(name) + len(value) > BUDGET - len(MORE_FACTS) - 2:
            break
        used += len(name) + len(value)
        embed.add_field(name=name, value=value, inline=True)
    if omitted := len(card.facts) - len(embed.fields):
        cuts.mark(True)
        embed.add_field(name="…", value=MORE_FACTS.format(omitted), inline=False)
    for name, value in tail:
        embed.add_field(name=name, value=value.strip() or "—", inline=False)
    embed.set_footer(text=footer)
    return embed, cuts.any


def _state_cut(card: CardView) -> bool:
    """Whether the status lines cut the reviewer's reasoning or the waiting question."""
    reason = card.outcome.reason if card.outcome is not None else None
    if reason and len(md(" ".join(reason.split()))) > DISCORD.reason_limit:
        return True
    question = card.info_question
    return question is not None and len(md(question)) > DISCORD.question_limit


class CardButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=BUTTON_ID):
    """A card's button: the case and the action live in its `custom_id`, so it works for
    every card ever posted, across restarts, with nothing kept in memory. Clicks are
    handled by the client's interaction handler (see interactions.py)."""

    def __init__(self, verb: str, case_id: str, label: str, style: discord.ButtonStyle) -> None:
        super().__init__(
            discord.ui.Button(label=label, style=style, custom_id=f"signoff:{verb}:{case_id}")
        )
        self.verb = verb
        self.case_id = case_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[discord.Client],
        item: discord.ui.Item[discord.ui.View],
        match: re.Match[str],
        /,
    ) -> CardButton:
        return cls(match["verb"], match["case"], "", discord.ButtonStyle.secondary)

    async def callback(self, interaction: discord.Interaction[discord.Client]) -> None:
        handler = getattr(interaction.client, "on_card_button", None)
        if handler is not None:
            await handler(interaction, self.verb, self.case_id)


def buttons(card: CardView, was_cut: bool) -> discord.ui.View:
    """The card's buttons, in a view that is never stored: `CardButton`'s template
    dispatches every click, so 100,000 open cards cost no memory."""
    view = discord.ui.View(timeout=None)
    style = discord.ButtonStyle

    def add(verb: str, label: str, kind: discord.ButtonStyle) -> None:
        view.add_item(CardButton(verb, card.case_id, label, kind))

    if card.needs_ack:
        add("acknowledge", "Acknowledge", style.primary)
    if "approve" in card.actions:
        add("approve", "Approve", style.success)
    if "reject" in card.actions:
        add("reject", "Reject", style.danger)
    if "modify" in card.actions and card.proposal is not None:
        add("modify", "Edit", style.primary)
    if "request_info" in card.actions and card.info_question is None:
        add("request_info", "Request info", style.secondary)
    if card.actions:
        if card.claimed_by:
            add("release", "Release", style.secondary)
        else:
            add("claim", "Claim", style.secondary)
    if was_cut:
        add("full_context", "Full context", style.secondary)
    view.stop()  # never stored for a message: CardButton's template dispatches clicks
    return view


# -- modals --------------------------------------------------------------------------


def reasoning_rule(card: CardView, verb: str) -> tuple[bool, str]:
    """Whether the reasoning box is required from the start, and the hint under it.
    Reasoning is required on an override or `other`; on a blind card always, so that the
    form gives nothing away."""
    if card.hide_recommendation:
        return True, "Required: this is a blind review."
    if verb != card.recommended_action:
        return True, "Required: you are going against the AI's recommendation."
    return False, "Required if the reason is `other`."


def decision_modal(card: CardView, verb: str, draft: str | None = None) -> discord.ui.Modal:
    """Ask for the reason code (a select, or a typed code past 25 codes) and reasoning."""
    word = "Approve" if verb == "approve" else "Reject"
    modal = discord.ui.Modal(
        title=plain(f"{word}: {card.title}", MODAL_TITLE),
        custom_id=f"signoff:form:{verb}:{card.case_id}",
        timeout=None,
    )
    modal.add_item(_code_item(card, modal))
    required, hint = reasoning_rule(card, verb)
    modal.add_item(
        discord.ui.Label(
            text="Your reasoning",
            description=plain(hint, LABEL_DESCRIPTION),
            component=discord.ui.TextInput(
                custom_id=REASON_INPUT,
                style=discord.TextStyle.paragraph,
                max_length=TEXT_INPUT,
                required=required,
                default=draft[:TEXT_INPUT] if draft else None,
            ),
        )
    )
    modal.stop()  # never stored: the submission is read statelessly (interactions.py)
    return modal


def _code_item(card: CardView, modal: discord.ui.Modal) -> discord.ui.Label[discord.ui.Modal]:
    """The reason code: a select, or a typed code past 25 codes (their list shown above
    the box, in the modal, when it is too long for the label's description)."""
    codes = list(card.reason_codes)
    code: discord.ui.Item[discord.ui.Modal]
    if 0 < len(codes) <= OPTIONS:
        code = discord.ui.Select(
            custom_id=CODE_INPUT,
            placeholder="Pick a reason",
            options=[
                discord.SelectOption(label=plain(c, OPTION_TEXT), value=c[:OPTION_TEXT])
                for c in codes
            ],
            min_values=1,
            max_values=1,
            required=True,
        )
        described = None
    else:
        code = discord.ui.TextInput(custom_id=CODE_INPUT, max_length=100, required=True)
        listed = "One of: " + ", ".join(codes)
        described = plain(listed, LABEL_DESCRIPTION) if codes else None
        if codes and len(listed) > LABEL_DESCRIPTION:
            modal.add_item(discord.ui.TextDisplay(fit(listed, TEXT_DISPLAY)[0]))
    return discord.ui.Label(text="Reason code", component=code, description=described)


def edit_modal(card: CardView, draft: str | None = None) -> discord.ui.Modal | None:
    """Edit the proposal, then approve it. A modal holds 5 components: the reason code
    and the reasoning take two, so up to three editable arguments get a field each
    (pre-filled with their JSON); more share one field holding a JSON object. None
    when even that does not fit a text input (then the web inbox is the place)."""
    found = card.proposal
    if found is None:
        return None
    modal = discord.ui.Modal(
        title=plain(f"Edit: {card.title}", MODAL_TITLE),
        custom_id=f"signoff:form:modify:{card.case_id}",
        timeout=None,
    )
    code = _code_item(card, modal)
    names = list(found.editable)
    values = {name: cardtext.arg_json(found.args.get(name)) for name in names}
    slots = MODAL_COMPONENTS - 2 - len(modal.children)
    if len(names) <= slots and all(len(v) <= TEXT_INPUT for v in values.values()):
        for name in names:
            modal.add_item(
                discord.ui.Label(
                    text=plain(name, LABEL),
                    description=plain(f"{found.name}: {name}, as JSON", LABEL_DESCRIPTION),
                    component=discord.ui.TextInput(
                        custom_id=ARG_INPUT_PREFIX + name,
                        style=discord.TextStyle.paragraph
                        if len(values[name]) > 60
                        else discord.TextStyle.short,
                        max_length=TEXT_INPUT,
                        required=True,
                        default=values[name],
                    ),
                )
            )
    else:
        together = json.dumps(
            {name: found.args.get(name) for name in names}, ensure_ascii=False, indent=1
        )
        if len(together) > TEXT_INPUT or slots < 1:
            return None
        modal.add_item(
            discord.ui.Label(
                text="Arguments (JSON)",
                description=plain(f"{found.name}: the editable arguments", LABEL_DESCRIPTION),
                component=discord.ui.TextInput(
                    custom_id=ARGS_INPUT,
                    style=discord.TextStyle.paragraph,
                    max_length=TEXT_INPUT,
                    required=True,
                    default=together,
                ),
            )
        )
    modal.add_item(code)
    modal.add_item(
        discord.ui.Label(
            text="Why you changed it",
            description="Required: you are changing what the AI proposed.",
            component=discord.ui.TextInput(
                custom_id=REASON_INPUT,
                style=discord.TextStyle.paragraph,
                max_length=TEXT_INPUT,
                required=True,
                default=draft[:TEXT_INPUT] if draft else None,
            ),
        )
    )
    modal.stop()
    return modal


def edited_args(values: dict[str, str]) -> dict[str, Any]:
    """The arguments an edit form sent, parsed; ValueError saying which is not JSON."""
    edits: dict[str, Any] = {}
    if ARGS_INPUT in values:
        try:
            together = json.loads(values[ARGS_INPUT])
        except ValueError as exc:
            raise ValueError(f"The arguments are not JSON: {exc}.") from exc
        if not isinstance(together, dict):
            raise ValueError('The arguments must be a JSON object, {"name": value, ...}.')
        edits.update(together)
    for key, text in values.items():
        if key.startswith(ARG_INPUT_PREFIX):
            name = key.removeprefix(ARG_INPUT_PREFIX)
            try:
                edits[name] = json.loads(text)
            except ValueError as exc:
                raise ValueError(
                    f"{name} is not JSON: put text in double quotes; numbers, true, false "
                    "and null as they are."
                ) from exc
    return edits


def info_modal(card: CardView, draft: str | None = None) -> discord.ui.Modal:
    modal = discord.ui.Modal(
        title=plain(f"Ask: {card.title}", MODAL_TITLE),
        custom_id=f"signoff:form:request_info:{card.case_id}",
        timeout=None,
    )
    modal.add_item(
        discord.ui.Label(
            text="Your question for the workflow",
            description="The workflow answers it; the card waits, and its SLA pauses.",
            component=discord.ui.TextInput(
                custom_id=QUESTION_INPUT,
                style=discord.TextStyle.paragraph,
                max_length=TEXT_INPUT,
                required=True,
                default=draft[:TEXT_INPUT] if draft else None,
            ),
        )
    )
    modal.stop()
    return modal


def full_context(card: CardView) -> str:
    """The whole case as Markdown, for the "Full context" file (nothing cut)."""
    lines = [f"# {card.title}", "", f"Case {card.case_id} · {card.kind} · {lane_title(card.lane)}"]
    lines += ["", "## Question", card.question]
    if card.summary:
        lines += ["", "## Summary", card.summary]
    lines += ["", "## AI recommendation"]
    if card.hide_recommendation:
        lines.append("Hidden for blind review; it is shown once you decide.")
    else:
        lines.append(f"{card.recommended_action} at {card.confidence:.0%}")
        if card.runner_up:
            lines.append(f"Runner-up: {card.runner_up}")
        if card.rationale:
            lines += ["", card.rationale]
    lines += ["", "## Why a person", card.rule, *card.why]
    if card.flags:
        lines.append("Flags: " + ", ".join(card.flags))
    if card.facts:
        lines += ["", "## Facts", *(f"- {f.label}: {f.value}" for f in card.facts)]
    for name, items in (("Evidence", card.evidence), ("Policy", card.policy_refs)):
        if items:
            lines += ["", f"## {name}"]
            lines += [f"- {i.label} {i.url or ''} {i.excerpt}".rstrip() for i in items]
    if card.history:
        lines += ["", "## History", *card.history]
    if card.info_question is not None:
        lines += ["", "## Waiting for the workflow to answer", card.info_question]
    decisions = [*card.votes, *([card.outcome] if card.outcome is not None else [])]
    if decisions:
        lines += ["", "## Decisions"]
        for d in decisions:
            by = d.reviewer if d.decided_by == "human" else d.decided_by
            code = f" ({d.reason_code})" if d.reason_code else ""
            lines.append(f"- {d.action} by {by} at {d.at.isoformat()}{code}")
            if d.reason:
                lines.append(f"  {d.reason}")
    return "\n".join(lines) + "\n"
