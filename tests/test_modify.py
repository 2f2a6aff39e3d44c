"""Decisions with changes (`modify`): a case's `proposal`, edited by a reviewer and
approved with the edited arguments; refused, with nothing written, when the edit names
an unknown or non-editable argument, changes nothing, or comes on a quorum lane. The
callback, GET, the export and the override rate carry it. Runs on SQLite and
PostgreSQL."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from bot.analytics.export import export_decisions
from bot.analytics.report import Week, weekly
from bot.errors import DecisionRefused
from bot.protocols import Reviewer
from bot.runtime import Runtime
from tests.conftest import Api, case
from tests.test_service import refused, state, submit

ALICE = Reviewer("memory", "U0ALICE", "Alice")
OPS = [Reviewer("memory", f"U0OPS{i}", f"Ops {i}") for i in (1, 2)]
PROPOSAL = {
    "name": "issue_refund",
    "args": {"order": "A-1001", "amount": 420.0, "currency": "EUR", "notify": True},
    "editable": ["amount", "notify"],
}


@pytest.fixture
async def rt(make_runtime: Any, database_url: str) -> Runtime:
    runtime: Runtime = await make_runtime(database_url, workers=False)
    return runtime


async def test_a_proposal_adds_modify_to_the_default_actions(rt: Runtime) -> None:
    case_id = await submit(rt, proposal=PROPOSAL)
    body = orjson.loads((await state(rt, case_id))["case"]["body"])
    assert body["actions"] == ["approve", "reject", "request_info", "modify"]
    assert body["proposal"] == PROPOSAL
    # actions given explicitly are kept as given: no modify unless asked for
    explicit = await submit(rt, proposal=PROPOSAL, actions=["approve", "reject"])
    body = orjson.loads((await state(rt, explicit))["case"]["body"])
    assert body["actions"] == ["approve", "reject"]
    await refused(
        rt,
        explicit,
        "action_not_allowed",
        rt.service.decide(explicit, ALICE, "modify", "policy_match", "less", {"amount": 1.0}),
    )


async def test_modify_approves_with_the_full_edited_args(rt: Runtime) -> None:
    case_id = await submit(rt, proposal=PROPOSAL, callback_url="http://127.0.0.1:1/cb")
    result = await rt.service.decide(
        case_id, ALICE, "modify", "policy_match", "Only the receipt's amount", {"amount": 380.5}
    )
    assert (result.outcome, result.status) == ("decided", "approved")
    now = await state(rt, case_id)
    assert now["case"]["status"] == "approved"
    [made] = now["decisions"]
    assert made["action"] == "modify"
    assert made["overrode_ai"]  # an edit is an override of what the AI proposed
    edited = {**PROPOSAL["args"], "amount": 380.5}  # type: ignore[dict-item]
    assert orjson.loads(made["args"]) == edited
    decided = now["events"][-1]
    assert decided["type"] == "decided"
    assert orjson.loads(decided["detail"])["args"] == edited
    callback = orjson.loads(now["outbox"][-1]["payload"])
    assert callback["escalation"]["status"] == "approved"
    assert callback["decision"]["action"] == "modify"
    assert callback["decision"]["args"] == edited
    notes = [orjson.loads(o["payload"]) for o in now["outbox"] if o["kind"] == "notify"]
    assert any("Approved with changes" in str(n) for n in notes)


async def test_a_json_value_keeps_its_type(rt: Runtime) -> None:
    case_id = await submit(rt, proposal=PROPOSAL)
    await rt.service.decide(case_id, ALICE, "modify", "policy_match", "No mail", {"notify": False})
    [made] = (await state(rt, case_id))["decisions"]
    assert orjson.loads(made["args"])["notify"] is False
    assert orjson.loads(made["args"])["amount"] == 420.0


@pytest.mark.parametrize(
    ("edits", "code", "words"),
    [
        ({"amount": 1, "to": "x"}, "unknown_args", "no argument 'to'"),
        ({"order": "A-2"}, "args_not_editable", "'order' may not be edited"),
        ({"amount": 420.0}, "args_unchanged", "Nothing was changed"),
        ({}, "args_required", "Change at least one argument"),
        (None, "args_required", "Change at least one argument"),
        ({"amount": "x" * 20_001}, "args_too_large", "under 20000 bytes"),
    ],
)
async def test_a_bad_edit_is_refused_and_writes_nothing(
    rt: Runtime, edits: dict[str, Any] | None, code: str, words: str
) -> None:
    case_id = await submit(rt, proposal=PROPOSAL)
    error = await refused(
        rt,
        case_id,
        code,
        rt.service.decide(case_id, ALICE, "modify", "policy_match", "edit", edits),
    )
    assert words in error.message


async def test_an_unchanged_fixed_arg_may_be_sent_back(rt: Runtime) -> None:
    """Forms send every field back: a non-editable argument with its own value is fine."""
    case_id = await submit(rt, proposal=PROPOSAL)
    result = await rt.service.decide(
        case_id, ALICE, "modify", "policy_match", "less", {"order": "A-1001", "amount": 10.0}
    )
    assert result.status == "approved"


async def test_modify_needs_words(rt: Runtime) -> None:
    case_id = await submit(rt, proposal=PROPOSAL)
    error = await refused(
        rt,
        case_id,
        "reason_required",
        rt.service.decide(case_id, ALICE, "modify", "policy_match", None, {"amount": 1.0}),
    )
    assert "changing what the AI proposed" in error.message


async def test_args_only_with_modify(rt: Runtime) -> None:
    case_id = await submit(rt, proposal=PROPOSAL)
    await refused(
        rt,
        case_id,
        "args_not_allowed",
        rt.service.decide(case_id, ALICE, "approve", "policy_match", None, {"amount": 1.0}),
    )


async def test_self_approval_with_changes_is_refused(rt: Runtime) -> None:
    case_id = await submit(rt, proposal=PROPOSAL, requested_by="U0ALICE")
    await refused(
        rt,
        case_id,
        "self_approval",
        rt.service.decide(case_id, ALICE, "modify", "policy_match", "edit", {"amount": 1.0}),
    )


async def test_a_quorum_lane_cannot_modify(rt: Runtime) -> None:
    case_id = await submit(rt, proposal=PROPOSAL, flags=["data_leakage"])
    error = await refused(
        rt,
        case_id,
        "modify_needs_one_approver",
        rt.service.decide(case_id, OPS[0], "modify", "policy_match", "edit", {"amount": 1.0}),
    )
    assert "needs 2 approvers" in error.message


async def test_modify_without_a_proposal_is_not_an_action(rt: Runtime) -> None:
    case_id = await submit(rt)
    with pytest.raises(DecisionRefused) as info:
        await rt.service.decide(case_id, ALICE, "modify", "policy_match", "edit", {"a": 1})
    assert info.value.code == "action_not_allowed"


async def test_export_and_override_rate_count_modify(rt: Runtime) -> None:
    since = datetime(2000, 1, 1, tzinfo=UTC)
    edited = await submit(rt, proposal=PROPOSAL)
    await rt.service.decide(edited, ALICE, "modify", "policy_match", "less", {"amount": 1.5})
    plain = await submit(rt, proposal=PROPOSAL)
    await rt.service.decide(plain, ALICE, "approve", "policy_match")
    out = io.BytesIO()
    await export_decisions(rt.store, rt.policy, out, since=since)
    rows = {r["case_id"]: r for r in map(orjson.loads, out.getvalue().splitlines())}
    assert rows[edited]["human_action"] == "modify"
    assert rows[edited]["overrode_ai"] is True
    assert rows[edited]["human_args"] == {**PROPOSAL["args"], "amount": 1.5}  # type: ignore[dict-item]
    assert rows[plain]["human_args"] is None
    csv_out = io.BytesIO()
    await export_decisions(rt.store, rt.policy, csv_out, since=since, fmt="csv")
    assert '"{""order"":""A-1001"",""amount"":1.5' in csv_out.getvalue().decode()
    now = rt.clock.now()
    week = Week.starting(now.date() - timedelta(days=now.weekday()), "UTC")
    report = await weekly(rt.engine, rt.policy, week, now)
    assert (report.human_decisions, report.overrides) == (2, 1)


async def test_get_and_the_api_carry_args(api: Api) -> None:
    made = await api.submit(case(proposal=PROPOSAL))
    case_id = made["id"]
    await api.runtime.service.decide(
        case_id, ALICE, "modify", "policy_match", "smaller", {"amount": 99.0}
    )
    got = (await api.get(f"/v1/escalations/{case_id}")).json()
    assert got["status"] == "approved"
    [decision] = got["decisions"]
    assert decision["action"] == "modify"
    assert decision["args"] == {**PROPOSAL["args"], "amount": 99.0}  # type: ignore[dict-item]
    assert got["events"][-1]["detail"]["args"] == decision["args"]


async def test_the_edit_button_is_checked_before_the_form_opens(rt: Runtime) -> None:
    """What a click on Edit asks first (Slack's and Discord's forms open on it)."""
    case_id = await submit(rt, proposal=PROPOSAL)
    card = await rt.service.precheck(case_id, ALICE, "modify")
    assert card.proposal is not None
    own = await submit(rt, proposal=PROPOSAL, requested_by="U0ALICE")
    await refused(rt, own, "self_approval", rt.service.precheck(own, ALICE, "modify"))
    quorum = await submit(rt, proposal=PROPOSAL, flags=["data_leakage"])
    await refused(
        rt, quorum, "modify_needs_one_approver", rt.service.precheck(quorum, OPS[0], "modify")
    )
    plain = await submit(rt)
    await refused(rt, plain, "action_not_allowed", rt.service.precheck(plain, ALICE, "modify"))
