"""The whole Discord loop through the real discord.py client, against a Discord-compatible
server on 127.0.0.1 (REST and gateway): a case becomes an embed card with buttons, a
reviewer clicks (INTERACTION_CREATE over the gateway), fills in the modal, and the card,
its thread and the workflow learn the outcome. Each Slack scenario has its twin here."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import SECRET, case, wait_for
from tests.discord_api import Callback, Message
from tests.discord_harness import (
    ALICE,
    BOB,
    CAROL,
    CHANNELS,
    DANA,
    OPS1,
    OPS2,
    ROLES,
    DiscordWorld,
    custom_ids,
    discord_world,
)
from tests.receiver import RECEIVER_HOSTS, Receiver, running

EPHEMERAL = 64


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[DiscordWorld]:
    async with discord_world(database_url, callback_hosts=RECEIVER_HOSTS) as found:
        yield found


@pytest.fixture
async def lite(sqlite_url: str) -> AsyncIterator[DiscordWorld]:
    """The same, on SQLite only, for scenarios whose store does not matter."""
    async with discord_world(sqlite_url) as found:
        yield found


def verbs(message: Message | None) -> list[str]:
    assert message is not None
    return [i.split(":")[1] for i in custom_ids(message)]


def embed_text(message: Message | None) -> str:
    assert message is not None
    return json.dumps(message.embeds, ensure_ascii=False)


def field(message: Message | None, name: str) -> str:
    assert message is not None
    found = [f["value"] for f in message.embeds[0].get("fields", []) if f["name"] == name]
    assert found, f"no field {name!r} in {[f['name'] for f in message.embeds[0]['fields']]}"
    return str(found[0])


def told(answer: Callback) -> str:
    """An ephemeral answer's text (sent as the callback, or after a deferral)."""
    assert answer.type == 4, f"expected a message, got type {answer.type}: {answer.data}"
    assert answer.flags & EPHEMERAL
    return str(answer.data.get("content", ""))


