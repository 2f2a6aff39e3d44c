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
from tests.receiver import RECEIVER_HOSTS, Receiver, running
from tests.slack_harness import SlackWorld, slack_world


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[SlackWorld]:
    async with slack_world(database_url, callback_hosts=RECEIVER_HOSTS) as found:
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
        assert actions_of(blocks) == ["approve", "reject", "request_info", "claim"]
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
    assert text == "This case was already approved by <@U0ALICE>."


async def test_request_info_loop_question_callback_answer_and_buttons_back(
    world: SlackWorld,
) -> None:
    async with running(Receiver(SECRET)) as hook:
        submitted = await world.api.submit(case(callback_url=hook.url))
        card = await world.card_for(submitted["id"])
        await world.reviewers.click(card, "request_info", "U0CAROL")
        await world.slack.wait_for(lambda s: s.of("views.open"))
        view = world.reviewers.opened_view()
        assert view["callback_id"] == "signoff_info"
        empty = await world.reviewers.submit(view, "U0CAROL", question=" ")
        assert empty.json() == {
            "response_action": "errors",
            "errors": {"question": "Write the question for the workflow."},
        }
        asked = await world.reviewers.submit(view, "U0CAROL", question="Who attended?")
        assert asked.text == ""

        await world.slack.wait_for(lambda s: s.thread(card.channel, card.ts))
        assert world.slack.thread(card.channel, card.ts)[0].text == "carol asks: Who attended?"
        await world.slack.wait_for(lambda s: s.message(card.channel, card.ts).edits >= 1)
        waiting = world.slack.message(card.channel, card.ts)
        assert waiting is not None
        assert "Waiting for the workflow to answer:* Who attended?" in text_of(waiting.blocks)
        assert actions_of(waiting.blocks) == ["approve", "reject", "claim"]
        await wait_for(lambda: len(hook.received) >= 1)
        assert hook.received[0].body["type"] == "info_requested"
        assert hook.received[0].body["question"] == "Who attended?"

        answered = await world.api.post(
            f"/v1/escalations/{submitted['id']}/info", {"text": "The whole team <!here>"}
        )
        assert answered.status_code == 200, answered.text
        await world.slack.wait_for(lambda s: len(s.thread(card.channel, card.ts)) >= 2)
        reply = world.slack.thread(card.channel, card.ts)[1].text
        assert reply == "The workflow answered: The whole team &lt;!here&gt;"
        await world.slack.wait_for(lambda s: s.message(card.channel, card.ts).edits >= 2)
        back = world.slack.message(card.channel, card.ts)
        assert back is not None
        assert actions_of(back.blocks) == ["approve", "reject", "request_info", "claim"]
        assert "Waiting for the workflow" not in text_of(back.blocks)
    assert (await status_of(world, submitted["id"]))["status"] == "pending"


async def test_stop_the_line_pages_on_call_acknowledge_then_quorum_of_two(
    world: SlackWorld,
) -> None:
    submitted = await world.api.submit(case(flags=["data_leakage"]))
    assert submitted["lane"] == "stop_the_line"
    card = await world.card_for(submitted["id"])
    assert card.channel == "C0ONCALL"
    assert actions_of(card.blocks) == [
        "acknowledge",
        "approve",
        "reject",
        "request_info",
        "claim",
    ]
    assert "Waiting for on-call to acknowledge" in text_of(card.blocks)

    await world.slack.wait_for(lambda s: len(s.of("conversations.open")) == 3)
    page = world.slack.thread(card.channel, card.ts)[0]
    assert page.text.startswith("<!subteam^S0ONCALL> 🚨 Stop the line")
    assert page.reply_broadcast
    opened = sorted(c.params["users"] for c in world.slack.of("conversations.open"))
    assert opened == ["U0OPS1", "U0OPS2", "U0OPS3"]
    await world.slack.wait_for(
        lambda s: sum(1 for c in s.of("chat.postMessage") if c.params["channel"][0] == "D") == 3
    )
    dm = next(c for c in world.slack.of("chat.postMessage") if c.params["channel"] == "DU0OPS1")
    assert "You are on call" in dm.params["text"]
    assert "|Open the card>" in dm.params["text"]

    outsider = await world.reviewers.click(card, "acknowledge", "U0ALICE")
    assert outsider.status_code == 200
    await world.slack.wait_for(lambda s: s.of("chat.postEphemeral"))
    await world.reviewers.click(card, "acknowledge", "U0OPS1")
    await world.slack.wait_for(lambda s: s.message(card.channel, card.ts).edits >= 1)
    acked = world.slack.message(card.channel, card.ts)
    assert acked is not None
    assert "Acknowledged by <@U0OPS1>" in text_of(acked.blocks)
    assert actions_of(acked.blocks) == ["approve", "reject", "request_info", "claim"]

    first = await world.reviewers.decide(acked, "approve", "U0OPS1", "policy_match")
    assert first.text == ""
    assert (await status_of(world, submitted["id"]))["status"] == "pending"  # 1 of 2
    await world.slack.wait_for(
        lambda s: "voted `approve`" in text_of(s.message(card.channel, card.ts).blocks)
    )
    second = await world.reviewers.decide(acked, "approve", "U0OPS2", "policy_match")
    assert second.text == ""
    found = await status_of(world, submitted["id"])
    assert found["status"] == "approved"
    assert {d["reviewer"] for d in found["decisions"]} == {"slack:U0OPS1", "slack:U0OPS2"}
    assert world.slack.violations == []


