"""Block Kit built from any workflow text fits Slack's limits, checked by the test
server's own (hand-written) checker, and mrkdwn escaping is exact."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.adapter import mention
from adapters.slack.blocks import (
    CARD_TEXT,
    decision_modal,
    escape,
    fit,
    full_context_modal,
    info_modal,
    link,
    metadata,
    render_card,
)
from bot.protocols import CardView, Fact, Link, Outcome
from tests.blockkit import (
    Verdict,
    block_text,
    check_message,
    check_view,
    message_verdict,
    view_verdict,
)
from tests.slack_api import SlackApi, slack_api
from tests.slack_limits import LIMITS, TOO_MUCH_TEXT, VIEW_ERROR

NASTY = st.sampled_from(["<!channel>", "&", "<", ">", "&amp;", "|", "*", "`", "\n", "é", "🚨"])
TEXT = st.lists(st.one_of(st.text(max_size=40), NASTY), max_size=40).map("".join)
LONG = st.one_of(TEXT, st.integers(0, 120_000).map(lambda n: ("a&<" * (n // 3 + 1))[:n]))
URL = st.one_of(st.none(), st.just("https://example.com/a|b>c"), st.just("javascript:alert(1)"))


@st.composite
def cards(draw: st.DrawFn) -> CardView:
    decided = draw(st.booleans())
    at = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    outcome = (
        Outcome("reject", "human", "slack:U0ALICE", "other", draw(LONG), at) if decided else None
    )
    return CardView(
        case_id="01case",
        lane=draw(st.sampled_from(["review", "expert", "stop_the_line", "custom_lane"])),
        kind=draw(TEXT) or "kind",
        status="rejected" if decided else "pending",
        title=draw(LONG) or "t",
        question=draw(LONG) or "q",
        summary=draw(LONG),
        recommended_action=draw(TEXT) or "approve",
        confidence=draw(st.floats(0, 1)),
        rationale=draw(LONG),
        runner_up=draw(st.one_of(st.none(), TEXT)),
        runner_up_confidence=draw(st.one_of(st.none(), st.floats(0, 1))),
        hide_recommendation=draw(st.booleans()),
        rule=draw(TEXT) or "rule 1",
        flags=draw(st.lists(TEXT, max_size=50)),
        facts=[
            Fact(draw(TEXT) or "k", draw(LONG))
            for _ in range(draw(st.integers(0, 500)) if draw(st.booleans()) else 3)
        ],
        evidence=[
            Link(draw(TEXT) or "l", draw(URL), draw(TEXT)) for _ in range(draw(st.integers(0, 50)))
        ],
        policy_refs=[Link(draw(TEXT) or "p", draw(URL)) for _ in range(draw(st.integers(0, 20)))],
        history=draw(st.lists(LONG, max_size=100)),
        due_at=None if decided else at,
        actions=[] if decided else ["approve", "reject", "request_info"],
        reason_codes=["policy_match", "other"],
        needs_ack=draw(st.booleans()),
        outcome=outcome,
        info_question=draw(st.one_of(st.none(), LONG)),
        why=draw(st.lists(TEXT, max_size=5)),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cards())
def test_any_card_and_its_modals_fit_block_kit(card: CardView) -> None:
    rendered = render_card(card)
    assert check_message({"channel": "C1", "text": rendered.text, "blocks": rendered.blocks}) == []
    assert block_text(rendered.blocks) <= CARD_TEXT
    buttons = [
        e["action_id"] for b in rendered.blocks if b["type"] == "actions" for e in b["elements"]
    ]
    assert ("signoff_full_context" in buttons) == rendered.cut
    meta = metadata(card.case_id, "approve", "C1", "1.2")
    first = full_context_modal(card)
    pages = int(first["title"]["text"].rpartition("/")[2]) if "/" in first["title"]["text"] else 1
    for view in (
        decision_modal(card, "approve", meta),
        decision_modal(card, "reject", meta),
        info_modal(card, meta),
        first,
        full_context_modal(card, pages - 1),
        full_context_modal(card, pages // 2),
    ):
        assert check_view(view) == []


def test_escape_makes_every_mention_and_link_inert() -> None:
    assert escape("<!channel> & <@U1> <http://x|y>") == (
        "&lt;!channel&gt; &amp; &lt;@U1&gt; &lt;http://x|y&gt;"
    )


@given(TEXT, st.integers(1, 500))
def test_fit_never_exceeds_its_limit_nor_splits_an_entity(text: str, limit: int) -> None:
    shown, cut = fit(text, max(limit, 2))
    assert len(shown) <= max(limit, 2)
    assert cut == (len(escape(text)) > max(limit, 2))
    body = shown.removesuffix("…") if cut else shown
    assert body == escape(text[: len(body)]) or escape(text).startswith(body)
    tail = body[body.rfind("&") :] if "&" in body else ""
    assert not tail or tail.startswith(("&amp;", "&lt;", "&gt;"))


def test_links_only_for_http_urls_and_labels_cannot_break_out() -> None:
    assert link(Link("<b>|x", "https://a.example/p?q=1|2>3")) == (
        "<https://a.example/p?q=1%7C2&gt;3|&lt;b&gt;|x>"
    )
    assert link(Link("run me", "javascript:alert(1)")) == "run me (javascript:alert(1))"
    assert link(Link("plain", None)) == "plain"


def test_deliberate_mentions() -> None:
    assert mention("S0ONCALL") == "<!subteam^S0ONCALL>"
    assert mention("U0ALICE") == "<@U0ALICE>"
    assert mention("@here") == "<!here>"
    assert mention("<!channel>") == "&lt;!channel&gt;"
    assert mention("#C0EXPERT") == "<#C0EXPERT>"
    assert mention("#C0|x>") == "#C0|x&gt;"


def test_the_due_time_is_relative_in_each_readers_zone_and_says_at_risk_or_overdue() -> None:
    at = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    base = {
        "case_id": "01c",
        "lane": "review",
        "kind": "k",
        "status": "pending",
        "title": "t",
        "question": "q",
        "summary": "",
        "recommended_action": "approve",
        "confidence": 0.8,
        "rationale": "",
        "runner_up": None,
        "runner_up_confidence": None,
        "hide_recommendation": False,
        "rule": "rule 1",
        "flags": [],
        "facts": [],
        "evidence": [],
        "policy_refs": [],
        "history": [],
        "due_at": at,
        "actions": ["approve", "reject"],
        "reason_codes": ["other"],
    }
    shown = {
        state: json.dumps(render_card(CardView(**base, sla_state=state)).blocks, ensure_ascii=False)
        for state in ("on_time", "at_risk", "overdue")
    }
    assert (
        "<!date^1796040000^{date_short_pretty} at {time} ({ago})|2026-11-30 12:00 UTC>"
        in (shown["on_time"])
    )
    assert "At risk" not in shown["on_time"]
    assert "Overdue" not in shown["on_time"]
    assert "⚠️ *At risk*" in shown["at_risk"]
    assert "🔴 *Overdue*" in shown["overdue"]


# -- every sourced limit, at its bound and one past it ---------------------------------

Payload = tuple[str, dict[str, Any]]  # ("message", chat.postMessage params) or ("view", view)


def _text(n: int, kind: str = "plain_text") -> dict[str, Any]:
    return {"type": kind, "text": "x" * n}


def _message(*blocks: dict[str, Any]) -> Payload:
    return "message", {"channel": "C1", "text": "t", "blocks": list(blocks)}


def _modal(*blocks: dict[str, Any], **fields: Any) -> Payload:
    view = {"type": "modal", "title": _text(5), "submit": _text(2), "blocks": list(blocks)}
    return "view", view | fields


def _section(n: int = 1, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": _text(n, "mrkdwn"), **extra}


def _button(i: int = 0, **extra: Any) -> dict[str, Any]:
    return {"type": "button", "action_id": f"b{i}", "text": _text(2), **extra}


def _option(i: int = 0, kind: str = "plain_text", **extra: Any) -> dict[str, Any]:
    return {"text": _text(1, kind), "value": f"v{i}", **extra}


def _actions(*elements: dict[str, Any]) -> dict[str, Any]:
    return {"type": "actions", "elements": list(elements)}


def _select(**extra: Any) -> dict[str, Any]:
    return {"type": "static_select", "action_id": "s", "options": [_option()], **extra}


def _input(label: int = 5, **element: Any) -> dict[str, Any]:
    field = {"type": "plain_text_input", "action_id": "t"} | element
    return {"type": "input", "label": _text(label), "element": field}


def _confirm(**sizes: int) -> dict[str, Any]:
    parts = {"title": 5, "text": 5, "confirm": 3, "deny": 2} | sizes
    return {
        name: _text(n, "mrkdwn" if name == "text" else "plain_text") for name, n in parts.items()
    }


def _image(**extra: Any) -> dict[str, Any]:
    return {"type": "image", "image_url": "https://example.com/i.png", "alt_text": "a"} | extra


def _url(n: int) -> str:
    return ("https://example.com/" + "p" * n)[:n]


def _texts(n: int) -> list[dict[str, Any]]:
    return [_section(min(3000, n - i)) for i in range(0, n, 3000)]


BUILDERS: dict[str, Callable[[int], Payload]] = {
    "message.blocks.items": lambda n: _message(*[{"type": "divider"}] * n),
    "modal.blocks.items": lambda n: _modal(*[{"type": "divider"}] * n),
    "message.text": lambda n: ("message", {"channel": "C1", "text": "x" * n}),
    "message.blocks_text": lambda n: _message(*_texts(n)),
    "block.block_id": lambda n: _message(_section(block_id="b" * n)),
    "section.text": lambda n: _message(_section(n)),
    "section.fields.items": lambda n: _message(
        {"type": "section", "text": _text(1), "fields": [_text(1)] * n}
    ),
    "section.fields": lambda n: _message({"type": "section", "fields": [_text(n, "mrkdwn")]}),
    "header.text": lambda n: _message({"type": "header", "text": _text(n)}),
    "context.elements.items": lambda n: _message(
        {"type": "context", "elements": [_text(1, "mrkdwn")] * n}
    ),
    "context.elements": lambda n: _message({"type": "context", "elements": [_text(n, "mrkdwn")]}),
    "actions.elements.items": lambda n: _message(_actions(*[_button(i) for i in range(n)])),
    "input.label": lambda n: _modal(_input(label=n)),
    "input.hint": lambda n: _modal(_input() | {"hint": _text(n)}),
    "image.alt_text": lambda n: _message(_image(alt_text="a" * n)),
    "image.image_url": lambda n: _message(_image(image_url=_url(n))),
    "image.title": lambda n: _message(_image(title=_text(n))),
    "markdown.text": lambda n: _message({"type": "markdown", "text": "x" * n}),
    "element.action_id": lambda n: _message(_actions(_button() | {"action_id": "a" * n})),
    "element.placeholder": lambda n: _message(_actions(_select(placeholder=_text(n)))),
    "button.text": lambda n: _message(_actions(_button(text=_text(n)))),
    "button.value": lambda n: _message(_actions(_button(value="v" * n))),
    "button.url": lambda n: _message(_actions(_button(url=_url(n)))),
    "button.accessibility_label": lambda n: _message(
        _actions(_button(accessibility_label="l" * n))
    ),
    "static_select.options.items": lambda n: _message(
        _actions(_select(options=[_option(i) for i in range(n)]))
    ),
    "static_select.option_groups.items": lambda n: _message(
        _actions(
            {
                "type": "static_select",
                "action_id": "s",
                "option_groups": [{"label": _text(1), "options": [_option(i)]} for i in range(n)],
            }
        )
    ),
    "option_group.label": lambda n: _message(
        _actions(
            {
                "type": "static_select",
                "action_id": "s",
                "option_groups": [{"label": _text(n), "options": [_option()]}],
            }
        )
    ),
    "option_group.options.items": lambda n: _message(
        _actions(
            {
                "type": "static_select",
                "action_id": "s",
                "option_groups": [{"label": _text(1), "options": [_option(i) for i in range(n)]}],
            }
        )
    ),
    "overflow.options.items": lambda n: _message(
        _actions({"type": "overflow", "action_id": "o", "options": [_option(i) for i in range(n)]})
    ),
    "radio_buttons.options.items": lambda n: _message(
        _actions(
            {
                "type": "radio_buttons",
                "action_id": "r",
                "options": [_option(i, "mrkdwn") for i in range(n)],
            }
        )
    ),
    "checkboxes.options.items": lambda n: _message(
        _actions(
            {
                "type": "checkboxes",
                "action_id": "c",
                "options": [_option(i, "mrkdwn") for i in range(n)],
            }
        )
    ),
    "option.text": lambda n: _message(_actions(_select(options=[_option() | {"text": _text(n)}]))),
    "option.value": lambda n: _message(_actions(_select(options=[_option() | {"value": "v" * n}]))),
    "option.description": lambda n: _message(
        _actions(_select(options=[_option(description=_text(n))]))
    ),
    "option.url": lambda n: _message(
        _actions(
            {
                "type": "overflow",
                "action_id": "o",
                "options": [_option(0, url=_url(n)), _option(1)],
            }
        )
    ),
    "confirm.title": lambda n: _message(_actions(_button(confirm=_confirm(title=n)))),
    "confirm.text": lambda n: _message(_actions(_button(confirm=_confirm(text=n)))),
    "confirm.confirm": lambda n: _message(_actions(_button(confirm=_confirm(confirm=n)))),
    "confirm.deny": lambda n: _message(_actions(_button(confirm=_confirm(deny=n)))),
    "plain_text_input.max_length": lambda n: _modal(_input(max_length=n)),
    "plain_text_input.min_length": lambda n: _modal(_input(min_length=n)),
    "plain_text_input.initial_value": lambda n: _modal(
        _input(max_length=3000, initial_value="i" * n)
    ),
    "modal.title": lambda n: _modal(title=_text(n)),
    "modal.submit": lambda n: _modal(submit=_text(n)),
    "modal.close": lambda n: _modal(close=_text(n)),
    "view.private_metadata": lambda n: _modal(private_metadata="m" * n),
    "view.callback_id": lambda n: _modal(callback_id="c" * n),
    "view.external_id": lambda n: _modal(external_id="e" * n),
}


def verdict_of(payload: Payload) -> Verdict:
    kind, body = payload
    return message_verdict(body) if kind == "message" else view_verdict(body)


def test_every_limit_is_sourced_and_tested() -> None:
    assert set(BUILDERS) == set(LIMITS)
    for limit in LIMITS.values():
        assert limit.url.startswith("https://"), limit
        assert limit.error, limit


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_each_limit_is_accepted_at_its_bound_and_refused_past_it(name: str) -> None:
    limit = LIMITS[name]
    build = BUILDERS[name]
    assert verdict_of(build(limit.most)) == Verdict(None, [], [])
    over = verdict_of(build(limit.most + 1))
    if name == "message.text":  # Slack posts it cut, with a warning: see test_slack_api
        assert over.error is None
        assert check_message(build(limit.most + 1)[1]) == [
            f"text: must be at most {limit.most} characters, got {limit.most + 1}"
        ]
        return
    kind, _ = build(0)
    assert over.error == (VIEW_ERROR if kind == "view" else limit.error), over
    assert len(over.errors) == 1, over.errors
    if limit.error != TOO_MUCH_TEXT:  # Slack names each problem with a JSON pointer
        assert over.messages[0].startswith("[ERROR] ")
        assert "[json-pointer:/" in over.messages[0]
    if limit.least > 0 and not name.startswith("message.") and name != "markdown.text":
        under = verdict_of(build(limit.least - 1))
        assert under.error is not None, f"{name}: {limit.least - 1} should be refused"


def test_the_reason_modal_bug_is_caught_with_slacks_own_words() -> None:
    verdict = view_verdict(_modal(_input(max_length=4000))[1])
    assert verdict.error == "invalid_arguments"
    assert verdict.messages == [
        "[ERROR] must be between 1 and 3000 [json-pointer:/view/blocks/0/element/max_length]"
    ]
    too_long = view_verdict(_modal(_input(max_length=10, initial_value="x" * 11))[1])
    assert too_long.errors == [
        "view.blocks[0].element.initial_value: must be at most 10 characters (max_length), got 11"
    ]
    upside_down = view_verdict(_modal(_input(max_length=10, min_length=11))[1])
    assert upside_down.errors == [
        "view.blocks[0].element.min_length: must not be above max_length (10), got 11"
    ]


def test_a_message_with_too_much_text_altogether_gets_msg_blocks_too_long() -> None:
    verdict = message_verdict(_message(*_texts(12_001))[1])
    assert verdict == Verdict(
        "msg_blocks_too_long", ["blocks: hold 12001 characters of text together, at most 12000"], []
    )
    assert block_text(_message(*_texts(12_000))[1]["blocks"]) == 12_000


def test_the_decision_and_info_modals_ask_for_at_most_what_slack_allows() -> None:
    card = _card()
    meta = metadata(card.case_id, "reject", "C1", "1.2")
    for view in (decision_modal(card, "reject", meta), info_modal(card, meta)):
        inputs = [b["element"] for b in view["blocks"] if b["type"] == "input"]
        texts = [e for e in inputs if e["type"] == "plain_text_input"]
        assert [e["max_length"] for e in texts] == [LIMITS["plain_text_input.max_length"].most]
        assert view_verdict(view).error is None


def _card() -> CardView:
    return CardView(
        case_id="01case",
        lane="review",
        kind="refund",
        status="pending",
        title="t",
        question="q",
        summary="",
        recommended_action="approve",
        confidence=0.8,
        rationale="",
        runner_up=None,
        runner_up_confidence=None,
        hide_recommendation=False,
        rule="rule 1",
        flags=[],
        facts=[],
        evidence=[],
        policy_refs=[],
        history=[],
        due_at=None,
        actions=["approve", "reject", "request_info"],
        reason_codes=["policy_match", "other"],
    )


# -- the Slack-compatible server answers as Slack does ---------------------------------


@pytest.fixture
async def server() -> AsyncIterator[tuple[SlackApi, AsyncWebClient]]:
    async with slack_api() as api:
        yield api, AsyncWebClient(token="xoxb-test", base_url=api.url, retry_handlers=[])


async def test_the_server_refuses_over_limit_blocks_with_slacks_answer(
    server: tuple[SlackApi, AsyncWebClient],
) -> None:
    api, client = server
    with pytest.raises(SlackApiError) as refused:
        await client.chat_postMessage(channel="C1", text="t", blocks=[_section(3001)])
    answer = refused.value.response
    assert answer["error"] == "invalid_blocks"
    assert answer["response_metadata"]["messages"] == [
        "[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]"
    ]
    with pytest.raises(SlackApiError) as too_much:
        await client.chat_postMessage(channel="C1", text="t", blocks=_texts(12_001))
    assert too_much.value.response["error"] == "msg_blocks_too_long"
    ok = await client.chat_postMessage(channel="C1", text="t", blocks=_texts(12_000))
    with pytest.raises(SlackApiError) as update:
        await client.chat_update(channel="C1", ts=ok["ts"], text="t", blocks=_texts(12_001))
    assert update.value.response["error"] == "msg_blocks_too_long"
    assert api.message("C1", ok["ts"]).edits == 0  # type: ignore[union-attr]
    assert len(api.messages["C1"]) == 1


async def test_the_server_refuses_a_view_with_invalid_arguments_on_open_update_and_push(
    server: tuple[SlackApi, AsyncWebClient],
) -> None:
    api, client = server
    bad = _modal(_input(max_length=4000))[1]
    expected = [
        "[ERROR] must be between 1 and 3000 [json-pointer:/view/blocks/0/element/max_length]"
    ]
    for call in (
        client.views_open(trigger_id="1.2", view=bad),
        client.views_push(trigger_id="1.2", view=bad),
    ):
        with pytest.raises(SlackApiError) as refused:
            await call
        assert refused.value.response["error"] == "invalid_arguments"
        assert refused.value.response["response_metadata"]["messages"] == expected
    good = _modal(_input(max_length=3000))[1]
    opened = await client.views_open(trigger_id="1.2", view=good)
    with pytest.raises(SlackApiError) as update:
        await client.views_update(view_id=opened["view"]["id"], view=bad)
    assert update.value.response["error"] == "invalid_arguments"
    assert api.views[opened["view"]["id"]]["blocks"] == good["blocks"]


async def test_a_text_past_40000_is_posted_cut_with_slacks_warning_and_recorded(
    server: tuple[SlackApi, AsyncWebClient],
) -> None:
    api, client = server
    whole = await client.chat_postMessage(channel="C1", text="x" * 40_000)
    assert "warning" not in whole.data  # type: ignore[operator]
    assert api.violations == []
    posted = await client.chat_postMessage(channel="C1", text="x" * 40_001)
    assert posted["warning"] == "message_truncated"
    assert posted["response_metadata"]["warnings"] == ["message_truncated"]
    assert api.message("C1", posted["ts"]).text == "x" * 40_000  # type: ignore[union-attr]
    assert api.violations == ["chat.postMessage: text: 40001 characters, cut by Slack to 40000"]


def test_the_table_holds_the_numbers_the_issue_names() -> None:
    """A guard on the table itself: the per-limit test reads its numbers from it."""
    expected = {
        "section.text": 3000,
        "section.fields.items": 10,
        "section.fields": 2000,
        "header.text": 150,
        "button.text": 75,
        "button.value": 2000,
        "element.action_id": 255,
        "block.block_id": 255,
        "context.elements.items": 10,
        "message.blocks.items": 50,
        "modal.blocks.items": 100,
        "modal.title": 24,
        "modal.submit": 24,
        "modal.close": 24,
        "view.private_metadata": 3000,
        "view.callback_id": 255,
        "plain_text_input.max_length": 3000,
        "static_select.options.items": 100,
        "option.text": 75,
        "message.text": 40_000,
        "input.label": 2000,
        "input.hint": 2000,
        "element.placeholder": 150,
    }
    assert {name: LIMITS[name].most for name in expected} == expected
