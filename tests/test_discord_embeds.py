"""Discord embeds, buttons and modals built from any workflow text fit Discord's limits,
checked by the test server's own (hand-written) checker; markdown escaping is exact."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import discord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.discord.adapter import mentions_of
from adapters.discord.embeds import (
    BUTTON_ID,
    decision_modal,
    fit,
    info_modal,
    link,
    md,
    render_card,
    who,
)
from adapters.discord.invite import client_id_from_token, invite_url, permissions
from bot.protocols import CardView, Link
from tests.discordkit import check_message, check_modal
from tests.test_slack_blocks import cards

SPECIAL = set("\\*_~`|>[]#@<:-")
NASTY = st.sampled_from(
    [
        "@everyone",
        "@here",
        "<@&300000000000000001>",
        "<@400000000000000001>",
        "[x](https://e.vil)",
        "# big",
        "-# small",
        "||spoiler||",
        "`code`",
        "\\",
        "*",
        "_",
        "~",
        ">",
        "\n",
        "é",
        "🚨",
    ]
)
TEXT = st.lists(st.one_of(st.text(max_size=30), NASTY), max_size=30).map("".join)


def message_of(card: CardView) -> dict[str, Any]:
    rendered = render_card(card)
    return {
        "embeds": [rendered.embed.to_dict()],
        "components": rendered.view.to_components(),
        "allowed_mentions": discord.AllowedMentions.none().to_dict(),
    }


def inert(text: str) -> bool:
    """Every character that could start markdown, a mention or a link is escaped."""
    i = 0
    while i < len(text):
        if text[i] == "\\":
            if i + 1 >= len(text) or text[i + 1] not in SPECIAL:
                return False
            i += 2
        elif text[i] in SPECIAL:
            return False
        else:
            i += 1
    return True


def unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cards())
def test_any_card_and_its_modals_fit_discord(card: CardView) -> None:
    assert check_message(message_of(card)) == []
    for verb in ("approve", "reject"):
        assert check_modal(decision_modal(card, verb, draft="x" * 5000).to_dict()) == []
    assert check_modal(info_modal(card).to_dict()) == []


@given(TEXT)
def test_md_escapes_every_mention_link_and_format_and_loses_nothing(text: str) -> None:
    escaped = md(text)
    assert inert(escaped)
    assert unescape(escaped) == text


@given(TEXT, st.integers(1, 300))
def test_fit_never_exceeds_its_limit_nor_splits_an_escape(text: str, limit: int) -> None:
    shown, was_cut = fit(text, limit)
    assert len(shown) <= limit
    body = shown.removesuffix("…") if was_cut else shown
    assert inert(body)
    assert was_cut == (len(md(text)) > limit)


def test_links_only_for_http_urls_and_labels_cannot_break_out() -> None:
    assert link(Link("a](https://evil)", "https://example.com/x y)")) == (
        "[a\\](https\\://evil)](https://example.com/x%20y%29)"
    )
    assert link(Link("run me", "javascript:alert(1)")) == "run me (javascript\\:alert(1))"
    assert link(Link("none", None)) == "none"


def test_deliberate_mentions_name_exactly_who_may_be_pinged() -> None:
    text, allowed = mentions_of(
        [
            "role:300000000000000003",
            "user:400000000000000001",
            "400000000000000002",
            "#200000000000000002",
            "@everyone",
        ]
    )
    assert (
        text == "<@&300000000000000003> <@400000000000000001> <@400000000000000002> "
        "<#200000000000000002>"
    )
    found = allowed.to_dict()
    assert found["parse"] == []
    assert found["roles"] == [300000000000000003]
    assert sorted(found["users"]) == [400000000000000001, 400000000000000002]
    assert who("discord:400000000000000001") == "<@400000000000000001>"
    assert who("slack:U0ALICE") == "U0ALICE on Slack"


def test_buttons_carry_the_case_and_the_action_within_100_characters() -> None:
    card = _card()
    ids = [c["custom_id"] for row in message_of(card)["components"] for c in row["components"]]
    assert ids == [
        f"signoff:{verb}:{card.case_id}" for verb in ("approve", "reject", "request_info", "claim")
    ]
    assert all(BUTTON_ID.fullmatch(i) and len(i) <= 100 for i in ids)
    assert BUTTON_ID.fullmatch("signoff:request_info:" + "a" * 64)
    assert not BUTTON_ID.fullmatch("signoff:request_info:" + "a" * 65)


def test_the_due_time_is_in_each_readers_zone_and_the_colour_follows_the_state() -> None:
    at = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    card = _card(due_at=at, sla_state="at_risk")
    embed = render_card(card).embed
    due = next(f for f in embed.fields if f.name == "⏰ Decide by")
    stamp = int(at.timestamp())
    assert due.value == f"<t:{stamp}:f> (<t:{stamp}:R>) · ⚠️ **At risk**"
    assert embed.colour == discord.Colour(0xF59E0B)
    assert render_card(_card(status="approved")).embed.colour == discord.Colour(0x16A34A)


def test_invite_url_asks_for_the_bot_scope_and_exactly_seven_permissions() -> None:
    url = invite_url("112233445566778899")
    assert url == (
        "https://discord.com/oauth2/authorize?client_id=112233445566778899&scope=bot"
        f"&permissions={permissions()}"
    )
    assert bin(permissions()).count("1") == 7
    assert client_id_from_token("MTEyMjMzNDQ1NTY2Nzc4ODk5.Gx.abc") == "112233445566778899"
    assert client_id_from_token("not-a-token") is None


def _card(**changes: Any) -> CardView:
    base: dict[str, Any] = {
        "case_id": "0193a1b2c3d4e5f60718293a4b5c",
        "lane": "review",
        "kind": "expense_approval",
        "status": "pending",
        "title": "Refund",
        "question": "Refund?",
        "summary": "",
        "recommended_action": "approve",
        "confidence": 0.8,
        "rationale": "",
        "runner_up": None,
        "runner_up_confidence": None,
        "hide_recommendation": False,
        "rule": "rule 4",
        "flags": [],
        "facts": [],
        "evidence": [],
        "policy_refs": [],
        "history": [],
        "due_at": None,
        "actions": ["approve", "reject", "request_info"],
        "reason_codes": ["policy_match", "other"],
    }
    base.update(changes)
    return CardView(**base)