def one_card_each(world: SlackWorld, ids: list[str]) -> None:
    for case_id in ids:
        cards = [
            m
            for messages in world.slack.messages.values()
            for m in messages
            if m.thread_ts is None and m.user is None and case_id in text_of(m.blocks)
        ]
        assert len(cards) == 1, f"case {case_id} has {len(cards)} cards"


async def test_a_429_storm_loses_and_doubles_no_card(lite: SlackWorld) -> None:
    lite.slack.fail("chat.postMessage", status=429, times=8, retry_after=0)
    ids = [(await lite.api.submit(case(title=f"Expense {n}")))["id"] for n in range(5)]
    for case_id in ids:
        await lite.card_for(case_id)
    one_card_each(lite, ids)
    assert sum(1 for c in lite.slack.rejected if c.status == 429) == 8
    assert lite.slack.violations == []


async def test_a_slack_outage_loses_no_card_and_no_update(lite: SlackWorld) -> None:
    first = await lite.api.submit()
    card = await lite.card_for(first["id"])
    await lite.reviewers.click(card, "approve", "U0ALICE")
    await lite.slack.wait_for(lambda s: s.of("views.open"))
    view = lite.reviewers.opened_view()

    lite.slack.outage(True)
    ids = [(await lite.api.submit(case(title=f"During the outage {n}")))["id"] for n in range(3)]
    decided = await lite.reviewers.submit(view, "U0ALICE", code="policy_match")
    assert decided.text == ""  # the decision needs no Slack call: it is in the store
    await lite.slack.wait_for(lambda s: len(s.rejected) >= 4)
    assert lite.slack.message(card.channel, card.ts).edits == 0

    lite.slack.outage(False)
    for case_id in ids:
        await lite.card_for(case_id)
    await lite.slack.wait_for(lambda s: s.message(card.channel, card.ts).edits >= 1)
    await lite.slack.wait_for(lambda s: s.thread(card.channel, card.ts))
    await asyncio.sleep(1.0)  # any doubled delivery would land by now
    one_card_each(lite, [first["id"], *ids])
    assert lite.slack.message(card.channel, card.ts).edits == 1
    assert len(lite.slack.thread(card.channel, card.ts)) == 1
    deliveries = (await status_of(lite, first["id"]))["deliveries"]
    assert {d["status"] for d in deliveries} == {"delivered"}


def mrkdwn_texts(value: Any) -> list[str]:
    """Every string Slack parses as mrkdwn in a message: mrkdwn text objects."""
    found: list[str] = []
    if isinstance(value, dict):
        if value.get("type") == "mrkdwn":
            found.append(value["text"])
        for item in value.values():
            found += mrkdwn_texts(item)
    elif isinstance(value, list):
        for item in value:
            found += mrkdwn_texts(item)
    return found


