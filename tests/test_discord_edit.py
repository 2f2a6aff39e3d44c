"""Editing a case's proposal on Discord, through the real discord.py client against the
Discord-compatible server: a case with a `proposal` shows it on its card with an "Edit"
button; the click answers with a modal holding the editable arguments as JSON (a field
each up to three, one JSON object past that, the web inbox past what a field holds);
the submission approves the case with the edited arguments (`modify`), or is refused
with an ephemeral answer and nothing written."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from tests.conftest import SECRET, case, wait_for
from tests.discord_api import Callback, Message
from tests.discord_harness import ALICE, BOB, CAROL, CHANNELS, DiscordWorld, discord_world
from tests.receiver import RECEIVER_HOSTS, Receiver, running
from tests.test_discord import EPHEMERAL, current, edited, embed_text, field, status_of, told, verbs

MODAL = 9
MODAL_LIMIT = 5  # top-level components Discord allows in a modal
PROPOSAL: dict[str, Any] = {
    "name": "issue_refund",
    "args": {"order": "A-1001", "amount": 420.5, "currency": "EUR", "notify": True},
    "editable": ["amount", "currency"],
}
WIDE: dict[str, Any] = {  # five editable arguments: more than a modal has fields for
    "name": "set_limits",
    "args": {
        "daily": 100,
        "weekly": 500,
        "monthly": 2000,
        "currency": "EUR",
        "note": "raised for the offsite",
        "owner": "dana",
    },
    "editable": ["daily", "weekly", "monthly", "currency", "note"],
}
REASON = "The receipt says 380."


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[DiscordWorld]:
    async with discord_world(database_url, callback_hosts=RECEIVER_HOSTS) as found:
        yield found


@pytest.fixture
async def lite(sqlite_url: str) -> AsyncIterator[DiscordWorld]:
    async with discord_world(sqlite_url) as found:
        yield found


def inputs(modal: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A modal's fields by custom_id (the component each Label wraps)."""
    found: dict[str, dict[str, Any]] = {}
    for top in modal["components"]:
        inner = top.get("component") or {}
        if inner.get("custom_id"):
            found[str(inner["custom_id"])] = inner
    return found


def button(message: Message, verb: str) -> dict[str, Any]:
    wanted = [
        c
        for row in message.components
        for c in row["components"]
        if str(c.get("custom_id", "")).startswith(f"signoff:{verb}:")
    ]
    assert len(wanted) == 1, message.components
    found: dict[str, Any] = wanted[0]
    return found


async def open_edit(world: DiscordWorld, body: dict[str, Any], user: str = ALICE) -> Any:
    """Submit `body`, wait for its card, click Edit as `user`: the case, card and modal."""
    submitted = await world.api.submit(body)
    card = await world.card_for(submitted["id"])
    opened = await world.reviewers.click(card, "modify", user)
    assert opened.type == MODAL, f"expected a modal, got {opened.type}: {opened.data}"
    return submitted["id"], card, opened.data


async def send(
    world: DiscordWorld,
    modal: Mapping[str, Any],
    user: str,
    values: Mapping[str, str | list[str]],
    card: Message,
    *,
    strict: bool = True,
) -> Callback:
    """Submit the edit form as `user` filled it in (fields not named keep their
    prefilled value, as in Discord's client)."""
    return await world.discord.interact(
        world.discord.modal_submit(
            user, modal["custom_id"], values, card.channel_id, card.id, strict=strict
        )
    )


async def nothing_written(world: DiscordWorld, case_id: str, card: Message) -> dict[str, Any]:
    found = await status_of(world, case_id)
    assert found["status"] == "pending"
    assert found["decisions"] == []
    assert [e["type"] for e in found["events"]].count("decided") == 0
    assert current(world, card).edits == []
    return found


# -- the card -------------------------------------------------------------------------


async def test_a_proposal_is_shown_on_the_card_with_an_edit_button(lite: DiscordWorld) -> None:
    submitted = await lite.api.submit(case(proposal=PROPOSAL))
    card = await lite.card_for(submitted["id"])
    description = card.embeds[0]["description"]
    assert "**Proposed:** **issue\\_refund**" in description
    assert "• **amount** = 420.5 ✏️" in description  # editable: marked
    assert '• **currency** = "EUR" ✏️' in description
    assert '• **order** = "A\\-1001"\n' in description  # not editable: no mark
    assert "• **notify** = true\n" in description
    assert verbs(card) == ["approve", "reject", "modify", "request_info", "claim"]
    edit = button(card, "modify")
    assert (edit["label"], edit["style"], edit["custom_id"]) == (
        "Edit",
        1,  # primary
        f"signoff:modify:{submitted['id']}",
    )

    plain = await lite.api.submit(case())  # no proposal: nothing to edit
    plain_card = await lite.card_for(plain["id"])
    assert "modify" not in verbs(plain_card)
    assert "Proposed:" not in embed_text(plain_card)

    # a proposal whose case does not allow modify: shown, not editable
    fixed = await lite.api.submit(case(proposal=PROPOSAL, actions=["approve", "reject"]))
    fixed_card = await lite.card_for(fixed["id"])
    assert "**Proposed:** **issue\\_refund**" in fixed_card.embeds[0]["description"]
    assert "✏️" not in embed_text(fixed_card)
    assert "modify" not in verbs(fixed_card)
    assert lite.discord.violations == []


