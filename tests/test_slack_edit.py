"""Editing a case's proposal on Slack, end to end against the Slack-compatible server: a
case with a `proposal` shows it on its card with an "Edit" button; the click opens a
modal (through `views.open`, checked against Slack's limits) holding an input per
editable argument, prefilled with its JSON; the submission approves the case with the
edited arguments (`modify`) and updates the card, or is answered with
`response_action: errors` next to the field at fault and nothing written."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest

from tests.conftest import SECRET, case, wait_for
from tests.receiver import RECEIVER_HOSTS, Receiver, running
from tests.slack_api import Message
from tests.slack_harness import SlackWorld, slack_world

PROPOSAL: dict[str, Any] = {
    "name": "issue_refund",
    "args": {"order": "A-1001", "amount": 420.0, "currency": "EUR", "notify": True},
    "editable": ["amount", "currency", "notify"],
}
ORDER_EDITABLE: dict[str, Any] = {**PROPOSAL, "editable": ["order", "amount"]}
REASON = "The receipt says 380."
CODES = ["policy_match", "policy_violation", "missing_receipt", "suspected_fraud", "other"]


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


async def status_of(world: SlackWorld, case_id: str) -> dict[str, Any]:
    response = await world.api.get(f"/v1/escalations/{case_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def edits(world: SlackWorld, card: Message) -> int:
    message = world.slack.message(card.channel, card.ts)
    assert message is not None
    return message.edits


def inputs(view: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A modal's input blocks by block_id."""
    return {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}