async def test_workflow_text_cannot_ping_or_disguise_a_link(lite: SlackWorld) -> None:
    body = case(
        title="<!channel> refund now <@U0ALICE>",
        question="Approve? <!here> <!subteam^S0ONCALL>",
        summary="Pay at <http://evil.example|https://bank.example.com> & thank <@U0BOB>",
        facts={"note": "<!everyone> <#C0GENERAL>", "<@U0EVE>": "x"},
        evidence=[{"label": "<https://evil.example|Receipt>", "url": "https://ok.example/r"}],
        history=[{"text": "<!channel> earlier", "actor": "agent"}],
    )
    submitted = await lite.api.submit(body)
    card = await lite.card_for(submitted["id"])
    post = lite.slack.of("chat.postMessage")[0].params
    parsed = [post["text"], *mrkdwn_texts(post["blocks"])]
    everything = "\n".join(parsed)
    for dangerous in (
        "<!channel>",
        "<!here>",
        "<!everyone>",
        "<!subteam",
        "<@U0ALICE>",
        "<@U0BOB>",
        "<@U0EVE>",
        "<#C0GENERAL>",
        "<http://evil",
        "<https://evil",
    ):
        assert dangerous not in everything, dangerous
    assert "&lt;!channel&gt; refund now &lt;@U0ALICE&gt;" in post["text"]
    assert "&lt;http://evil.example|https://bank.example.com&gt; &amp; thank" in everything
    assert "<https://ok.example/r|&lt;https://evil.example|Receipt&gt;>" in everything
    # plain_text is never parsed: the header shows the title as the workflow wrote it
    assert card.blocks is not None
    assert card.blocks[0]["text"]["type"] == "plain_text"
    assert lite.slack.violations == []


async def test_200_facts_and_a_50_kb_summary_fit_and_open_in_full(lite: SlackWorld) -> None:
    facts = {f"fact_{n:03d}": f"value {n} " * 30 for n in range(200)}
    summary = "".join(f"Paragraph {n}: " + "lorem ipsum & <dolor> " * 20 + "\n" for n in range(120))
    assert len(summary) > 50_000
    submitted = await lite.api.submit(case(facts=facts, summary=summary))
    card = await lite.card_for(submitted["id"])
    assert card.blocks is not None
    assert len(card.blocks) <= 50
    assert lite.slack.violations == []
    assert "full_context" in actions_of(card.blocks)
    assert "more facts in the full context" in text_of(card.blocks)

    await lite.reviewers.click(card, "full_context", "U0BOB")  # anyone may read it
    await lite.slack.wait_for(lambda s: s.of("views.open"))
    modal = lite.reviewers.opened_view()
    # The whole case comes in pages (issue 12: a page holds what a message holds); the
    # pages are followed to fact_199 in tests/test_bounds_slack.py.
    assert modal["title"]["text"].startswith("Full context 1/")
    assert len(modal["blocks"]) <= 100
    assert "page_next" in actions_of(modal["blocks"])
    assert f"GET /v1/escalations/{submitted['id']}" in text_of(modal["blocks"])
    assert lite.slack.violations == []


async def test_blind_review_hides_then_reveals_the_recommendation(
    sqlite_url: str, tmp_path: Any
) -> None:
    from tests.slack_harness import SLACK_POLICY

    blind = tmp_path / "blind.yaml"
    blind.write_text(SLACK_POLICY.read_text().replace("blind_review: 0.0", "blind_review: 1.0"))
    async with slack_world(sqlite_url, policy=str(blind)) as world:
        submitted = await world.api.submit()
        card = await world.card_for(submitted["id"])
        assert "hidden for blind review" in text_of(card.blocks)
        assert "82%" not in text_of(card.blocks)
        assert "Within the per-head limit" not in text_of(card.blocks)
        await world.reviewers.click(card, "approve", "U0ALICE")
        await world.slack.wait_for(lambda s: s.of("views.open"))
        view = world.reviewers.opened_view()
        reason = view["blocks"][-1]
        assert reason["optional"] is False
        assert "82%" not in text_of(view["blocks"])
        answer = await world.reviewers.submit(view, "U0ALICE", code="policy_match", reason="ok")
        assert answer.text == ""
        await world.slack.wait_for(lambda s: s.message(card.channel, card.ts).edits >= 1)
        revealed = world.slack.message(card.channel, card.ts)
        assert revealed is not None
        assert "`approve` at 82%" in text_of(revealed.blocks)