# -- the modal ------------------------------------------------------------------------


async def test_edit_opens_a_field_per_editable_argument_prefilled_with_json(
    lite: DiscordWorld,
) -> None:
    submitted = await lite.api.submit(case(proposal=PROPOSAL))
    card = await lite.card_for(submitted["id"])
    opened = await lite.reviewers.click(card, "modify", ALICE)
    assert opened.type == MODAL
    assert opened.elapsed < 3.0
    modal = opened.data
    assert modal["custom_id"] == f"signoff:form:modify:{submitted['id']}"
    assert len(modal["components"]) <= MODAL_LIMIT
    assert lite.discord.modals[-1] == modal  # the stand-in accepted it (limits checked)
    assert lite.discord.violations == []

    fields = inputs(modal)
    assert list(fields) == ["arg:amount", "arg:currency", "code", "reason"]
    assert fields["arg:amount"]["value"] == "420.5"  # a number stays a number
    assert json.loads(fields["arg:amount"]["value"]) == 420.5
    assert fields["arg:currency"]["value"] == '"EUR"'  # a string, quoted
    assert all(fields[f"arg:{n}"]["required"] is True for n in ("amount", "currency"))
    assert not {"arg:order", "arg:notify", "args"} & set(fields)  # not editable: no field
    labels = [top["label"] for top in modal["components"]]
    assert labels[:2] == ["amount", "currency"]
    assert [o["value"] for o in fields["code"]["options"]] == [
        "policy_match",
        "policy_violation",
        "missing_receipt",
        "suspected_fraud",
        "other",
    ]
    assert fields["reason"]["required"] is True  # an edit overrides what the AI proposed


async def test_five_editable_arguments_share_one_json_object_field(lite: DiscordWorld) -> None:
    case_id, card, modal = await open_edit(lite, case(proposal=WIDE))
    assert len(modal["components"]) <= MODAL_LIMIT
    assert lite.discord.violations == []
    fields = inputs(modal)
    assert list(fields) == ["args", "code", "reason"]
    assert modal["components"][0]["label"] == "Arguments (JSON)"
    together = json.loads(fields["args"]["value"])
    assert together == {k: WIDE["args"][k] for k in WIDE["editable"]}
    assert "owner" not in together

    # submitted with one value changed inside the object, it decides with all of them
    changed = {**together, "weekly": 750}
    answer = await send(
        lite,
        modal,
        ALICE,
        {"args": json.dumps(changed), "code": ["policy_match"], "reason": "Team offsite."},
        card,
    )
    assert "Recorded" in told(answer)
    found = await status_of(lite, case_id)
    assert found["status"] == "approved"
    [decision] = found["decisions"]
    assert decision["action"] == "modify"
    assert decision["args"] == {**WIDE["args"], "weekly": 750}


async def test_a_proposal_too_big_for_a_form_points_to_the_web_inbox(lite: DiscordWorld) -> None:
    big = {"name": "send_letter", "args": {"body": "x" * 5000, "to": "dana"}, "editable": ["body"]}
    submitted = await lite.api.submit(case(proposal=big))
    card = await lite.card_for(submitted["id"])
    answer = await lite.reviewers.click(card, "modify", ALICE)
    text = told(answer)
    assert "web inbox" in text
    assert f"/inbox/cases/{submitted['id']}" in text
    assert lite.discord.violations == []
    await nothing_written(lite, submitted["id"], card)


# -- the submission -------------------------------------------------------------------


async def test_submitting_a_changed_value_approves_with_the_merged_args(
    world: DiscordWorld,
) -> None:
    async with running(Receiver(SECRET)) as hook:
        case_id, card, modal = await open_edit(
            world, case(proposal=PROPOSAL, callback_url=hook.url), CAROL
        )
        answer = await send(
            world,
            modal,
            CAROL,
            {"arg:amount": "380", "code": ["policy_match"], "reason": REASON},
            card,
        )
        assert told(answer) == "Recorded: you approved this case with your changes."

        merged = {**PROPOSAL["args"], "amount": 380}
        found = await status_of(world, case_id)
        assert found["status"] == "approved"
        [decision] = found["decisions"]
        assert decision["action"] == "modify"
        assert decision["args"] == merged
        assert isinstance(decision["args"]["amount"], int)  # typed 380: a number
        assert decision["reason"] == REASON
        assert decision["reviewer"] == f"discord:{CAROL}"

        updated = await edited(world, card)
        assert verbs(updated) == []
        status = field(updated, "Status")
        assert f"✏️ **Approved with changes** by <@{CAROL}>" in status
        assert "✏️ **amount**: 420.5 → 380" in status
        assert updated.embeds[0]["color"] == 0x16A34A
        await world.discord.wait_for(lambda d: d.thread(card.id))
        assert world.discord.thread(card.id)[0].content.startswith(
            "Approved with changes by carol (policy\\_match)"
        )

        await wait_for(lambda: len(hook.received) >= 1)
        delivered = hook.received[0]
        assert delivered.signature_ok
        assert delivered.body["decision"]["action"] == "modify"
        assert delivered.body["decision"]["args"] == merged
    assert world.discord.violations == []