async def status_of(world: DiscordWorld, case_id: str) -> dict[str, Any]:
    response = await world.api.get(f"/v1/escalations/{case_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def current(world: DiscordWorld, card: Message) -> Message:
    found = world.discord.message(card.channel_id, card.id)
    assert found is not None
    return found


async def edited(world: DiscordWorld, card: Message, times: int = 1) -> Message:
    await world.discord.wait_for(lambda d: len(current(world, card).edits) >= times)
    return current(world, card)


async def test_full_loop_card_click_modal_submit_update_callback(world: DiscordWorld) -> None:
    async with running(Receiver(SECRET)) as hook:
        submitted = await world.api.submit(case(callback_url=hook.url))
        card = await world.card_for(submitted["id"])

        assert card.channel_id == CHANNELS["review"]
        embed = card.embeds[0]
        assert embed["title"] == "📝 Review\\: Expense ER\\-1\\: team dinner"
        assert embed["color"] == 0x3B82F6
        assert "**Question:** Approve this expense?" in embed["description"]
        assert "**AI recommends:** **approve** at 82%" in embed["description"]
        assert "runner-up **reject** at 18%" in embed["description"]
        assert "[Receipt](https://expenses.example.com/r/1)" in field(card, "Evidence")
        assert field(card, "⏰ Decide by").startswith("<t:")  # each reader's own time zone
        assert {"name": "employee", "value": "Dana", "inline": True} in embed["fields"]
        assert card.allowed_mentions == {"parse": []}
        assert verbs(card) == ["approve", "reject", "request_info", "claim"]
        styles = [c["style"] for row in card.components for c in row["components"]]
        assert styles[:2] == [3, 4]  # success (green), danger (red)

        opened = await world.reviewers.click(card, "approve", CAROL)
        assert opened.type == 9
        assert opened.elapsed < 3.0
        modal = opened.data
        assert modal["custom_id"] == f"signoff:form:approve:{submitted['id']}"
        select = modal["components"][0]["component"]
        assert [o["value"] for o in select["options"]] == [
            "policy_match",
            "policy_violation",
            "missing_receipt",
            "suspected_fraud",
            "other",
        ]
        reasoning = modal["components"][1]["component"]
        assert reasoning["required"] is False  # agreeing with the AI: reasoning optional

        answer = await world.reviewers.submit(
            modal, CAROL, code="policy_match", reason="", message=card
        )
        assert told(answer) == "Recorded: you approved this case."

        updated = await edited(world, card)
        assert verbs(updated) == []
        assert f"✅ **Approved** by <@{CAROL}>" in field(updated, "Status")
        assert "reason **policy\\_match**" in field(updated, "Status")
        assert updated.embeds[0]["color"] == 0x16A34A
        await world.discord.wait_for(lambda d: d.thread(card.id))
        reply = world.discord.thread(card.id)[0]
        assert reply.content == "Approved by carol (policy\\_match)"

        await wait_for(lambda: len(hook.received) >= 1)
        delivered = hook.received[0]
        assert delivered.signature_ok
        assert delivered.body["decision"]["action"] == "approve"
        assert delivered.body["decision"]["reviewer"] == f"discord:{CAROL}"

    found = await status_of(world, submitted["id"])
    assert found["status"] == "approved"
    assert found["decisions"][0]["reason_code"] == "policy_match"
    assert world.discord.violations == []


async def test_reject_overriding_the_ai_needs_reasoning_and_try_again_keeps_it(
    lite: DiscordWorld,
) -> None:
    submitted = await lite.api.submit()
    card = await lite.card_for(submitted["id"])
    opened = await lite.reviewers.click(card, "reject", ALICE)
    reasoning = opened.data["components"][1]
    assert reasoning["component"]["required"] is True
    assert "against the AI" in reasoning["description"]
    # Discord's client enforces `required`; a forged submission that skips it is refused here
    answer = await lite.reviewers.submit(
        opened.data, ALICE, code="policy_violation", reason="", strict=False
    )
    assert "overriding the AI's recommendation" in told(answer)
    assert (await status_of(lite, submitted["id"]))["status"] == "pending"
    again = answer.data["components"][0]["components"][0]
    assert (again["label"], again["custom_id"]) == (
        "Try again",
        f"signoff:reject:{submitted['id']}",
    )

    short = await lite.reviewers.submit(
        opened.data, ALICE, code="other", reason="   ", message=card, strict=False
    )
    assert "Not recorded" in told(short)
    reopened = await lite.reviewers.click(card, "reject", ALICE)
    assert reopened.type == 9
    final = await lite.reviewers.submit(
        reopened.data, ALICE, code="policy_violation", reason="Dinner was for a private party."
    )
    assert told(final) == "Recorded: you rejected this case."
    found = await status_of(lite, submitted["id"])
    assert found["status"] == "rejected"
    assert found["decisions"][0]["reason"] == "Dinner was for a private party."


async def test_the_typed_reasoning_comes_back_when_the_form_reopens(lite: DiscordWorld) -> None:
    submitted = await lite.api.submit()
    card = await lite.card_for(submitted["id"])
    opened = await lite.reviewers.click(card, "approve", ALICE)
    refused = await lite.reviewers.submit(
        opened.data, ALICE, code=None, reason="Looks fine.", strict=False
    )
    assert "Pick a reason code" in told(refused)
    reopened = await lite.reviewers.click(card, "approve", ALICE)
    assert reopened.data["components"][1]["component"]["value"] == "Looks fine."


async def test_unauthorized_user_gets_an_ephemeral_explanation_and_an_audit_event(
    lite: DiscordWorld,
) -> None:
    submitted = await lite.api.submit()
    card = await lite.card_for(submitted["id"])
    clicked = await lite.reviewers.click(card, "approve", BOB)
    assert "not an approver for the review lane" in told(clicked)
    assert clicked.elapsed < 3.0

    # a forged submission (no modal was ever opened for Bob) is refused too
    forged = await lite.discord.interact(
        lite.discord.modal_submit(
            BOB,
            f"signoff:form:approve:{submitted['id']}",
            {"code": ["policy_match"], "reason": "x"},
            CHANNELS["review"],
        )
    )
    assert "not an approver" in told(forged)
    found = await status_of(lite, submitted["id"])
    assert found["status"] == "pending"
    refused = [e for e in found["events"] if e["type"] == "refused"]
    assert len(refused) == 2
    assert {e["actor"] for e in refused} == {f"discord:{BOB}"}
    assert refused[0]["detail"]["code"] == "not_an_approver"


async def test_roles_come_with_the_click_and_are_read_fresh_each_time(lite: DiscordWorld) -> None:
    submitted = await lite.api.submit()
    card = await lite.card_for(submitted["id"])
    lite.discord.add_member(BOB, "bob", roles=[ROLES["reviewers"]])  # Bob joins the reviewers
    opened = await lite.reviewers.click(card, "approve", BOB)
    assert opened.type == 9
    lite.discord.add_member(BOB, "bob", roles=[])  # and leaves before submitting
    answer = await lite.reviewers.submit(opened.data, BOB, code="policy_match")
    assert "not an approver" in told(answer)


async def test_self_approval_is_refused_through_the_identity_mapping(lite: DiscordWorld) -> None:
    # Dana is a reviewer by role; SIGNOFF_DISCORD_IDENTITIES maps her to dana@example.com
    submitted = await lite.api.submit(case(requested_by="Dana@Example.com"))
    card = await lite.card_for(submitted["id"])
    answer = await lite.reviewers.click(card, "approve", DANA)
    assert "cannot approve it yourself" in told(answer)
    # so is her Discord username, as Slack refuses the handle
    other = await lite.api.submit(case(requested_by="carol"))
    card2 = await lite.card_for(other["id"])
    assert "cannot approve it yourself" in told(await lite.reviewers.click(card2, "approve", CAROL))
    found = await status_of(lite, submitted["id"])
    assert [e["detail"]["code"] for e in found["events"] if e["type"] == "refused"] == [
        "self_approval"
    ]


async def test_two_reviewers_deciding_at_once_one_wins_the_other_is_told(
    world: DiscordWorld,
) -> None:
    async with running(Receiver(SECRET)) as hook:
        submitted = await world.api.submit(case(callback_url=hook.url))
        card = await world.card_for(submitted["id"])
        modals = {
            user: (await world.reviewers.click(card, "approve", user)).data
            for user in (ALICE, CAROL)
        }
        answers = await asyncio.gather(
            *(world.reviewers.submit(modals[u], u, code="policy_match") for u in (ALICE, CAROL))
        )
        texts = sorted(told(a) for a in answers)
        assert texts[0] == "Recorded: you approved this case."
        assert texts[1].startswith("This case was already approved by <@")
        await wait_for(lambda: len(hook.received) >= 1)
        await asyncio.sleep(0.3)
        assert len(hook.received) == 1
    found = await status_of(world, submitted["id"])
    assert len(found["decisions"]) == 1
    await world.discord.wait_for(lambda d: d.thread(card.id))
    await asyncio.sleep(0.3)
    assert len(world.discord.thread(card.id)) == 1


async def test_a_second_click_on_a_decided_card_is_answered_politely(lite: DiscordWorld) -> None:
    submitted = await lite.api.submit()
    card = await lite.card_for(submitted["id"])
    # another reviewer's screen still shows the buttons: their click comes after the decision
    stale = lite.discord.button_click(
        CAROL, f"signoff:reject:{submitted['id']}", card.id, card.channel_id
    )
    await lite.reviewers.decide(card, "approve", ALICE, "policy_match")
    late = await lite.discord.interact(stale)
    assert told(late) == f"This case was already approved by <@{ALICE}>."


async def test_request_info_loop_question_callback_answer_and_buttons_back(
    world: DiscordWorld,
) -> None:
    async with running(Receiver(SECRET)) as hook:
        submitted = await world.api.submit(case(callback_url=hook.url))
        card = await world.card_for(submitted["id"])
        opened = await world.reviewers.click(card, "request_info", CAROL)
        assert opened.data["custom_id"] == f"signoff:form:request_info:{submitted['id']}"
        empty = await world.reviewers.submit(opened.data, CAROL, question=" ", strict=False)
        assert "Write the question for the workflow." in told(empty)
        asked = await world.reviewers.submit(opened.data, CAROL, question="Who attended?")
        assert "Your question went to the workflow" in told(asked)

        await world.discord.wait_for(lambda d: d.thread(card.id))
        assert world.discord.thread(card.id)[0].content == "carol asks\\: Who attended?"
        waiting = await edited(world, card)
        assert "Waiting for the workflow to answer:** Who attended?" in field(waiting, "Status")
        assert verbs(waiting) == ["approve", "reject", "claim"]
        await wait_for(lambda: len(hook.received) >= 1)
        assert hook.received[0].body["type"] == "info_requested"

        answered = await world.api.post(
            f"/v1/escalations/{submitted['id']}/info", {"text": "The whole team @everyone"}
        )
        assert answered.status_code == 200, answered.text
        await world.discord.wait_for(lambda d: len(d.thread(card.id)) >= 2)
        reply = world.discord.thread(card.id)[1]
        assert reply.content == "The workflow answered\\: The whole team \\@everyone"
        assert reply.mention_everyone is False
        back = await edited(world, card, 2)
        assert verbs(back) == ["approve", "reject", "request_info", "claim"]
    assert (await status_of(world, submitted["id"]))["status"] == "pending"


async def test_stop_the_line_pings_the_on_call_role_acknowledge_then_quorum_of_two(
    world: DiscordWorld,
) -> None:
    submitted = await world.api.submit(case(flags=["data_leakage"]))
    assert submitted["lane"] == "stop_the_line"
    card = await world.card_for(submitted["id"])
    assert card.channel_id == CHANNELS["oncall"]
    assert verbs(card) == ["acknowledge", "approve", "reject", "request_info", "claim"]
    assert "Waiting for on-call to acknowledge" in field(card, "Status")

    def page_of(d: Any) -> list[Message]:
        return [m for m in d.messages[CHANNELS["oncall"]] if m.message_reference]

    await world.discord.wait_for(lambda d: page_of(d))
    page = page_of(world.discord)[0]
    assert page.content.startswith(f"<@&{ROLES['oncall']}> 🚨 Stop the line")
    assert page.mention_roles == [ROLES["oncall"]]
    assert page.mention_everyone is False
    assert page.message_reference is not None
    assert page.message_reference["message_id"] == card.id

    outsider = await world.reviewers.click(card, "acknowledge", ALICE)
    assert outsider.type == 6
    await world.discord.wait_for(lambda d: d.followups.get(outsider.token))
    refusal = world.discord.followups[outsider.token][0]
    assert refusal.ephemeral
    assert "not on call" in refusal.content or "not an approver" in refusal.content
    ack = await world.reviewers.click(card, "acknowledge", OPS1)
    assert ack.type == 6  # a deferred update: the card itself shows it
    acked = await edited(world, card)
    assert f"Acknowledged by <@{OPS1}>" in field(acked, "Status")
    assert verbs(acked) == ["approve", "reject", "request_info", "claim"]

    first = await world.reviewers.decide(acked, "approve", OPS1, "policy_match")
    assert told(first) == "Recorded: you approved this case."
    assert (await status_of(world, submitted["id"]))["status"] == "pending"  # 1 of 2
    await world.discord.wait_for(lambda d: "voted **approve**" in embed_text(current(world, card)))
    second = await world.reviewers.decide(acked, "approve", OPS2, "policy_match")
    assert told(second) == "Recorded: you approved this case."
    found = await status_of(world, submitted["id"])
    assert found["status"] == "approved"
    assert {d["reviewer"] for d in found["decisions"]} == {f"discord:{OPS1}", f"discord:{OPS2}"}
    assert world.discord.violations == []


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def one_card_each(world: DiscordWorld, ids: list[str]) -> None:
    for case_id in ids:
        cards = [
            m
            for messages in world.discord.messages.values()
            for m in messages
            if m.embeds and f"Case {case_id}" in json.dumps(m.embeds) and not m.ephemeral
        ]
        assert len(cards) == 1, f"case {case_id} has {len(cards)} cards"


async def test_a_429_storm_loses_and_doubles_no_card(lite: DiscordWorld) -> None:
    lite.discord.fail("POST /channels/{channel_id}/messages", status=429, times=8, retry_after=0.05)
    ids = [(await lite.api.submit(case(title=f"Expense {n}")))["id"] for n in range(5)]
    for case_id in ids:
        await lite.card_for(case_id)
    one_card_each(lite, ids)
    assert sum(1 for c in lite.discord.calls if c.status == 429) == 8
    assert lite.discord.violations == []


async def test_a_discord_outage_loses_no_card_and_no_update(lite: DiscordWorld) -> None:
    first = await lite.api.submit()
    card = await lite.card_for(first["id"])
    opened = await lite.reviewers.click(card, "approve", ALICE)

    lite.discord.outage(True)
    ids = [(await lite.api.submit(case(title=f"During the outage {n}")))["id"] for n in range(3)]
    # the decision needs no REST call but its answer: the gateway still works, and the
    # answer goes through once Discord is back
    decided = asyncio.create_task(lite.reviewers.submit(opened.data, ALICE, code="policy_match"))
    await lite.discord.wait_for(lambda d: sum(1 for c in d.calls if c.injected) >= 4)
    assert current(lite, card).edits == []
    lite.discord.outage(False)
    await decided
    for case_id in ids:
        await lite.card_for(case_id)
    await edited(lite, card)
    await lite.discord.wait_for(lambda d: d.thread(card.id))
    await asyncio.sleep(1.0)  # any doubled delivery would land by now
    one_card_each(lite, [first["id"], *ids])
    assert len(current(lite, card).edits) == 1
    assert len(lite.discord.thread(card.id)) == 1
    assert (await status_of(lite, first["id"]))["status"] == "approved"
    deliveries = (await status_of(lite, first["id"]))["deliveries"]
    assert {d["status"] for d in deliveries} == {"delivered"}


async def test_workflow_text_cannot_ping_or_disguise_a_link(lite: DiscordWorld) -> None:
    body = case(
        title="@everyone refund now <@400000000000000001>",
        question="Approve? @here <@&300000000000000003>",
        summary="Pay at [https://bank.example.com](http://evil.example) # now",
        facts={"note": "@everyone <#200000000000000002>", "<@400000000000000005>": "x"},
        evidence=[{"label": "[Receipt](https://evil.example)", "url": "https://ok.example/r"}],
        history=[{"text": "@everyone earlier", "actor": "agent"}],
    )
    submitted = await lite.api.submit(body)
    card = await lite.card_for(submitted["id"])
    shown = "\n".join(strings(card.embeds))
    for dangerous in (
        "@everyone",
        "@here",
        "<@400000000000000001>",
        "<@&300000000000000003>",
        "<#200000000000000002>",
        "<@400000000000000005>",
        "[https://bank.example.com](http://evil",
        "[Receipt](https://evil",
    ):
        # each only with a backslash before its first character, which Discord then shows
        at = shown.find(dangerous)
        while at >= 0:
            assert at > 0, dangerous
            assert shown[at - 1] == "\\", (dangerous, shown[at - 20 : at + 30])
            at = shown.find(dangerous, at + 1)
    assert "\\@everyone refund now \\<\\@400000000000000001\\>" in card.embeds[0]["title"]
    assert card.allowed_mentions == {"parse": []}
    assert card.mentions == []
    assert card.mention_roles == []
    assert card.mention_everyone is False
    assert "[\\[Receipt\\](https\\://evil.example)](https://ok.example/r)" in shown
    assert lite.discord.violations == []


async def test_200_facts_and_a_50_kb_summary_fit_and_the_full_context_is_a_file(
    lite: DiscordWorld,
) -> None:
    facts = {f"fact_{n:03d}": f"value {n} " * 30 for n in range(200)}
    summary = "".join(f"Paragraph {n}: " + "lorem ipsum & <dolor> " * 20 + "\n" for n in range(120))
    assert len(summary) > 50_000
    submitted = await lite.api.submit(case(facts=facts, summary=summary))
    card = await lite.card_for(submitted["id"])
    assert len(card.embeds[0]["fields"]) <= 25
    assert lite.discord.violations == []
    assert "full_context" in verbs(card)

    answer = await lite.reviewers.click(card, "full_context", BOB)  # anyone may read it
    assert answer.type == 4
    assert answer.flags & EPHEMERAL
    assert [f.filename for f in answer.files] == [f"case-{submitted['id']}.md"]
    text = answer.files[0].data.decode()
    assert "fact_199" in text
    assert summary.strip()[-200:] in text
    assert lite.discord.violations == []


async def test_blind_review_hides_then_reveals_the_recommendation(
    sqlite_url: str, tmp_path: Any
) -> None:
    from tests.discord_harness import DISCORD_POLICY

    blind = tmp_path / "blind.yaml"
    blind.write_text(DISCORD_POLICY.read_text().replace("blind_review: 0.0", "blind_review: 1.0"))
    async with discord_world(sqlite_url, policy=str(blind)) as world:
        submitted = await world.api.submit()
        card = await world.card_for(submitted["id"])
        assert "hidden for blind review" in embed_text(card)
        assert "82%" not in embed_text(card)
        opened = await world.reviewers.click(card, "approve", ALICE)
        assert opened.data["components"][1]["component"]["required"] is True
        assert "82%" not in json.dumps(opened.data)
        answer = await world.reviewers.submit(opened.data, ALICE, code="policy_match", reason="ok")
        assert told(answer) == "Recorded: you approved this case."
        revealed = await edited(world, card)
        assert "**approve** at 82%" in embed_text(revealed)


async def test_server_errors_on_an_update_are_retried_and_it_lands_once(lite: DiscordWorld) -> None:
    submitted = await lite.api.submit()
    card = await lite.card_for(submitted["id"])
    lite.discord.fail("PATCH /channels/{channel_id}/messages/{message_id}", status=503, times=4)
    answer = await lite.reviewers.decide(card, "approve", ALICE, "policy_match")
    assert told(answer) == "Recorded: you approved this case."
    await lite.discord.wait_for(lambda d: len(current(lite, card).edits) >= 1, timeout=15)
    await asyncio.sleep(0.5)
    assert len(current(lite, card).edits) == 1
    assert sum(1 for c in lite.discord.calls if c.injected and c.method == "PATCH") == 4


async def test_claim_and_release_from_the_card(lite: DiscordWorld) -> None:
    submitted = await lite.api.submit()
    card = await lite.card_for(submitted["id"])
    claim = await lite.reviewers.click(card, "claim", CAROL)
    assert claim.type == 6
    claimed = await edited(lite, card)
    assert f"Claimed by <@{CAROL}>" in field(claimed, "Status")
    assert "release" in verbs(claimed)
    refused = await lite.reviewers.click(claimed, "release", ALICE)  # not hers to release
    assert refused.type == 6
    await lite.discord.wait_for(lambda d: d.followups.get(refused.token))
    followup = lite.discord.followups[refused.token][0]
    assert followup.content == "You have not claimed this case."
    assert followup.ephemeral
    await lite.reviewers.click(claimed, "release", CAROL)
    released = await edited(lite, card, 2)
    assert "Claimed by" not in embed_text(released)


async def test_reminder_then_the_safe_default_as_discord_shows_them(sqlite_url: str) -> None:
    from bot.clock import FrozenClock

    clock = FrozenClock()
    async with discord_world(sqlite_url, clock=clock) as world:
        submitted = await world.api.submit()
        card = await world.card_for(submitted["id"])
        await asyncio.sleep(0.1)  # the delivery recorded before the clock jumps its lease
        clock.advance(2 * 3600)
        await world.runtime.sla.sweep()
        await world.discord.wait_for(lambda d: d.thread(card.id))
        reminder = world.discord.thread(card.id)[0]
        assert reminder.content.startswith(
            f"<@{ALICE}> <@&{ROLES['reviewers']}> ⏰ Reminder\\: 50%"
        )
        assert reminder.mention_roles == [ROLES["reviewers"]]
        assert reminder.mentions == [ALICE]
        clock.advance(1.3 * 3600)
        await world.runtime.sla.sweep()
        await world.discord.wait_for(lambda d: "At risk" in embed_text(current(world, card)))
        assert current(world, card).embeds[0]["color"] == 0xF59E0B
        clock.advance(1 * 3600)
        await world.runtime.sla.sweep()
        await world.discord.wait_for(lambda d: "Expired" in embed_text(current(world, card)))
        expired = current(world, card)
        assert verbs(expired) == []
        assert "⛔ **Expired** by timeout" in field(expired, "Status")
        await world.discord.wait_for(lambda d: len(d.thread(card.id)) == 3)
        assert "rejected by default" in world.discord.thread(card.id)[2].content
        assert world.discord.violations == []


async def click_orphan(world: DiscordWorld, custom_id: str) -> Callback:
    """A click on a message Signoff did not post this time (another version's, or one
    whose case is gone) carrying a button `custom_id`."""
    button = {"type": 2, "style": 2, "label": "Old", "custom_id": custom_id}
    orphan = world.discord.seed_message(
        CHANNELS["review"], components=[{"type": 1, "components": [button]}]
    )
    return await world.discord.interact(
        world.discord.button_click(ALICE, custom_id, orphan.id, orphan.channel_id)
    )


async def test_clicks_and_forms_for_no_such_case_are_answered_plainly(lite: DiscordWorld) -> None:
    # a card whose case is gone (say, a message from another Signoff's database)
    clicked = await click_orphan(lite, "signoff:approve:01nosuchcase")
    assert told(clicked) == "Signoff has no such case any more."
    form = await lite.discord.interact(
        lite.discord.modal_submit(
            ALICE,
            "signoff:form:approve:01nosuchcase",
            {"code": ["policy_match"], "reason": ""},
            CHANNELS["review"],
        )
    )
    assert told(form) == "Signoff has no such case any more."


async def test_a_slow_decision_is_deferred_within_three_seconds(
    lite: DiscordWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    submitted = await lite.api.submit()
    card = await lite.card_for(submitted["id"])
    opened = await lite.reviewers.click(card, "approve", ALICE)
    service = lite.runtime.service
    decide = service.decide

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(2.5)
        return await decide(*args, **kwargs)

    monkeypatch.setattr(service, "decide", slow)
    started = time.perf_counter()
    answer = await lite.reviewers.submit(opened.data, ALICE, code="policy_match")
    assert answer.type == 5  # deferred, ephemeral "thinking"
    assert answer.elapsed < 3.0
    assert answer.flags & EPHEMERAL
    await lite.discord.wait_for(lambda d: any(d.followups.values()))
    assert time.perf_counter() - started < 6
    followup = next(m for ms in lite.discord.followups.values() for m in ms)
    assert followup.content == "Recorded: you approved this case."


async def test_bad_interactions_get_a_clear_answer_and_change_nothing(lite: DiscordWorld) -> None:
    submitted = await lite.api.submit()
    card = await lite.card_for(submitted["id"])
    case_id = submitted["id"]
    form = f"signoff:form:approve:{case_id}"
    unknown = "Signoff does not know this button or form; use the buttons on the case's card."
    cases: list[tuple[dict[str, Any], str]] = [
        # a form with no fields at all, and one with fields of the wrong kinds
        (lite.discord.modal_submit(ALICE, form, {}, CHANNELS["review"]), "Pick a reason code"),
        (
            lite.discord.modal_submit(
                ALICE, form, {"code": "no_such_code", "reason": "x"}, CHANNELS["review"]
            ),
            "'no\\_such\\_code' is not a reason code",  # escaped: the reviewer typed it
        ),
        # reasoning past the 4,000 characters a form allows
        (
            lite.discord.modal_submit(
                ALICE, form, {"code": ["other"], "reason": "x" * 5000}, CHANNELS["review"]
            ),
            "Not recorded",
        ),
        # a verb no form has, a case ID that is not one, a button of another version
        (
            lite.discord.modal_submit(
                ALICE, f"signoff:form:delete:{case_id}", {"reason": "x"}, CHANNELS["review"]
            ),
            unknown,
        ),
        (
            lite.discord.modal_submit(
                ALICE, "signoff:form:approve:../../etc", {"reason": "x"}, CHANNELS["review"]
            ),
            unknown,
        ),
    ]
    for payload, expected in cases:
        answer = await lite.discord.interact(payload)
        assert expected in told(answer), (payload["data"], answer.data)

    old = await click_orphan(lite, f"signoff:delete:{case_id}")
    assert told(old) == unknown

    found = await status_of(lite, case_id)
    assert found["status"] == "pending"
    assert found["decisions"] == []
    assert [e["type"] for e in found["events"]].count("decided") == 0
    assert current(lite, card).edits == []


async def test_a_click_from_a_dm_has_no_roles_and_is_refused(lite: DiscordWorld) -> None:
    submitted = await lite.api.submit()
    card = await lite.card_for(submitted["id"])
    payload = lite.discord.button_click(
        CAROL, f"signoff:approve:{submitted['id']}", card.id, card.channel_id
    )
    payload.pop("member")  # as in a DM: a user, no member, no roles
    payload.pop("guild_id", None)
    payload["user"] = {"id": CAROL, "username": "carol", "discriminator": "0", "avatar": None}
    answer = await lite.discord.interact(payload)
    assert "not an approver" in told(answer)


async def test_a_card_sent_again_after_a_lost_answer_is_not_doubled(lite: DiscordWorld) -> None:
    """A crash between Discord's answer and Signoff recording it makes the outbox send
    the card again: Discord's nonce check gives back the first message."""
    submitted = await lite.api.submit()
    card = await lite.card_for(submitted["id"])
    view = await lite.runtime.service.card(submitted["id"])
    again = await lite.surface.post_card(CHANNELS["review"], view)
    assert again.ref["message"] == card.id
    one_card_each(lite, [submitted["id"]])
    sent = lite.discord.of("POST /channels/{channel_id}/messages")
    assert [c.json["enforce_nonce"] for c in sent] == [True, True]
    assert len({c.json["nonce"] for c in sent}) == 1
    assert len(sent[0].json["nonce"]) <= 25


async def test_an_escalation_as_discord_shows_it(sqlite_url: str) -> None:
    from bot.clock import FrozenClock

    clock = FrozenClock()
    async with discord_world(sqlite_url, clock=clock) as world:
        submitted = await world.api.submit(case(**{"recommendation.confidence": 0.6}))
        assert submitted["lane"] == "expert"
        first = await world.card_for(submitted["id"])
        assert first.channel_id == CHANNELS["expert"]
        await asyncio.sleep(0.1)  # the delivery recorded before the clock jumps its lease
        clock.advance(24 * 3600)
        await world.runtime.sla.sweep()

        def oncall_cards(d: Any) -> list[Message]:
            return [m for m in d.messages[CHANNELS["oncall"]] if m.embeds]

        await world.discord.wait_for(lambda d: oncall_cards(d))
        assert f"Case {submitted['id']}" in embed_text(oncall_cards(world.discord)[0])
        await world.discord.wait_for(lambda d: d.thread(first.id))
        note = world.discord.thread(first.id)[0]
        assert note.content.startswith(f"<#{CHANNELS['oncall']}> ")
        assert "escalated to the stop\\_the\\_line lane" in note.content
        assert note.mentions == []
        assert note.mention_roles == []
        await world.discord.wait_for(
            lambda d: any(m.message_reference for m in d.messages[CHANNELS["oncall"]])
        )
        page = next(m for m in world.discord.messages[CHANNELS["oncall"]] if m.message_reference)
        assert page.mention_roles == [ROLES["oncall"]]
        assert world.discord.violations == []


async def test_without_thread_permission_the_record_goes_to_the_channel(
    lite: DiscordWorld,
) -> None:
    lite.discord.forbid("POST /channels/{channel_id}/messages/{message_id}/threads")
    submitted = await lite.api.submit()
    card = await lite.card_for(submitted["id"])
    await lite.reviewers.decide(card, "approve", ALICE, "policy_match")
    updated = await edited(lite, card)
    assert verbs(updated) == []

    def replies(d: Any) -> list[Message]:
        return [m for m in d.messages[CHANNELS["review"]] if m.message_reference]

    await lite.discord.wait_for(lambda d: replies(d))
    reply = replies(lite.discord)[0]
    assert reply.content == "Approved by alice (policy\\_match)"
    assert reply.message_reference is not None
    assert reply.message_reference["message_id"] == card.id
    assert lite.discord.thread(card.id) == []
    found = await status_of(lite, submitted["id"])
    assert {d["status"] for d in found["deliveries"]} == {"delivered"}
