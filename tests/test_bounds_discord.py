"""Nothing a workflow may send makes Discord refuse a card, an update, a modal or a thread
reply: cases at every bound of the case body (bot/schemas.py), through the real Signoff
and the real discord.py client, against the test server that enforces Discord's sourced
limits (tests/discord_limits.py). What had to be cut ends with an ellipsis, and the card
offers "Full context", whose file holds the whole case."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.discord.embeds import decision_modal, full_context, info_modal, md, render_card
from bot.clock import FrozenClock
from bot.protocols import CardView, Fact, Link, Outcome
from bot.schemas import MAX_BODY_BYTES, CaseIn
from tests.conftest import case
from tests.discord_api import Callback, Message
from tests.discord_harness import CHANNELS, DISCORD_POLICY, ROLES, DiscordWorld, discord_world
from tests.discordkit import check_message, check_modal
from tests.test_discord import current, edited, field, told, verbs

ELLIPSIS = "…"
# Workflow text at its worst: markdown, mentions, a masked link, emoji (a ZWJ sequence and
# a flag), combining marks, right-to-left override, quotes and backslashes.
NASTY = (
    "*b* _i_ ~~s~~ `c` ||sp|| > q # h -# s [x](https://e.vil) @everyone @here "
    "<@&300000000000000001> <@400000000000000001> <#200000000000000001> :smile: "
    "👩🏽‍💻 🇪🇺 e\u0301 Z\u0338\u0321\u0322a\u0336l\u0334g\u0337o\u0335 \u202eevil\u202c "
    "\"' \\ \\* 日本語 "
)
REVIEWER = "400000000000000021"  # a reviewer with the longest username Discord allows
REVIEWER_NAME = "r" * 32
LONG_KIND = "k" * 64


def text(length: int, pattern: str = NASTY) -> str:
    """Exactly `length` code points of `pattern`, repeated."""
    return (pattern * (length // len(pattern) + 1))[:length]


def longest_text() -> dict[str, Any]:
    """The longest title, question, summary, rationale and names, all nasty."""
    return case(
        title=text(300),
        question=text(3000),
        summary=text(40_000) + "\n" + "x" * 59_999,
        recommendation={
            "action": "approve",
            "confidence": 0.8,
            "rationale": text(10_000),
            "alternatives": [
                {"action": text(100), "confidence": 0.1, "rationale": text(2000)} for _ in range(10)
            ],
        },
        flags=[f"flag.{n:02d}:" + "f" * 56 for n in range(50)],
        requested_by=text(256),
        risk={
            "level": "high",
            "amount": 1e15,
            "currency": "EUR",
            "reversible": True,
            "customer_tier": text(64),
            "compliance": ["c" * 64] * 20,
        },
    )


def most_facts() -> dict[str, Any]:
    """500 facts (the most) with the longest keys; as long values as fit in a body."""
    facts: dict[str, Any] = {f"{n:03d}" + text(97): text(150) for n in range(500)}
    return case(
        kind=LONG_KIND,
        title=text(300, "👩🏽‍💻e\u0301"),
        question="?" * 3000,
        facts=facts,
        metadata={f"m{n}" + "k" * 90: "v" * 100 for n in range(50)},
        idempotency_key="i" * 200,
    )


def most_links() -> dict[str, Any]:
    """50 evidence links (the most) with the longest URLs and labels, 20 policy links, and
    100 history entries (as long as fit in a body); in the expert lane, so it escalates."""
    url = "https://evidence.example.com/" + "p" * (2048 - 29)
    return case(
        **{"recommendation.confidence": 0.6},
        title="T" * 300,
        question=text(3000),
        evidence=[
            {"label": text(200), "url": f"{url[:-3]}{n:03d}", "excerpt": text(500)}
            for n in range(50)
        ],
        policy_refs=[{"label": text(200), "url": url[:1024]} for _ in range(20)],
        history=[
            {"text": text(200), "at": "2026-01-01T00:00:00Z", "actor": text(200)}
            for _ in range(100)
        ],
    )


def everything() -> dict[str, Any]:
    """Every part of the card past what the card shows, at once."""
    url = "https://docs.example.com/" + "q" * 400
    return case(
        title=text(300),
        question=text(3000),
        summary=text(3000),
        recommendation={"action": "approve", "confidence": 0.8, "rationale": text(2000)},
        flags=[f"flag{n:02d}" + "f" * 58 for n in range(50)],
        facts={f"{n:02d}" + text(98): text(300) for n in range(30)},
        evidence=[{"label": text(200), "url": url, "excerpt": text(500)} for _ in range(10)],
        policy_refs=[{"label": text(200), "url": url} for _ in range(10)],
        history=[{"text": text(2000)} for _ in range(10)],
    )


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def assert_accepted(world: DiscordWorld) -> None:
    assert world.discord.violations == []
    refused = [(c.key, c.status, c.response) for c in world.discord.errors]
    assert refused == []


def assert_cut_marked(card: Message) -> None:
    """A card that had to cut something says so: the title and the question end with an
    ellipsis, and "Full context" is offered."""
    embed = card.embeds[0]
    assert embed["title"].endswith(ELLIPSIS)
    assert "full_context" in verbs(card)


async def read_full_context(world: DiscordWorld, card: Message, body: dict[str, Any]) -> str:
    answer = await world.reviewers.click(card, "full_context", REVIEWER)
    assert answer.type == 4, answer.data
    whole = answer.files[0].data.decode()
    for key in ("title", "question"):
        assert body[key] in whole
    return whole


def policy_with_most_codes(folder: Path) -> Path:
    """The Discord tests' policy, plus the longest kind with the most reason codes (so its
    decision modal asks for a typed code and lists them all)."""
    codes = ", ".join(f"code_{n:02d}_" + "x" * 56 for n in range(50))
    policy = DISCORD_POLICY.read_text().replace(
        "kinds:\n", f"kinds:\n  {LONG_KIND}:\n    reason_codes: [{codes}]\n", 1
    )
    path = folder / "policy.yaml"
    path.write_text(policy)
    return path


async def test_cases_at_every_bound_are_accepted_everywhere_on_discord(
    sqlite_url: str, tmp_path: Path
) -> None:
    bodies = {
        "text": longest_text(),
        "facts": most_facts(),
        "links": most_links(),
        "everything": everything(),
    }
    for body in bodies.values():
        CaseIn.model_validate(body)  # each is a valid case, at the bounds
        assert len(orjson.dumps(body)) <= MAX_BODY_BYTES, len(orjson.dumps(body))

    clock = FrozenClock()
    policy = policy_with_most_codes(tmp_path)
    async with discord_world(sqlite_url, clock=clock, policy=str(policy)) as world:
        world.discord.add_member(REVIEWER, REVIEWER_NAME, roles=[ROLES["reviewers"]])
        world.discord.add_member(REVIEWER.replace("21", "22"), "e" * 32, roles=[ROLES["experts"]])
        ids = {name: (await world.api.submit(body))["id"] for name, body in bodies.items()}
        cards = {name: await world.card_for(case_id) for name, case_id in ids.items()}
        assert_accepted(world)
        for name, card in cards.items():
            assert_cut_marked(card)
            whole = await read_full_context(world, card, bodies[name])
            if name == "facts":
                assert all(key in whole for key in bodies["facts"]["facts"])
            if name == "links":
                assert all(e["url"] in whole for e in bodies["links"]["evidence"])
                assert all(e["excerpt"] in whole for e in bodies["links"]["evidence"])
        whole = await read_full_context(world, cards["text"], bodies["text"])
        assert bodies["text"]["summary"] in whole

        # The modals a click opens: decision (a select of codes, and a typed code where the
        # kind has none) and request-info.
        for name in ("text", "facts", "everything"):
            for verb in ("approve", "reject", "request_info"):
                opened = await world.reviewers.click(cards[name], verb, REVIEWER)
                assert opened.type == 9, opened.data
                if name == "facts" and verb != "request_info":
                    listed = opened.data["components"][0]
                    assert listed["type"] == 10  # every code, above the typed-code box
                    assert "code\\_49\\_" in listed["content"]
        assert_accepted(world)

        # Request info with the longest question the modal takes; the workflow answers
        # with the longest text it may send.
        card = cards["text"]
        opened = await world.reviewers.click(card, "request_info", REVIEWER)
        question = text(4000)
        asked = await world.reviewers.submit(opened.data, REVIEWER, question=question)
        assert "Your question went to the workflow" in told(asked)
        await world.discord.wait_for(lambda d: d.thread(card.id))
        waiting = await edited(world, card)
        assert "Waiting for the workflow to answer" in field(waiting, "Status")
        answer = await world.api.post(
            f"/v1/escalations/{ids['text']}/info",
            {"text": text(10_000), "facts": {f"new{n}": text(2000) for n in range(40)}},
        )
        assert answer.status_code == 200, answer.text
        await world.discord.wait_for(lambda d: len(d.thread(card.id)) >= 2)
        asked_reply, answered_reply = world.discord.thread(card.id)[:2]
        assert asked_reply.content.endswith(ELLIPSIS)
        assert answered_reply.content.endswith(ELLIPSIS)
        back = await edited(world, card, 2)
        assert "request_info" in verbs(back)
        assert_accepted(world)

        # Reject (overriding the AI) with the longest reasoning the modal takes.
        decided = await decide(world, back, "reject", "policy_violation", text(4000))
        assert told(decided) == "Recorded: you rejected this case."
        final = await edited(world, card, 3)
        assert verbs(final) == ["full_context"]  # the rest stays readable after a decision
        assert "Rejected" in field(final, "Status")
        await world.discord.wait_for(lambda d: len(d.thread(card.id)) >= 3)
        assert_accepted(world)

        # Approve (agreeing with the AI) the case that fills every part of the card, with
        # the longest reasoning: the decided card still fits.
        full = cards["everything"]
        decided = await decide(world, full, "approve", "policy_match", text(4000))
        assert told(decided) == "Recorded: you approved this case."
        shown = await edited(world, full)
        assert "Approved" in field(shown, "Status")
        assert field(shown, "Status").endswith(ELLIPSIS)  # the reasoning, cut
        whole = await read_full_context(world, shown, bodies["everything"])
        assert " ".join(text(4000).split()) in " ".join(whole.split())
        assert_accepted(world)

        # The facts case waits out its SLA: reminders, at risk, expired by timeout.
        facts_card = cards["facts"]
        await asyncio.sleep(0.1)  # the deliveries recorded before the clock jumps a lease
        for hours in (2, 1.3, 1):
            clock.advance(hours * 3600)
            await world.runtime.sla.sweep()
        await world.discord.wait_for(
            lambda d: "Expired" in json.dumps(current(world, facts_card).embeds)
        )
        assert verbs(current(world, facts_card)) == ["full_context"]
        # The links case (expert lane) escalates after 24 hours: a new card on call,
        # a note in its thread and a page.
        clock.advance(20 * 3600)
        await world.runtime.sla.sweep()

        def oncall_cards(d: Any) -> list[Message]:
            return [m for m in d.messages[CHANNELS["oncall"]] if m.embeds]

        await world.discord.wait_for(lambda d: oncall_cards(d))
        await world.discord.wait_for(lambda d: d.thread(cards["links"].id))
        await world.discord.wait_for(
            lambda d: any(m.message_reference for m in d.messages[CHANNELS["oncall"]])
        )
        escalated = oncall_cards(world.discord)[0]
        assert_cut_marked(escalated)
        await asyncio.sleep(0.3)  # any update still on its way is checked too
        assert_accepted(world)
        for messages in world.discord.messages.values():
            for message in messages:
                assert len(message.content) <= 2000
                for item in strings(message.embeds):
                    assert "\ufffd" not in item  # nothing was cut inside a character


async def decide(world: DiscordWorld, card: Message, verb: str, code: str, reason: str) -> Callback:
    opened = await world.reviewers.click(card, verb, REVIEWER)
    assert opened.type == 9, opened.data
    return await world.reviewers.submit(opened.data, REVIEWER, code=code, reason=reason)


# -- the same, drawn: every part empty, short or at its bound, in any mix -----------------


def sized(most: int) -> st.SearchStrategy[str]:
    """Text of no, a little or the most length allowed, from the nasty pattern at a
    drawn offset (so that cuts fall on every kind of character)."""
    return st.tuples(st.sampled_from([0, 1, 17, most]), st.integers(0, len(NASTY) - 1)).map(
        lambda n_at: text(n_at[0], NASTY[n_at[1] :] + NASTY[: n_at[1]])
    )


def counted(most: int) -> st.SearchStrategy[int]:
    return st.sampled_from([0, 1, most])


@st.composite
def extreme_cards(draw: st.DrawFn) -> CardView:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    decided = draw(st.booleans())
    reason = draw(sized(4000)) or None
    outcome = Outcome("reject", "human", f"discord:{REVIEWER}", "other", reason, at)
    url = "https://e.x/" + "u" * draw(st.sampled_from([1, 500, 2036]))
    return CardView(
        case_id="0" * 64,
        lane=draw(st.sampled_from(["review", "expert", "stop_the_line"])),
        kind="k" * draw(st.sampled_from([1, 64])),
        status="rejected" if decided else draw(st.sampled_from(["pending", "info_requested"])),
        title=draw(sized(300)) or "t",
        question=draw(sized(3000)) or "q",
        summary=draw(sized(100_000)),
        recommended_action="approve",
        confidence=0.8,
        rationale=draw(sized(10_000)),
        runner_up=draw(st.sampled_from([None, "r" * 100])),
        runner_up_confidence=0.1,
        hide_recommendation=draw(st.booleans()),
        rule=draw(sized(300)) or "rule",
        flags=["f" * 64] * draw(counted(50)),
        facts=[Fact(draw(sized(100)) or "k", draw(sized(2000)))] * draw(counted(500)),
        evidence=[Link(draw(sized(200)) or "e", url, draw(sized(5000)))] * draw(counted(50)),
        policy_refs=[Link(draw(sized(200)) or "p", url)] * draw(counted(20)),
        history=[draw(sized(2000)) or "h"] * draw(counted(100)),
        due_at=None if decided else at,
        actions=[] if decided else ["approve", "reject", "request_info"],
        reason_codes=draw(st.sampled_from([["other"], [f"c{n}" for n in range(50)]])),
        needs_ack=draw(st.booleans()),
        outcome=outcome if decided else None,
        votes=[outcome] * draw(st.sampled_from([0, 2])),
        info_question=draw(sized(4000)) or None,
        why=[draw(sized(300))] * draw(counted(10)),
        claimed_by=draw(st.sampled_from([None, f"discord:{REVIEWER}", "slack:" + "U" * 64])),
        sla_state=draw(st.sampled_from([None, "at_risk", "overdue"])),
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(extreme_cards())
def test_any_mix_of_bounds_renders_a_card_and_forms_discord_accepts(card: CardView) -> None:
    rendered = render_card(card)
    message = {
        "embeds": [rendered.embed.to_dict()],
        "components": rendered.view.to_components(),
        "allowed_mentions": {"parse": []},
    }
    assert check_message(message) == []
    assert len(rendered.embed) <= 6000
    ids = [c["custom_id"] for row in message["components"] for c in row["components"]]
    assert (f"signoff:full_context:{card.case_id}" in ids) == rendered.cut
    if rendered.cut:
        whole = full_context(card)
        assert card.title in whole
        assert card.question in whole
    else:  # nothing cut: every part is on the card, whole
        shown = json.dumps(message["embeds"], ensure_ascii=False)
        parts = [card.question, card.summary, card.rule, *card.history]
        parts += [f.value.strip() for f in card.facts] + [e.excerpt for e in card.evidence]
        assert all(json.dumps(md(p), ensure_ascii=False)[1:-1] in shown for p in parts)
    for verb in ("approve", "reject"):
        assert check_modal(decision_modal(card, verb, draft=text(5000)).to_dict()) == []
    assert check_modal(info_modal(card, draft=text(5000)).to_dict()) == []