async def test_unsigned_forged_or_stale_clicks_are_refused_with_401(lite: SlackWorld) -> None:
    submitted = await lite.api.submit()
    card = await lite.card_for(submitted["id"])
    payload = lite.reviewers.click_payload(card, "approve", "U0ALICE")
    wrong = await lite.reviewers.send(payload, secret="not-the-secret")
    stale = await lite.reviewers.send(payload, at=int(time.time()) - 301)
    unsigned = await lite.reviewers.client.post(
        "/slack/events", content=b"payload=%7B%7D", headers={"Content-Type": "text/plain"}
    )
    assert [wrong.status_code, stale.status_code, unsigned.status_code] == [401, 401, 401]
    await asyncio.sleep(0.2)
    assert lite.slack.of("views.open") == []
    assert (await status_of(lite, submitted["id"]))["events"][-1]["type"] != "refused"


def test_the_harness_signs_as_slack_does() -> None:
    from tests.slack_harness import fixture, slack_signature

    vector = fixture("signature_test_vector.json")
    expected = vector["headers"]["X-Slack-Signature"]
    signed = slack_signature(vector["signing_secret"], vector["timestamp"], vector["body"].encode())
    assert signed == expected


async def test_server_errors_on_an_update_are_retried_and_it_lands_once(lite: SlackWorld) -> None:
    submitted = await lite.api.submit()
    card = await lite.card_for(submitted["id"])
    lite.slack.fail("chat.update", status=500, times=4)
    decided = await lite.reviewers.decide(card, "approve", "U0ALICE", "policy_match")
    assert decided.text == ""
    await lite.slack.wait_for(lambda s: s.message(card.channel, card.ts).edits >= 1, timeout=15)
    await asyncio.sleep(0.5)
    assert lite.slack.message(card.channel, card.ts).edits == 1
    assert sum(1 for c in lite.slack.rejected if c.method == "chat.update") == 4
    assert "Approved* by <@U0ALICE>" in text_of(lite.slack.message(card.channel, card.ts).blocks)


async def test_claim_and_release_from_the_card(lite: SlackWorld) -> None:
    submitted = await lite.api.submit()
    card = await lite.card_for(submitted["id"])
    await lite.reviewers.click(card, "claim", "U0CAROL")
    await lite.slack.wait_for(lambda s: s.message(card.channel, card.ts).edits >= 1)
    claimed = lite.slack.message(card.channel, card.ts)
    assert claimed is not None
    assert "Claimed by <@U0CAROL>" in text_of(claimed.blocks)
    assert "release" in actions_of(claimed.blocks)
    await lite.reviewers.click(claimed, "release", "U0ALICE")  # not hers to release
    await lite.slack.wait_for(lambda s: s.of("chat.postEphemeral"))
    assert lite.slack.of("chat.postEphemeral")[0].params["text"] == (
        "You have not claimed this case."
    )
    await lite.reviewers.click(claimed, "release", "U0CAROL")
    await lite.slack.wait_for(lambda s: s.message(card.channel, card.ts).edits >= 2)
    released = lite.slack.message(card.channel, card.ts)
    assert released is not None
    assert "Claimed by" not in text_of(released.blocks)
    found = await status_of(lite, submitted["id"])
    assert [e["type"] for e in found["events"] if e["type"] in ("claimed", "released")] == [
        "claimed",
        "released",
    ]