def words(blocks: list[dict[str, Any]] | None) -> str:
    """Every text of a message's blocks, one a line, as a reader sees it (not escaped)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("type") in ("mrkdwn", "plain_text"):
                found.append(str(value.get("text", "")))
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(blocks)
    return "\n".join(found)


def edit_button(message: Message) -> dict[str, Any] | None:
    found = [
        element
        for block in message.blocks or []
        if block["type"] == "actions"
        for element in block["elements"]
        if element.get("action_id") == "signoff_modify"
    ]
    assert len(found) <= 1, message.blocks
    return found[0] if found else None


async def open_edit(
    world: SlackWorld, body: dict[str, Any], user: str = "U0ALICE"
) -> tuple[str, Message, dict[str, Any]]:
    """Submit `body`, wait for its card, click Edit as `user`: the case, card and modal."""
    submitted = await world.api.submit(body)
    card = await world.card_for(submitted["id"])
    before = len(world.slack.of("views.open"))
    clicked = await world.reviewers.click(card, "modify", user)
    assert clicked.status_code == 200, clicked.text
    await world.slack.wait_for(lambda s: len(s.of("views.open")) > before)
    return submitted["id"], card, world.reviewers.opened_view()


async def submit_edit(
    world: SlackWorld,
    view: dict[str, Any],
    user: str,
    args: Mapping[str, str] | None = None,
    *,
    code: str | None = "policy_match",
    reason: str | None = REASON,
) -> httpx.Response:
    """Submit the edit modal as Slack does: every input block's value in the view's
    state, an argument not named in `args` keeping its prefilled value."""
    payload = world.reviewers.submission(view, user, code=code or "", reason=reason)
    values = payload["view"]["state"]["values"]
    if code is None:
        values["reason_code"]["code"]["selected_option"] = None
    typed = dict(args or {})
    for block_id, block in inputs(view).items():
        if not block_id.startswith("arg:"):
            continue
        name = block_id.removeprefix("arg:")
        value = typed.pop(name, block["element"].get("initial_value"))
        values[block_id] = {"json": {"type": "plain_text_input", "value": value}}
    for name, value in typed.items():  # a field the modal does not have: forged
        values[f"arg:{name}"] = {"json": {"type": "plain_text_input", "value": value}}
    return await world.reviewers.send(payload)


async def nothing_written(world: SlackWorld, case_id: str, card: Message) -> dict[str, Any]:
    found = await status_of(world, case_id)
    assert found["status"] == "pending"
    assert found["decisions"] == []
    assert [e["type"] for e in found["events"]].count("decided") == 0
    assert edits(world, card) == 0
    assert world.slack.of("chat.update") == []
    return found


def refusals(found: Mapping[str, Any]) -> list[str]:
    return [e["detail"]["code"] for e in found["events"] if e["type"] == "refused"]


# -- the card -------------------------------------------------------------------------


async def test_a_proposal_is_shown_on_the_card_with_an_edit_button(lite: SlackWorld) -> None:
    submitted = await lite.api.submit(case(proposal=PROPOSAL))
    card = await lite.card_for(submitted["id"])
    lines = words(card.blocks)
    assert "*Proposed:* `issue_refund`" in lines
    assert "• `amount` = 420.0 ✏️" in lines  # editable: marked
    assert '• `currency` = "EUR" ✏️' in lines
    assert "• `notify` = true ✏️" in lines
    assert '• `order` = "A-1001"' in lines
    assert '"A-1001" ✏️' not in lines  # not editable: no mark
    assert actions_of(card.blocks) == ["approve", "reject", "modify", "request_info", "claim"]
    edit = edit_button(card)
    assert edit is not None
    assert edit["text"]["text"] == "Edit"
    assert edit["value"] == submitted["id"]

    plain = await lite.api.submit(case(title="No proposal"))  # nothing to edit
    plain_card = await lite.card_for(plain["id"])
    assert edit_button(plain_card) is None
    assert "modify" not in actions_of(plain_card.blocks)
    assert "Proposed:" not in words(plain_card.blocks)

    # a proposal whose case does not allow modify: shown, not editable
    fixed = await lite.api.submit(
        case(title="Fixed", proposal=PROPOSAL, actions=["approve", "reject"])
    )
    fixed_card = await lite.card_for(fixed["id"])
    assert "*Proposed:* `issue_refund`" in words(fixed_card.blocks)
    assert "✏️" not in words(fixed_card.blocks)
    assert edit_button(fixed_card) is None
    assert lite.slack.violations == []


# -- the modal ------------------------------------------------------------------------


async def test_edit_opens_an_input_per_editable_argument_prefilled_with_json(
    lite: SlackWorld,
) -> None:
    case_id, _, view = await open_edit(lite, case(proposal=PROPOSAL))
    # the stand-in accepted the modal: it checks Slack's limits and answers with an id
    [opened] = lite.slack.of("views.open")
    assert opened.response is not None
    assert opened.response["ok"] is True, opened.response
    assert lite.slack.violations == []
    assert view["callback_id"] == "signoff_edit"
    assert view["type"] == "modal"
    assert json.loads(view["private_metadata"])["case"] == case_id

    fields = inputs(view)
    assert list(fields) == ["arg:amount", "arg:currency", "arg:notify", "reason_code", "reason"]
    prefilled = {k: v["element"].get("initial_value") for k, v in fields.items()}
    assert prefilled["arg:amount"] == "420.0"  # a number stays a number
    assert json.loads(prefilled["arg:amount"]) == 420.0
    assert prefilled["arg:currency"] == '"EUR"'  # a string, quoted
    assert prefilled["arg:notify"] == "true"  # a bool, as JSON
    assert "arg:order" not in fields  # not editable: no input
    assert [fields[f"arg:{n}"]["label"]["text"] for n in ("amount", "currency", "notify")] == [
        "amount",
        "currency",
        "notify",
    ]
    assert all(fields[k]["element"]["action_id"] == "json" for k in prefilled if "arg:" in k)
    options = fields["reason_code"]["element"]["options"]
    assert [o["value"] for o in options] == CODES
    assert fields["reason"].get("optional", False) is False  # an edit needs reasoning

    # a string argument is prefilled with its quotes
    _, _, other = await open_edit(lite, case(title="Order", proposal=ORDER_EDITABLE))
    assert inputs(other)["arg:order"]["element"]["initial_value"] == '"A-1001"'
    assert inputs(other)["arg:amount"]["element"]["initial_value"] == "420.0"
    assert "arg:currency" not in inputs(other)
    assert lite.slack.violations == []


async def test_more_than_twenty_editable_arguments_point_to_the_web_inbox(
    lite: SlackWorld,
) -> None:
    wide = {"name": "set_limits", "args": {f"limit_{n:02d}": n for n in range(21)}}
    submitted = await lite.api.submit(case(proposal=wide))  # editable empty: all of them
    card = await lite.card_for(submitted["id"])
    await lite.reviewers.click(card, "modify", "U0ALICE")
    await lite.slack.wait_for(lambda s: s.of("chat.postEphemeral"))
    told = lite.slack.of("chat.postEphemeral")[0].params
    assert told["user"] == "U0ALICE"
    assert "web inbox" in told["text"]
    assert f"/inbox/cases/{submitted['id']}" in told["text"]
    assert lite.slack.of("views.open") == []

    twenty = {"name": "set_limits", "args": {f"limit_{n:02d}": n for n in range(20)}}
    _, _, view = await open_edit(lite, case(title="Twenty", proposal=twenty))
    assert len([k for k in inputs(view) if k.startswith("arg:")]) == 20
    assert lite.slack.violations == []


# -- the submission -------------------------------------------------------------------


async def test_submitting_a_changed_amount_approves_with_the_merged_args(
    world: SlackWorld,
) -> None:
    async with running(Receiver(SECRET)) as hook:
        case_id, card, view = await open_edit(
            world, case(proposal=PROPOSAL, callback_url=hook.url), "U0CAROL"
        )
        answer = await submit_edit(world, view, "U0CAROL", {"amount": "380"})
        assert answer.status_code == 200
        assert answer.text == ""  # an empty ack closes the modal

        merged = {**PROPOSAL["args"], "amount": 380}
        found = await status_of(world, case_id)
        assert found["status"] == "approved"
        [decision] = found["decisions"]
        assert decision["action"] == "modify"
        assert decision["args"] == merged
        assert isinstance(decision["args"]["amount"], int)  # typed 380: a number
        assert decision["reason"] == REASON
        assert decision["reason_code"] == "policy_match"
        assert decision["reviewer"] == "slack:U0CAROL"

        await world.slack.wait_for(lambda _: edits(world, card) >= 1)
        updated = world.slack.message(card.channel, card.ts)
        assert updated is not None
        assert [c.params["ts"] for c in world.slack.of("chat.update")] == [card.ts]
        assert actions_of(updated.blocks) == []
        shown = words(updated.blocks)
        assert "Approved with changes* by <@U0CAROL>" in shown
        assert "✏️ `amount`: 420.0 → 380" in shown
        await world.slack.wait_for(lambda s: s.thread(card.channel, card.ts))
        reply = world.slack.thread(card.channel, card.ts)[0]
        assert "Approved with changes by carol (policy_match)" in (reply.text or "")

        await wait_for(lambda: len(hook.received) >= 1)
        delivered = hook.received[0]
        assert delivered.signature_ok
        assert delivered.body["decision"]["action"] == "modify"
        assert delivered.body["decision"]["args"] == merged
    assert world.slack.violations == []


async def test_a_value_that_is_not_json_is_named_and_nothing_is_written(
    lite: SlackWorld,
) -> None:
    case_id, card, view = await open_edit(lite, case(proposal=PROPOSAL))
    answer = await submit_edit(lite, view, "U0ALICE", {"currency": "USD"})  # unquoted
    assert answer.status_code == 200
    errors = answer.json()
    assert errors["response_action"] == "errors"
    assert list(errors["errors"]) == ["arg:currency"]
    assert "not JSON" in errors["errors"]["arg:currency"]
    assert await lite.api.count("decisions") == 0
    await nothing_written(lite, case_id, card)

    # the same modal, corrected, is accepted
    fixed = await submit_edit(lite, view, "U0ALICE", {"currency": '"USD"'})
    assert fixed.text == ""
    found = await status_of(lite, case_id)
    assert found["status"] == "approved"
    assert found["decisions"][0]["args"] == {**PROPOSAL["args"], "currency": "USD"}


async def test_an_edit_without_reasoning_is_refused_on_the_reason_block(
    lite: SlackWorld,
) -> None:
    case_id, card, view = await open_edit(lite, case(proposal=PROPOSAL))
    for reason in (None, "   "):
        answer = await submit_edit(lite, view, "U0ALICE", {"amount": "380"}, reason=reason)
        errors = answer.json()
        assert errors["response_action"] == "errors"
        assert list(errors["errors"]) == ["reason"]
        assert "you are changing what the AI proposed" in errors["errors"]["reason"]
    found = await nothing_written(lite, case_id, card)
    assert refusals(found) == ["reason_required", "reason_required"]

    missing = await submit_edit(lite, view, "U0ALICE", {"amount": "380"}, code=None)
    assert missing.json()["response_action"] == "errors"
    assert missing.json()["errors"]["reason_code"].startswith("Pick a reason code")
    await nothing_written(lite, case_id, card)


async def test_an_edit_that_changes_nothing_is_refused_on_the_form(lite: SlackWorld) -> None:
    case_id, card, view = await open_edit(lite, case(proposal=PROPOSAL))
    # every argument left as prefilled, or typed back to the same value
    for args in ({}, {"amount": "420.00", "notify": " true "}):
        answer = await submit_edit(lite, view, "U0ALICE", args)
        errors = answer.json()
        assert errors["response_action"] == "errors", errors
        [(block, message)] = errors["errors"].items()
        assert block in inputs(view)
        assert block.startswith("arg:")
        assert "Nothing was changed" in message
    found = await nothing_written(lite, case_id, card)
    assert refusals(found) == ["args_unchanged", "args_unchanged"]


async def test_a_non_approver_can_neither_open_nor_submit_the_edit(lite: SlackWorld) -> None:
    submitted = await lite.api.submit(case(proposal=PROPOSAL))
    case_id = submitted["id"]
    card = await lite.card_for(case_id)
    clicked = await lite.reviewers.click(card, "modify", "U0BOB")
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
        "blocks": [
            {
                "type": "input",
                "block_id": "arg:amount",
                "label": {"type": "plain_text", "text": "amount"},
                "element": {"type": "plain_text_input", "action_id": "json"},
            }
        ],
        "callback_id": "signoff_edit",
        "private_metadata": json.dumps({"case": case_id, "action": "modify"}),
        "title": {"type": "plain_text", "text": "Edit and approve"},
    }
    forged = await submit_edit(lite, view, "U0BOB", {"amount": "1"}, reason="mine now")
    answer = forged.json()
    assert answer["response_action"] == "update"
    assert "not an approver" in json.dumps(answer["view"])

    found = await nothing_written(lite, case_id, card)
    refused = [e for e in found["events"] if e["type"] == "refused"]
    assert {e["actor"] for e in refused} == {"slack:U0BOB"}
    assert refusals(found) == ["not_an_approver", "not_an_approver"]
    assert lite.slack.violations == []


async def test_the_requester_cannot_edit_and_approve_their_own_case(lite: SlackWorld) -> None:
    # Dana is in S0REVIEWERS, and her Slack e-mail requested the case
    submitted = await lite.api.submit(case(proposal=PROPOSAL, requested_by="dana@example.com"))
    card = await lite.card_for(submitted["id"])
    await lite.reviewers.click(card, "modify", "U0DANA")
    await lite.slack.wait_for(lambda s: s.of("chat.postEphemeral"))
    assert "cannot approve it yourself" in lite.slack.of("chat.postEphemeral")[0].params["text"]
    assert lite.slack.of("views.open") == []
    found = await nothing_written(lite, submitted["id"], card)
    assert refusals(found) == ["self_approval"]
