"""Discord embeds, buttons and modals built from any workflow text fit Discord's limits,
checked by the test server's own (hand-written) checker; markdown escaping is exact."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import discord
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.discord.adapter import mentions_of
from adapters.discord.embeds import (
    BUTTON_ID,
    decision_modal,
    fit,
    full_context,
    info_modal,
    link,
    md,
    render_card,
    who,
)
from adapters.discord.invite import client_id_from_token, invite_url, permissions
from bot.protocols import CardView, Fact, Link, Outcome
from tests.discord_api import discord_api
from tests.discord_limits import LIMITS, nest
from tests.discordkit import (
    REQUIRED,
    Problem,
    check_message,
    check_modal,
    errors_tree,
    message_problems,
    modal_problems,
    thread_problems,
)
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


# -- every documented limit, at the bound and one past it ---------------------------------

Build = Callable[[int], dict[str, Any]]


def _message(**fields: Any) -> dict[str, Any]:
    return {"content": "x"} | fields


def _embed(**fields: Any) -> dict[str, Any]:
    return {"embeds": [{"title": "t"} | fields]}


def _row(*children: dict[str, Any]) -> dict[str, Any]:
    return {"components": [{"type": 1, "components": list(children)}]}


def _button(**fields: Any) -> dict[str, Any]:
    return {"type": 2, "style": 1, "label": "B", "custom_id": "b"} | fields


def _select(**fields: Any) -> dict[str, Any]:
    options = [{"label": "A", "value": "a"}, {"label": "B", "value": "b"}]
    return {"type": 3, "custom_id": "s", "options": options} | fields


def _modal(*components: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"custom_id": "m", "title": "T", "components": list(components)} | fields


def _labelled(inner: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    inner = inner if inner is not None else _text_input()
    return {"type": 18, "label": "L", "component": inner} | fields


def _text_input(**fields: Any) -> dict[str, Any]:
    return {"type": 4, "custom_id": "t", "style": 2} | fields


def _options(n: int, **fields: Any) -> list[dict[str, Any]]:
    return [{"label": f"o{i}", "value": f"v{i}"} | fields for i in range(n)]


# name -> (what is checked, a payload holding n of the limited thing, the bound to test)
CASES: dict[str, tuple[str, Build, int]] = {
    "content": ("message", lambda n: {"content": "x" * n}, 2000),
    "nonce": ("message", lambda n: _message(nonce="n" * n), 25),
    "embeds": ("message", lambda n: {"embeds": [{"title": "t"}] * n}, 10),
    "sticker_ids": ("message", lambda n: _message(sticker_ids=["1"] * n), 3),
    "embed.title": ("message", lambda n: _embed(title="t" * n), 256),
    "embed.description": ("message", lambda n: _embed(description="d" * n), 4096),
    "embed.fields": (
        "message",
        lambda n: _embed(fields=[{"name": "n", "value": "v"}] * n),
        25,
    ),
    "embed.field.name": (
        "message",
        lambda n: _embed(fields=[{"name": "n" * n, "value": "v"}]),
        256,
    ),
    "embed.field.value": (
        "message",
        lambda n: _embed(fields=[{"name": "n", "value": "v" * n}]),
        1024,
    ),
    "embed.footer.text": ("message", lambda n: _embed(footer={"text": "f" * n}), 2048),
    "embed.author.name": ("message", lambda n: _embed(author={"name": "a" * n}), 256),
    "embed.total": (
        "message",
        lambda n: {"embeds": [{"description": "d" * 4000}, {"description": "d" * (n - 4000)}]},
        6000,
    ),
    "embed.url": ("message", lambda n: _embed(url="https://e.x/" + "u" * (n - 12)), 2048),
    "embed.color": ("message", lambda n: _embed(color=n), 0xFFFFFF),
    "allowed_mentions.users": (
        "message",
        lambda n: _message(allowed_mentions={"users": [str(10**17 + i) for i in range(n)]}),
        100,
    ),
    "allowed_mentions.roles": (
        "message",
        lambda n: _message(allowed_mentions={"roles": [str(10**17 + i) for i in range(n)]}),
        100,
    ),
    "allowed_mentions.parse": (
        "message",
        lambda n: _message(allowed_mentions={"parse": (["everyone", "roles", "users"] * 2)[:n]}),
        3,
    ),
    "attachment.description": (
        "message",
        lambda n: _message(attachments=[{"id": 0, "description": "d" * n}]),
        1024,
    ),
    "components.rows": (
        "message",
        lambda n: {
            "content": "x",
            "components": [
                {"type": 1, "components": [_button(custom_id=f"r{i}")]} for i in range(n)
            ],
        },
        5,
    ),
    "row.components": (
        "message",
        lambda n: _row(*[_button(custom_id=f"b{i}") for i in range(n)]),
        5,
    ),
    "components.v2.total": (
        "message",
        lambda n: {
            "flags": 1 << 15,
            "components": [{"type": 10, "content": f"t{i}"} for i in range(n)],
        },
        40,
    ),
    "text_display.content": (
        "message",
        lambda n: {"flags": 1 << 15, "components": [{"type": 10, "content": "c" * n}]},
        4000,
    ),
    "custom_id": ("message", lambda n: _row(_button(custom_id="c" * n)), 100),
    "button.label": ("message", lambda n: _row(_button(label="l" * n)), 80),
    "button.url": (
        "message",
        lambda n: _row(
            {"type": 2, "style": 5, "label": "L", "url": "https://e.x/" + "u" * (n - 12)}
        ),
        512,
    ),
    "select.options": ("message", lambda n: _row(_select(options=_options(n))), 25),
    "select.placeholder": ("message", lambda n: _row(_select(placeholder="p" * n)), 150),
    "select.min_values": (
        "message",
        lambda n: _row(_select(options=_options(25), min_values=n, max_values=25)),
        25,
    ),
    "select.max_values": (
        "message",
        lambda n: _row(_select(options=_options(25), max_values=n)),
        25,
    ),
    "option.label": ("message", lambda n: _row(_select(options=_options(1, label="l" * n))), 100),
    "option.value": (
        "message",
        lambda n: _row(_select(options=[{"label": "L", "value": "v" * n}])),
        100,
    ),
    "option.description": (
        "message",
        lambda n: _row(_select(options=_options(1, description="d" * n))),
        100,
    ),
    "modal.custom_id": ("modal", lambda n: _modal(_labelled(), custom_id="m" * n), 100),
    "modal.title": ("modal", lambda n: _modal(_labelled(), title="t" * n), 45),
    "modal.components": (
        "modal",
        lambda n: _modal(*[_labelled(_text_input(custom_id=f"t{i}")) for i in range(n)]),
        5,
    ),
    "label.label": ("modal", lambda n: _modal(_labelled(label="l" * n)), 45),
    "label.description": ("modal", lambda n: _modal(_labelled(description="d" * n)), 100),
    "text_input.label": (
        "modal",
        lambda n: _modal({"type": 1, "components": [_text_input(label="l" * n)]}),
        45,
    ),
    "text_input.min_length": (
        "modal",
        lambda n: _modal(_labelled(_text_input(min_length=n, max_length=4000))),
        4000,
    ),
    "text_input.max_length": (
        "modal",
        lambda n: _modal(_labelled(_text_input(max_length=n))),
        4000,
    ),
    "text_input.value": ("modal", lambda n: _modal(_labelled(_text_input(value="v" * n))), 4000),
    "text_input.placeholder": (
        "modal",
        lambda n: _modal(_labelled(_text_input(placeholder="p" * n))),
        100,
    ),
    "thread.name": ("thread", lambda n: {"name": "n" * n}, 100),
}
# Checked by the server itself (sizes of uploads) or as rules, not as a bound: tested below.
ELSEWHERE = {
    "files",
    "file.size",
    "request.size",
    "label.text_input.label",
    "label.select.disabled",
}


def _problems(what: str, payload: dict[str, Any]) -> list[Problem]:
    if what == "modal":
        return [p.under("data") for p in modal_problems(payload)]
    if what == "thread":
        return thread_problems(payload)
    return message_problems(payload)


def test_every_limit_in_the_table_has_a_source_and_a_test() -> None:
    assert set(CASES) | ELSEWHERE == set(LIMITS)
    for limit in LIMITS.values():
        assert limit.url.startswith("https://"), limit.name
        assert limit.error()["code"], limit.name
        assert limit.error()["message"], limit.name


@pytest.mark.parametrize("name", sorted(CASES))
def test_at_the_bound_accepted_one_past_refused_with_discords_answer(name: str) -> None:
    what, build, bound = CASES[name]
    limit = LIMITS[name]
    assert bound == limit.most  # the test follows the table, not a number of its own
    assert _problems(what, build(bound)) == []
    over = _problems(what, build(bound + 1))
    assert len(over) == 1, [str(p) for p in over]
    assert errors_tree(over) == limit.errors_tree(bound + 1)


def test_the_lower_bounds_and_the_required_fields() -> None:
    assert errors_tree(message_problems(_row(_button(custom_id="")))) == (
        LIMITS["custom_id"].errors_tree()
    )
    assert errors_tree(message_problems({"content": "x", "components": [{"type": 1}]})) == {
        "components": {"0": {"components": {"_errors": [REQUIRED]}}}
    }
    empty_row = {"content": "x", "components": [{"type": 1, "components": []}]}
    assert errors_tree(message_problems(empty_row)) == LIMITS["row.components"].errors_tree()
    assert errors_tree(modal_problems(_modal())) == nest(
        "components", [LIMITS["modal.components"].error()]
    )
    blank = _embed(fields=[{"name": "  ", "value": "v"}])
    assert errors_tree(message_problems(blank)) == nest("embeds.0.fields.0.name", [REQUIRED])
    no_title = _modal(_labelled(), title=None)
    assert errors_tree(modal_problems(no_title)) == nest("title", [REQUIRED])
    short = _modal(_labelled(_text_input(max_length=0)))
    assert errors_tree(modal_problems(short)) == nest(
        "components.0.component.max_length",
        [{"code": "NUMBER_TYPE_MIN", "message": "int value should be greater than or equal to 1."}],
    )


def test_the_rules_that_are_not_one_bound() -> None:
    # A text input in a Label carries no label of its own; null is what discord.py sends.
    assert modal_problems(_modal(_labelled(_text_input(label=None)))) == []
    refused = modal_problems(_modal(_labelled(_text_input(label="Reason"))))
    assert [p.path for p in refused] == ["components.0.component.label"]
    # A select in a modal cannot be disabled.
    refused = modal_problems(_modal(_labelled(_select(disabled=True))))
    assert [p.path for p in refused] == ["components.0.component.disabled"]
    # A pre-filled value longer than the input's own max_length.
    long_value = _modal(_labelled(_text_input(max_length=10, value="v" * 11)))
    assert errors_tree(modal_problems(long_value)) == nest(
        "components.0.component.value",
        [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 10 or fewer in length."}],
    )
    twice = _row(_button(custom_id="same"), _button(custom_id="same"))
    assert errors_tree(message_problems(twice)) == nest(
        "components.0.components.1.custom_id",
        [
            {
                "code": "COMPONENT_CUSTOM_ID_DUPLICATED",
                "message": "Component custom id cannot be duplicated",
            }
        ],
    )
    same_value = _row(_select(options=[{"label": "A", "value": "a"}, {"label": "B", "value": "a"}]))
    assert [p.code for p in message_problems(same_value)] == [
        "SELECT_COMPONENT_OPTION_VALUE_DUPLICATED"
    ]
    both = _message(allowed_mentions={"parse": ["users"], "users": ["1"]})
    assert errors_tree(message_problems(both)) == nest(
        "allowed_mentions",
        [
            {
                "code": "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                "message": 'parse:["users"] and users: [ids...] are mutually exclusive.',
            }
        ],
    )
    assert [p.code for p in message_problems(_message(nonce=1.5))] == ["NONCE_TYPE_INVALID_TYPE"]
    v2_with_content = {"flags": 1 << 15, "content": "x", "components": []}
    assert [p.path for p in message_problems(v2_with_content)] == ["flags"]


def test_labels_leave_a_modal_at_five_inputs() -> None:
    five = _modal(*[_labelled(_text_input(custom_id=f"t{i}")) for i in range(5)])
    assert modal_problems(five) == []
    six = _modal(*[_labelled(_text_input(custom_id=f"t{i}")) for i in range(6)])
    assert [p.path for p in modal_problems(six)] == ["components"]


# -- the stand-in answers what Discord answers, to the real discord.py client -------------

TOKEN = "test-discord-token"
CHANNEL = "1300000000000000001"


async def test_the_stand_in_refuses_over_limit_requests_from_discord_py_as_discord_does() -> None:
    async with discord_api(token=TOKEN, channels=[CHANNEL]) as api:
        base = discord.http.Route.BASE
        discord.http.Route.BASE = api.url
        bot = discord.Client(intents=discord.Intents.none())
        try:
            await bot.login(TOKEN)
            channel = bot.get_partial_messageable(int(CHANNEL), type=discord.ChannelType.text)
            with pytest.raises(discord.HTTPException) as refused:
                await channel.send(embed=discord.Embed(title="t" * 257))
            assert (refused.value.status, refused.value.code) == (400, 50035)
            assert (
                refused.value.text
                == "Invalid Form Body\nIn embeds.0.title: Must be 256 or fewer in length."
            )
            answer = api.of("POST /channels/{channel_id}/messages")[-1].response
            assert answer == {
                "message": "Invalid Form Body",
                "code": 50035,
                "errors": LIMITS["embed.title"].errors_tree(),
            }
            with pytest.raises(discord.HTTPException) as too_long:
                await channel.send("x", nonce="n" * 26)
            assert too_long.value.text.endswith("In nonce: Must be 25 or fewer characters long.")
            files = [discord.File(io.BytesIO(b"x"), filename=f"f{i}.txt") for i in range(11)]
            with pytest.raises(discord.HTTPException) as many:
                await channel.send("x", files=files)
            assert many.value.code == 50035
            assert api.messages[CHANNEL] == []  # nothing refused was stored
            sent = await channel.send(embed=discord.Embed(title="t" * 256), nonce="n" * 25)
            assert api.message(CHANNEL, sent.id) is not None
        finally:
            await bot.close()
            discord.http.Route.BASE = base


# -- whatever is cut ends with an ellipsis and offers the rest ------------------------------

LONG = "word " * 1200  # 6000 characters
NOW = datetime(2026, 12, 1, tzinfo=UTC)
ONE_CUT: dict[str, dict[str, Any]] = {
    "title": {"title": LONG[:300]},
    "question": {"question": LONG[:3000]},
    "summary": {"summary": LONG},
    "rationale": {"rationale": LONG},
    "rule": {"rule": LONG[:300]},
    "why": {"why": [LONG[:500]]},
    "flags": {"flags": ["f" * 64] * 50},
    "evidence label": {"evidence": [Link(LONG[:200] + "*" * 100, "https://e.x/1")]},
    "excerpt": {"evidence": [Link("Receipt", "https://e.x/1", LONG[:500])]},
    "long url": {"evidence": [Link("Receipt", "https://e.x/" + "u" * 600)]},
    "many links": {"policy_refs": [Link(f"P{n}", f"https://e.x/{n}") for n in range(20)]},
    "history line": {"history": [LONG[:2000]]},
    "much history": {"history": [f"step {n}" for n in range(20)]},
    "fact value": {"facts": [Fact("amount", LONG[:2000])]},
    "many facts": {"facts": [Fact(f"f{n}", "v") for n in range(40)]},
    "reasoning": {
        "status": "rejected",
        "outcome": Outcome("reject", "human", "discord:1", "other", LONG[:4000], NOW),
    },
    "waiting question": {"status": "info_requested", "info_question": LONG[:4000]},
}


@pytest.mark.parametrize("what", sorted(ONE_CUT))
def test_every_cut_ends_with_an_ellipsis_and_offers_full_context(what: str) -> None:
    card = _card(**ONE_CUT[what])
    assert not render_card(_card()).cut  # the card alone cuts nothing
    rendered = render_card(card)
    assert rendered.cut
    message = message_of(card)
    assert check_message(message) == []
    ids = [c["custom_id"] for row in message["components"] for c in row["components"]]
    assert f"signoff:full_context:{card.case_id}" in ids
    shown = json.dumps(message["embeds"], ensure_ascii=False)
    assert "…" in shown or "in the full context" in shown
    whole = full_context(card)
    for text in strings(ONE_CUT[what]):
        assert text in whole  # the rest is in the file


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if len(value) > 64 else []
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in strings(v)]
    if isinstance(value, (Link, Fact)):
        return [s for v in vars(value).values() for s in strings(v)]
    if isinstance(value, Outcome):
        return strings(value.reason)
    return []


def test_a_card_with_every_part_at_its_longest_fits_6000_characters() -> None:
    everything: dict[str, Any] = {}
    for changes in ONE_CUT.values():
        everything |= changes
    everything["evidence"] = [Link(LONG[:200], "https://e.x/" + "u" * 500, LONG[:500])] * 50
    everything["policy_refs"] = [Link(LONG[:200], "https://e.x/" + "u" * 500)] * 20
    everything["history"] = [LONG[:2000]] * 100
    everything["facts"] = [Fact(LONG[:100], LONG[:2000])] * 500
    rendered = render_card(_card(**everything))
    assert len(rendered.embed) <= 6000
    assert check_message(message_of(_card(**everything))) == []
    assert rendered.cut


def test_past_25_reason_codes_the_modal_lists_them_all_above_the_typed_code() -> None:
    codes = [f"code_{n:02d}_" + "x" * 56 for n in range(50)]  # the most a policy allows
    modal = decision_modal(_card(reason_codes=codes), "reject").to_dict()
    assert check_modal(modal) == []
    shown = modal["components"][0]
    assert shown["type"] == 10
    assert all(md(code) in shown["content"] for code in codes)  # 50 of 64 fit in 4000
    few = decision_modal(_card(reason_codes=[f"c{n}" for n in range(26)]), "reject").to_dict()
    assert few["components"][0]["type"] == 10
    assert all(f"c{n}" in few["components"][0]["content"] for n in range(26))
    assert [c["type"] for c in few["components"]] == [10, 18, 18]
