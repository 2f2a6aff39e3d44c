"""Block Kit built from any workflow text fits Slack's limits, checked by the test
server's own (hand-written) checker, and mrkdwn escaping is exact."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.slack.adapter import mention
from adapters.slack.blocks import (
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
from tests.blockkit import check_message, check_view

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
    meta = metadata(card.case_id, "approve", "C1", "1.2")
    for view in (
        decision_modal(card, "approve", meta),
        decision_modal(card, "reject", meta),
        info_modal(card, meta),
        full_context_modal(card),
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