async def test_a_value_that_is_not_json_is_refused_and_nothing_is_written(
    lite: DiscordWorld,
) -> None:
    case_id, card, modal = await open_edit(lite, case(proposal=PROPOSAL))
    answer = await send(
        lite,
        modal,
        ALICE,
        {"arg:currency": "USD", "code": ["policy_match"], "reason": REASON},  # unquoted
        card,
    )
    text = told(answer)
    assert text.startswith("Not recorded")
    assert "currency is not JSON" in text
    again = answer.data["components"][0]["components"][0]
    assert (again["label"], again["custom_id"]) == ("Try again", f"signoff:modify:{case_id}")
    await nothing_written(lite, case_id, card)

    # reopened ("Try again" carries the card's Edit custom_id), the reasoning is kept
    reopened = await lite.reviewers.click(card, "modify", ALICE)
    assert reopened.type == MODAL
    assert inputs(reopened.data)["reason"]["value"] == REASON
    assert lite.discord.violations == []


async def test_the_json_object_field_must_hold_a_json_object(lite: DiscordWorld) -> None:
    case_id, card, modal = await open_edit(lite, case(proposal=WIDE))
    for typed, expected in (
        ('{"daily": 150', "The arguments are not JSON"),
        ("[150, 500]", "must be a JSON object"),
    ):
        answer = await send(
            lite, modal, ALICE, {"args": typed, "code": ["policy_match"], "reason": REASON}, card
        )
        assert expected in told(answer), told(answer)
    await nothing_written(lite, case_id, card)


async def test_an_edit_without_reasoning_is_refused(lite: DiscordWorld) -> None:
    case_id, card, modal = await open_edit(lite, case(proposal=PROPOSAL))
    # Discord's client enforces `required`: a forged submission that skips it is refused
    answer = await send(
        lite,
        modal,
        ALICE,
        {"arg:amount": "380", "code": ["policy_match"], "reason": ""},
        card,
        strict=False,
    )
    text = told(answer)
    assert text.startswith("Not recorded")
    assert "you are changing what the AI proposed" in text
    assert answer.flags & EPHEMERAL
    found = await nothing_written(lite, case_id, card)
    refused = [e for e in found["events"] if e["type"] == "refused"]
    assert [e["detail"]["code"] for e in refused] == ["reason_required"]


async def test_an_edit_that_changes_nothing_is_refused(lite: DiscordWorld) -> None:
    case_id, card, modal = await open_edit(lite, case(proposal=PROPOSAL))
    # every argument left as prefilled (or typed back to the same value)
    tries: list[dict[str, str | list[str]]] = [
        {"code": ["policy_match"], "reason": REASON},
        {"arg:amount": "420.50", "code": ["policy_match"], "reason": REASON},
    ]
    for values in tries:
        answer = await send(lite, modal, ALICE, values, card)
        assert "Nothing was changed" in told(answer)
    found = await nothing_written(lite, case_id, card)
    refused = [e for e in found["events"] if e["type"] == "refused"]
    assert [e["detail"]["code"] for e in refused] == ["args_unchanged", "args_unchanged"]


async def test_a_non_approver_can_neither_open_nor_submit_the_edit(lite: DiscordWorld) -> None:
    submitted = await lite.api.submit(case(proposal=PROPOSAL))
    case_id = submitted["id"]
    card = await lite.card_for(case_id)
    clicked = await lite.reviewers.click(card, "modify", BOB)
    assert clicked.type != MODAL
    assert "not an approver for the review lane" in told(clicked)

    # a forged submission (no modal was ever opened for Bob) is refused too
    forged = await lite.discord.interact(
        lite.discord.modal_submit(
            BOB,
            f"signoff:form:modify:{case_id}",
            {"arg:amount": "1", "code": ["policy_match"], "reason": "mine now"},
            CHANNELS["review"],
        )
    )
    assert "not an approver" in told(forged)
    found = await nothing_written(lite, case_id, card)
    refused = [e for e in found["events"] if e["type"] == "refused"]
    assert {e["actor"] for e in refused} == {f"discord:{BOB}"}
    assert [e["detail"]["code"] for e in refused] == ["not_an_approver", "not_an_approver"]
