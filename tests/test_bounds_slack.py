"""Cases at every documented bound of the case body (`bot/schemas.py`), through the real
Signoff and the real slack_sdk against the Slack-compatible server, which holds every
payload to Slack's sourced limits (`tests/slack_limits.py`): the card, each update
(info requested and answered, the decision, the expiry, the escalation), the reason,
request-info and full-context modals, and the thread replies must all be accepted.

A body holds at most 256 KB, so no one case reaches every bound at once: each case
reaches a group of them (the longest texts; the most facts; the most links with the
longest URLs; emoji and combining characters everywhere), with text that escapes badly
(`&`, `<`, `>`, mentions, links, mrkdwn marks)."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from adapters.slack.blocks import CARD_TEXT, REASON_MAX
from adapters.text import ELLIPSIS
from bot.clock import FrozenClock
from bot.runtime import Runtime
from bot.schemas import MAX_BODY_BYTES
from bot.service import MAX_REASON
from tests.blockkit import block_text, check_message, check_view
from tests.conftest import case
from tests.slack_api import Message
from tests.slack_harness import SlackWorld, fixture, slack_world

NASTY = "<!channel> & <@U0ALICE> <https://evil.example|click> *b* _i_ `c` ~s~ 🚨 é\u0301 👩‍👩‍👧 > "
ASCII = "a & <b> "


def long(n: int, pattern: str = NASTY) -> str:
    return (pattern * (n // len(pattern) + 1))[:n]


def url(n: int) -> str:
    return long(n, "https://example.com/a?b=1&c=2|d>e/")[:n]


def alternatives() -> list[dict[str, Any]]:
    first = {"action": long(100), "confidence": 0.18, "rationale": long(2000)}
    return [first] + [{"action": f"alt_{i}", "rationale": long(200)} for i in range(9)]


def texts_case() -> dict[str, Any]:
    """The longest title, question, summary, rationale, flags, history and names."""
    return case(
        title=long(300),
        question=long(3000),
        summary=long(99_980, ASCII) + "SUMMARY_END",
        recommendation={
            "action": "approve",
            "confidence": 0.82,
            "rationale": long(10_000),
            "alternatives": alternatives(),
        },
        flags=[f"flag_{i:02d}_" + "x" * 56 for i in range(50)],
        history=[{"text": long(2000), "actor": long(200)} for _ in range(20)]
        + [{"text": "HISTORY_END"}],
        requested_by="r" * 256,
        risk={"level": "high", "amount": 1e15, "currency": "EUR", "customer_tier": long(64)},
    )


def facts_case() -> dict[str, Any]:
    """The most facts (long keys, some long values) and the most policy links."""
    facts: dict[str, Any] = {
        f"fact_{i:03d}_" + long(91, ASCII): (long(2000) if i < 10 else long(200, ASCII))
        for i in range(499)
    }
    facts["fact_499_LAST"] = "FACTS_END"
    return case(
        facts=facts,
        policy_refs=[{"label": long(200), "url": url(2048)} for _ in range(20)],
    )


def links_case() -> dict[str, Any]:
    """The most evidence links, with the longest URLs and excerpts, and a full history."""
    evidence = [
        {"label": long(199) + str(i % 10), "url": url(2048), "excerpt": long(900)}
        for i in range(49)
    ]
    evidence.append({"label": "EVIDENCE_END", "url": "https://example.com/end"})
    return case(evidence=evidence, history=[{"text": long(300)} for _ in range(100)])


def everything_case() -> dict[str, Any]:
    """Every part of the card long enough to fill its share at once (the card's total
    budget is what keeps it within Slack's msg_blocks_too_long)."""
    return case(
        title=long(300),
        question=long(3000),
        summary=long(6000),
        recommendation={
            "action": "approve",
            "confidence": 0.82,
            "rationale": long(6000),
            "alternatives": alternatives(),
        },
        flags=[f"flag_{i:02d}_" + "x" * 56 for i in range(50)],
        facts={f"fact_{i:02d}_" + long(90, ASCII): long(600) for i in range(30)},
        evidence=[{"label": long(200), "url": url(300), "excerpt": long(600)} for _ in range(12)],
        policy_refs=[{"label": long(200), "url": url(300)} for _ in range(12)],
        history=[{"text": long(2000)} for _ in range(10)],
    )


def emoji_case(confidence: float = 0.82) -> dict[str, Any]:
    """Emoji and combining characters in every text, at the bounds."""
    marks = "🚨👩‍👩‍👧é\u0301ñ\u0303"
    return case(
        title=long(300, marks),
        question=long(3000, marks),
        summary=long(20_000, marks),
        facts={long(100, marks)[:98] + f"{i:02d}": long(1000, marks) for i in range(40)},
        **{
            "recommendation.confidence": confidence,
            "recommendation.rationale": long(10_000, marks),
        },
    )


@pytest.fixture
async def world(sqlite_url: str) -> AsyncIterator[tuple[SlackWorld, FrozenClock]]:
    clock = FrozenClock()
    # Pacing is not what this test is about, and with a frozen clock a row paced for
    # later would never come due: the bot and the stand-in both allow 50 a second.
    async with slack_world(sqlite_url, clock=clock, channel_rate=50.0, channel_burst=50) as found:
        found.slack.channel_rate, found.slack.channel_burst = 50.0, 50
        yield found, clock


def refused(world: SlackWorld) -> list[str]:
    """Every call the Slack stand-in did not accept, and every rule it saw broken."""
    bad = [
        f"{c.method}: {c.response}"
        for c in world.slack.calls
        if c.response is not None and not c.response.get("ok")
    ]
    return bad + world.slack.violations


def sections(message: Message) -> list[str]:
    return [
        b["text"]["text"] for b in message.blocks or [] if b["type"] == "section" and "text" in b
    ]


def assert_fits(message: Message) -> None:
    assert check_message({"text": message.text, "blocks": message.blocks}) == []
    assert block_text(message.blocks or []) <= CARD_TEXT


def buttons(view_or_blocks: Any) -> dict[str, dict[str, Any]]:
    blocks = (
        view_or_blocks.get("blocks", []) if isinstance(view_or_blocks, dict) else view_or_blocks
    )
    return {
        e["action_id"]: e for b in blocks or [] if b["type"] == "actions" for e in b["elements"]
    }


async def click_in_modal(world: SlackWorld, view_id: str, action_id: str, user: str) -> None:
    """A button clicked inside an open modal, as Slack sends it (`container.type: view`)."""
    view = world.slack.views[view_id]
    button = buttons(view)[action_id]
    payload = fixture("block_actions.json")
    payload.pop("message", None)
    payload.pop("channel", None)
    payload["container"] = {"type": "view", "view_id": view_id}
    payload["view"] = copy.deepcopy(view)
    payload["user"] = {"id": user, "username": user.lower()}
    payload["trigger_id"] = f"{time.time()}.trigger"
    payload["actions"] = [
        {
            "action_id": action_id,
            "block_id": "signoff_pages",
            "text": button["text"],
            "value": button["value"],
            "type": "button",
            "action_ts": f"{time.time():.6f}",
        }
    ]
    answer = await world.reviewers.send(payload)
    assert answer.status_code == 200, answer.text


async def outbox_settled(runtime: Runtime, seconds: float = 30.0) -> None:
    """Until no outbox row is waiting to be delivered or recorded."""
    deadline = time.monotonic() + seconds
    while True:
        async with runtime.engine.connect() as conn:
            waiting = (
                await conn.execute(text("SELECT count(*) FROM outbox WHERE status = 'pending'"))
            ).scalar_one()
        if waiting == 0:
            return
        assert time.monotonic() < deadline, f"{waiting} deliveries still pending"
        await asyncio.sleep(0.05)


async def read_full_context(world: SlackWorld, card: Message, user: str = "U0BOB") -> str:
    """Open the full context and turn every page; the text of all pages."""
    opened = len(world.slack.of("views.open"))
    await world.reviewers.click(card, "full_context", user)
    await world.slack.wait_for(lambda s: len(s.of("views.open")) > opened)
    view_id = world.slack.of("views.open")[-1].response["view"]["id"]  # type: ignore[index]
    seen = []
    updates = len(world.slack.of("views.update"))
    for turned in range(200):
        view = world.slack.views[view_id]
        assert check_view(view) == []
        seen.append(json.dumps(view["blocks"], ensure_ascii=False))
        if "signoff_page_next" not in buttons(view):
            break
        await click_in_modal(world, view_id, "signoff_page_next", user)
        await world.slack.wait_for(lambda s, n=turned: len(s.of("views.update")) > updates + n)
    else:
        raise AssertionError("the full context never ended")
    assert "GET /v1/escalations/" in seen[0]
    return "\n".join(seen)


async def ask_and_answer(world: SlackWorld, case_id: str, card: Message) -> None:
    """The request-info modal, the longest question Slack's form takes, the longest
    answer the API takes; the thread replies and the card's updates."""
    opened = len(world.slack.of("views.open"))
    await world.reviewers.click(card, "request_info", "U0CAROL")
    await world.slack.wait_for(lambda s: len(s.of("views.open")) > opened)
    view = world.reviewers.opened_view()
    assert view["callback_id"] == "signoff_info"
    too_long = await world.reviewers.submit(view, "U0CAROL", question=long(REASON_MAX + 1))
    assert too_long.json()["response_action"] == "errors"
    question = long(REASON_MAX)
    replies = len(world.slack.thread(card.channel, card.ts))
    asked = await world.reviewers.submit(view, "U0CAROL", question=question)
    assert asked.text == "", asked.text
    await world.slack.wait_for(lambda s: len(s.thread(card.channel, card.ts)) > replies)
    reply = world.slack.thread(card.channel, card.ts)[-1].text or ""
    assert reply.startswith("carol asks: ")
    assert reply.endswith(ELLIPSIS)
    await world.slack.wait_for(
        lambda s: "Waiting for the workflow" in json.dumps(s.message(card.channel, card.ts).blocks)
    )
    waiting = world.slack.message(card.channel, card.ts)
    assert waiting is not None
    assert_fits(waiting)
    answered = await world.api.post(f"/v1/escalations/{case_id}/info", {"text": long(10_000)})
    assert answered.status_code == 200, answered.text
    await world.slack.wait_for(lambda s: len(s.thread(card.channel, card.ts)) > replies + 1)
    answer = world.slack.thread(card.channel, card.ts)[-1].text or ""
    assert answer.startswith("The workflow answered: ")
    assert answer.endswith(ELLIPSIS)
    await world.slack.wait_for(
        lambda s: (
            "Waiting for the workflow" not in json.dumps(s.message(card.channel, card.ts).blocks)
        )
    )


async def decide(world: SlackWorld, card: Message) -> None:
    """Reject against the AI with the longest reasoning Slack's form takes."""
    clicks = len(world.slack.of("views.open"))
    await world.reviewers.click(card, "reject", "U0CAROL")
    await world.slack.wait_for(lambda s: len(s.of("views.open")) > clicks)
    view = world.reviewers.opened_view()
    reason = next(b for b in view["blocks"] if b.get("block_id") == "reason")
    assert reason["element"]["max_length"] == REASON_MAX <= MAX_REASON
    over = await world.reviewers.submit(
        view, "U0CAROL", code="policy_violation", reason=long(REASON_MAX + 1)
    )
    assert over.json() == {
        "response_action": "errors",
        "errors": {"reason": f"Keep the reasoning under {REASON_MAX} characters."},
    }
    edits = world.slack.message(card.channel, card.ts).edits  # type: ignore[union-attr]
    done = await world.reviewers.submit(
        view, "U0CAROL", code="policy_violation", reason=long(REASON_MAX)
    )
    assert done.text == "", done.text
    await world.slack.wait_for(lambda s: s.message(card.channel, card.ts).edits > edits)
    await world.slack.wait_for(
        lambda s: "Rejected" in json.dumps(s.message(card.channel, card.ts).blocks)
    )
    decided = world.slack.message(card.channel, card.ts)
    assert decided is not None
    assert_fits(decided)
    again = await world.reviewers.submit(
        view, "U0CAROL", code="policy_violation", reason=long(REASON_MAX)
    )
    answer = again.json()  # the modal says why not, in a view Slack must accept too
    assert answer["response_action"] == "update"
    assert check_view(answer["view"]) == []
    assert not buttons(decided.blocks).keys() - {"signoff_full_context"}


async def test_every_bound_of_the_case_body_reaches_slack_whole(
    world: tuple[SlackWorld, FrozenClock],
) -> None:
    slack, clock = world
    bodies = {
        "texts": texts_case(),
        "facts": facts_case(),
        "links": links_case(),
        "emoji": emoji_case(),
        "everything": everything_case(),
    }
    for body in bodies.values():
        assert len(orjson.dumps(body)) <= MAX_BODY_BYTES
    ids = {name: (await slack.api.submit(body))["id"] for name, body in bodies.items()}
    # left to expire; a body of its own (the same signed request again would be a replay)
    waiting_body = texts_case() | {"requested_by": "someone.else@example.com"}
    waiting = (await slack.api.submit(waiting_body))["id"]
    assert waiting != ids["texts"]
    escalating = (await slack.api.submit(emoji_case(confidence=0.6)))["id"]
    cards = {name: await slack.card_for(case_id) for name, case_id in ids.items()}
    for card in cards.values():
        assert_fits(card)
        assert "signoff_full_context" in buttons(card.blocks)  # every one had to be cut

    texts = cards["texts"]
    header = texts.blocks[0]["text"]["text"]  # type: ignore[index]
    assert header.endswith(ELLIPSIS)
    question = next(t for t in sections(texts) if t.startswith("*Question:*"))
    assert question.endswith(ELLIPSIS)
    assert any(t.startswith("a &amp; &lt;b&gt;") and t.endswith(ELLIPSIS) for t in sections(texts))
    assert "&lt;!channel&gt;" in json.dumps(texts.blocks)
    assert not any("<!channel>" in t for t in sections(texts))  # plain_text never pings

    ends = {"texts": "HISTORY_END", "facts": "FACTS_END", "links": "EVIDENCE_END"}
    for name, end in ends.items():
        whole = await read_full_context(slack, cards[name])
        assert end in whole, f"{name}: the full context does not reach {end}"
    assert "SUMMARY_END" in await read_full_context(slack, cards["texts"])

    for name in ("texts", "emoji", "everything"):
        await ask_and_answer(slack, ids[name], cards[name])
        await decide(slack, cards[name])

    # every delivery so far recorded before the clock jumps past their leases (a fixed
    # sleep was not enough on a loaded machine)
    await outbox_settled(slack.runtime)
    clock.advance(24 * 3600)  # the waiting case expires; the expert case escalates
    await slack.runtime.sla.sweep()
    expired = await slack.card_for(waiting)
    await slack.slack.wait_for(
        lambda s: "Expired" in json.dumps(s.message(expired.channel, expired.ts).blocks)
    )
    await slack.slack.wait_for(lambda s: s.messages.get("C0ONCALL"))
    oncall = slack.slack.messages["C0ONCALL"][0]
    assert_fits(oncall)
    await slack.slack.wait_for(lambda s: s.thread("C0ONCALL", oncall.ts))
    assert slack.slack.thread("C0ONCALL", oncall.ts)[0].text.startswith("<!subteam^S0ONCALL>")  # type: ignore[union-attr]
    first = await slack.card_for(escalating)
    await slack.slack.wait_for(lambda s: s.thread(first.channel, first.ts))

    for messages in slack.slack.messages.values():
        for message in messages:
            assert check_message({"text": message.text, "blocks": message.blocks}) == []
    assert refused(slack) == []