async def test_reminder_then_the_safe_default_as_slack_shows_them(sqlite_url: str) -> None:
    from bot.clock import FrozenClock

    clock = FrozenClock()
    async with slack_world(sqlite_url, clock=clock) as world:
        submitted = await world.api.submit()
        card = await world.card_for(submitted["id"])
        # let the card's delivery be recorded before the frozen clock jumps past its lease
        await asyncio.sleep(0.1)
        clock.advance(2 * 3600)
        await world.runtime.sla.sweep()
        await world.slack.wait_for(lambda s: s.thread(card.channel, card.ts))
        reminder = world.slack.thread(card.channel, card.ts)[0].text
        assert reminder.startswith("<@U0ALICE> <!subteam^S0REVIEWERS> ⏰ Reminder: 50%")
        clock.advance(1.3 * 3600)  # 42 minutes left: at risk
        await world.runtime.sla.sweep()  # the 80% reminder refreshes the card
        await world.slack.wait_for(
            lambda s: "At risk" in text_of(s.message(card.channel, card.ts).blocks)
        )
        clock.advance(1 * 3600)
        await world.runtime.sla.sweep()
        await world.slack.wait_for(
            lambda s: "Expired" in text_of(s.message(card.channel, card.ts).blocks)
        )
        expired = world.slack.message(card.channel, card.ts)
        assert expired is not None
        assert actions_of(expired.blocks) == []
        assert "⛔ *Expired* by timeout" in text_of(expired.blocks).encode().decode(
            "unicode_escape"
        )
        await world.slack.wait_for(lambda s: len(s.thread(card.channel, card.ts)) == 3)
        assert "rejected by default" in world.slack.thread(card.channel, card.ts)[2].text
        assert world.slack.violations == []


async def test_clicks_and_forms_for_no_such_case_are_answered_plainly(lite: SlackWorld) -> None:
    submitted = await lite.api.submit()
    card = await lite.card_for(submitted["id"])
    payload = lite.reviewers.click_payload(card, "approve", "U0ALICE")
    payload["actions"][0]["value"] = "01nosuchcase"
    assert (await lite.reviewers.send(payload)).status_code == 200
    await lite.slack.wait_for(lambda s: s.of("chat.postEphemeral"))
    told = lite.slack.of("chat.postEphemeral")[0].params["text"]
    assert told == "Signoff has no such case any more."
    view = {
        "id": "V0X",
        "blocks": [],
        "callback_id": "signoff_decide",
        "private_metadata": json.dumps({"case": "01nosuchcase", "action": "approve"}),
        "title": {"type": "plain_text", "text": "Approve case"},
    }
    answer = await lite.reviewers.submit(view, "U0ALICE", code="policy_match")
    assert answer.json()["response_action"] == "update"
    assert "No such case." in json.dumps(answer.json()["view"])
    view["private_metadata"] = "not json"
    garbled = await lite.reviewers.submit(view, "U0ALICE", code="policy_match")
    assert "No such case." in json.dumps(garbled.json()["view"])


async def test_a_signed_but_garbled_body_is_refused_without_a_server_error(
    lite: SlackWorld,
) -> None:
    from tests.slack_harness import SIGNING_SECRET, slack_signature

    bad = {"error": "bad_request", "message": "not a Slack interaction payload"}
    for body, status, answer in (
        (b"payload=%7Bnot-json", 400, bad),
        (b"payload=", 400, bad),
        (b"\xff\xfe", 400, bad),
        (b"token=x&command=%2Fsignoff", 404, {"error": "unhandled request"}),  # Bolt's own
    ):
        stamp = str(int(time.time()))
        response = await lite.reviewers.client.post(
            "/slack/events",
            content=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": stamp,
                "X-Slack-Signature": slack_signature(SIGNING_SECRET, stamp, body),
            },
        )
        assert (response.status_code, response.json()) == (status, answer), body
    assert lite.slack.of("views.open") == []


async def test_an_escalation_pages_on_the_new_lanes_card(sqlite_url: str) -> None:
    from bot.clock import FrozenClock

    clock = FrozenClock()
    async with slack_world(sqlite_url, clock=clock) as world:
        submitted = await world.api.submit(case(**{"recommendation.confidence": 0.6}))
        first = await world.card_for(submitted["id"])
        assert first.channel == "C0EXPERT"
        await asyncio.sleep(0.1)  # the delivery recorded before the clock jumps its lease
        clock.advance(24 * 3600)
        await world.runtime.sla.sweep()
        await world.slack.wait_for(lambda s: s.messages.get("C0ONCALL"))
        oncall = world.slack.messages["C0ONCALL"][0]
        await world.slack.wait_for(lambda s: s.thread("C0ONCALL", oncall.ts))
        page = world.slack.thread("C0ONCALL", oncall.ts)[0]
        assert page.text.startswith("<!subteam^S0ONCALL> 🚨 Stop the line")
        note = world.slack.thread("C0EXPERT", first.ts)
        assert [m.text.split(" ")[0] for m in note] == ["<#C0ONCALL>"]
