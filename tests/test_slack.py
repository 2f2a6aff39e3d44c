"""The whole Slack loop against a Slack-compatible server on 127.0.0.1: a case becomes a
card, a reviewer clicks and fills in the modal, the card and the workflow learn the
outcome. Clicks are real-shaped, signed `block_actions` and `view_submission` payloads."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import SECRET, case, wait_for
from tests.receiver import Receiver, running
from tests.slack_harness import SlackWorld, slack_world


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[SlackWorld]:
    async with slack_world(database_url) as found:
        yield found


@pytest.fixture
async def lite(sqlite_url: str) -> AsyncIterator[SlackWorld]:
    """The same, on SQLite only, for scenarios whose store does not matter."""
    async with slack_world(sqlite_url) as found:
        yield found


def actions_of(blocks: list[dict[str, Any]] | None) -> list[str]:
    return [
        element["action_id"].removeprefix("signoff_")
        for block in blocks or []
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def text_of(blocks: list[dict[str, Any]] | None) -> str:
    return json.dumps(blocks)


async def status_of(world: SlackWorld, case_id: str) -> dict[str, Any]:
    response = await world.api.get(f"/v1/escalations/{case_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def test_full_loop_card_click_modal_submit_update_callback(world: SlackWorld) -> None:
    async with running(Receiver(SECRET)) as hook:
        submitted = await world.api.submit(case(callback_url=hook.url))
        card = await world.card_for(submitted["id"])

        assert card.channel == "C0REVIEW"
        blocks = card.blocks or []
        assert blocks[0]["type"] == "header"
        assert "Review" in blocks[0]["text"]["text"]
        assert "Expense ER-1: team dinner" in blocks[0]["text"]["text"]
        shown = text_of(blocks)
        assert "Approve this expense?" in shown
        assert "`approve` at 82%" in shown
        assert "runner-up `reject` at 18%" in shown
        assert "<https://expenses.example.com/r/1|Receipt>" in shown
        assert "<!date^" in shown  # the SLA in each reader's own time zone
        assert "*employee*\\nDana" in shown
        assert actions_of(blocks) == ["approve", "reject", "request_info"]
        buttons = {
            e["action_id"]: e for b in blocks if b["type"] == "actions" for e in b["elements"]
        }
        assert buttons["signoff_approve"]["style"] == "primary"
        assert buttons["signoff_reject"]["style"] == "danger"
        assert buttons["signoff_reject"]["confirm"]["title"]["text"] == "Reject this case?"

        started = time.perf_counter()
        clicked = await world.reviewers.click(card, "approve", "U0CAROL")
        assert clicked.status_code == 200
        assert time.perf_counter() - started < 3.0
        await world.slack.wait_for(lambda s: s.of("views.open"))
        view = world.reviewers.opened_view()
        assert view["callback_id"] == "signoff_decide"
        options = view["blocks"][2]["element"]["options"]
        assert [o["value"] for o in options] == [
            "policy_match",
            "policy_violation",
            "missing_receipt",
            "suspected_fraud",
            "other",
        ]

        answer = await world.reviewers.submit(view, "U0CAROL", code="policy_match", reason="")
        assert answer.status_code == 200
        assert answer.text == ""  # an empty ack closes the modal

        await world.slack.wait_for(lambda s: s.message(card.channel, card.ts).edits >= 1)
        updated = world.slack.message(card.channel, card.ts)
        assert updated is not None
        assert actions_of(updated.blocks) == []
        assert "Approved* by <@U0CAROL>" in text_of(updated.blocks)
        assert "reason `policy_match`" in text_of(updated.blocks)
        await world.slack.wait_for(lambda s: s.thread(card.channel, card.ts))
        reply = world.slack.thread(card.channel, card.ts)[0]
        assert "Approved by carol (policy_match)" in reply.text

        await wait_for(lambda: len(hook.received) >= 1)
        delivered = hook.received[0]
        assert delivered.signature_ok
        assert delivered.body["type"] == "decision"
        assert delivered.body["decision"]["action"] == "approve"
        assert delivered.body["decision"]["reviewer"] == "slack:U0CAROL"

    found = await status_of(world, submitted["id"])
    assert found["status"] == "approved"
    assert found["decisions"][0]["reason_code"] == "policy_match"
    assert world.slack.violations == []


async def test_reject_overriding_the_ai_needs_reasoning_next_to_the_field(lite: SlackWorld) -> None:
    submitted = await lite.api.submit()
    card = await lite.card_for(submitted["id"])
    answer = await lite.reviewers.decide(card, "reject", "U0ALICE", "policy_violation", "")
    assert answer.status_code == 200
    errors = answer.json()
    assert errors["response_action"] == "errors"
    assert "overriding the AI's recommendation" in errors["errors"]["reason"]
    assert (await status_of(lite, submitted["id"]))["status"] == "pending"

    view = lite.reviewers.opened_view()
    again = await lite.reviewers.submit(
        view, "U0ALICE", code="policy_violation", reason="Dinner was for a private party."
    )
    assert again.text == ""
    found = await status_of(lite, submitted["id"])
    assert found["status"] == "rejected"
    assert found["decisions"][0]["reason"] == "Dinner was for a private party."


async def test_other_needs_reasoning_and_a_missing_code_is_named(lite: SlackWorld) -> None:
    submitted = await lite.api.submit()
    card = await lite.card_for(submitted["id"])
    answer = await lite.reviewers.decide(card, "approve", "U0ALICE", "other", "  ")
    assert answer.json() == {
        "response_action": "errors",
        "errors": {"reason": "Write your reasoning: the reason code is `other`."},
    }
    view = lite.reviewers.opened_view()
    missing = await lite.reviewers.submit(view, "U0ALICE", code=None, reason="fine")
    assert missing.json()["errors"]["reason_code"].startswith("Pick a reason code")
    assert (await status_of(lite, submitted["id"]))["status"] == "pending"


async def test_unauthorized_user_gets_an_ephemeral_explanation_and_an_audit_event(
    lite: SlackWorld,
) -> None:
    submitted = await lite.api.submit()
    card = await lite.card_for(submitted["id"])
    clicked = await lite.reviewers.click(card, "approve", "U0BOB")
    assert clicked.status_code == 200
    await lite.slack.wait_for(lambda s: s.of("chat.postEphemeral"))
    told = lite.slack.of("chat.postEphemeral")[0].params
    assert told["user"] == "U0BOB"
    assert told["channel"] == "C0REVIEW"
    assert "not an approver for the review lane" in told["text"]
    assert lite.slack.of("views.open") == []

    # a forged submission (no modal was ever opened for Bob) is refused too
    view = {
        "id": "V0FORGED",
        "blocks": [],
        "callback_id": "signoff_decide",
        "private_metadata": json.dumps({"case": submitted["id"], "action": "approve"}),
        "title": {"type": "plain_text", "text": "Approve case"},
    }
    forged = await lite.reviewers.submit(view, "U0BOB", code="policy_match", reason="x")
    assert forged.json()["response_action"] == "update"
    assert "not an approver" in json.dumps(forged.json()["view"])

    found = await status_of(lite, submitted["id"])
    assert found["status"] == "pending"
    refused = [e for e in found["events"] if e["type"] == "refused"]
    assert len(refused) == 2
    assert {e["actor"] for e in refused} == {"slack:U0BOB"}
    assert refused[0]["detail"]["code"] == "not_an_approver"


async def test_self_approval_is_refused_by_profile_email(lite: SlackWorld) -> None:
    # Dana is in S0REVIEWERS, and her Slack e-mail (Dana@Example.com) requested the case
    submitted = await lite.api.submit(case(requested_by="dana@example.com"))
    card = await lite.card_for(submitted["id"])
    await lite.reviewers.click(card, "approve", "U0DANA")
    await lite.slack.wait_for(lambda s: s.of("chat.postEphemeral"))
    assert "cannot approve it yourself" in lite.slack.of("chat.postEphemeral")[0].params["text"]
    assert lite.slack.of("views.open") == []
    found = await status_of(lite, submitted["id"])
    assert found["status"] == "pending"
    assert [e["detail"]["code"] for e in found["events"] if e["type"] == "refused"] == [
        "self_approval"
    ]


async def test_two_reviewers_deciding_at_once_one_wins_the_other_is_told(world: SlackWorld) -> None:
    async with running(Receiver(SECRET)) as hook:
        submitted = await world.api.submit(case(callback_url=hook.url))
        card = await world.card_for(submitted["id"])
        views = {}
        for user in ("U0ALICE", "U0CAROL"):
            before = len(world.slack.of("views.open"))
            await world.reviewers.click(card, "approve", user)
            await world.slack.wait_for(lambda s, n=before: len(s.of("views.open")) > n)
            views[user] = world.reviewers.opened_view()
        answers = await asyncio.gather(
            world.reviewers.submit(views["U0ALICE"], "U0ALICE", code="policy_match"),
            world.reviewers.submit(views["U0CAROL"], "U0CAROL", code="policy_match"),
        )
        closed = [a for a in answers if a.text == ""]
        told = [a.json() for a in answers if a.text != ""]
        assert len(closed) == 1
        assert len(told) == 1
        assert told[0]["response_action"] == "update"
        assert "already approved by slack:U0" in json.dumps(told[0]["view"])
        await wait_for(lambda: len(hook.received) >= 1)
        await asyncio.sleep(0.3)
        assert len(hook.received) == 1

    found = await status_of(world, submitted["id"])
    assert len(found["decisions"]) == 1
    assert [e["type"] for e in found["events"]].count("decided") == 1
    await world.slack.wait_for(lambda s: s.thread(card.channel, card.ts))
    await asyncio.sleep(0.3)
    assert len(world.slack.thread(card.channel, card.ts)) == 1


async def test_a_second_click_on_a_decided_card_is_answered_politely(lite: SlackWorld) -> None:
    submitted = await lite.api.submit()
    card = await lite.card_for(submitted["id"])
    old_copy = copy.deepcopy(card)  # as another reviewer's screen still shows it
    await lite.reviewers.decide(card, "approve", "U0ALICE", "policy_match")
    await lite.reviewers.click(old_copy, "reject", "U0CAROL")
    await lite.slack.wait_for(lambda s: s.of("chat.postEphemeral"))
    text = lite.slack.of("chat.postEphemeral")[0].params["text"]
    assert text == "This case was already approved by slack:U0ALICE."
