"""The policy file: loading, routing, explaining, and errors that name the line and field."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from bot.errors import PolicyError
from bot.policy import LoadedPolicy, explain, load_policy, parse_policy, route
from bot.schemas import CaseIn
from policies import DEFAULT_POLICY
from policies.schema import DEFAULT_REASON_CODES
from tests.conftest import CASE

HERE = Path(__file__).parent
ROOT = HERE.parent
DESIGN_EXAMPLE = HERE / "policies" / "design_example.yaml"
EXAMPLES = ROOT / "examples"
CONF = "recommendation.confidence"
STOP_FLAGS = [
    "disallowed_content",
    "hallucination_suspected",
    "data_leakage",
    "contradictory_evidence",
]


def make_case(**changes: Any) -> CaseIn:
    """conftest's CASE with changes; `risk.amount=...` style keys reach one level down, and
    the value `...` removes the field."""
    body = copy.deepcopy(CASE)
    for key, value in changes.items():
        target = body
        if "." in key:
            outer, key = key.split(".", 1)
            target = body.setdefault(outer, {})
        if value is ...:
            target.pop(key, None)
        else:
            target[key] = value
    return CaseIn.model_validate(body)


def example(name: str) -> CaseIn:
    return CaseIn.model_validate_json((EXAMPLES / name).read_bytes())


@pytest.fixture(scope="module")
def design() -> LoadedPolicy:
    return load_policy(DESIGN_EXAMPLE)


@pytest.fixture(scope="module")
def shipped() -> LoadedPolicy:
    return load_policy(DEFAULT_POLICY)


# --- The DESIGN.md example -------------------------------------------------------------


def test_design_example_loads_as_its_comments_say(design: LoadedPolicy) -> None:
    p = design.policy
    assert list(p.lanes) == ["review", "expert", "stop_the_line"]
    review, expert, stop = p.lanes["review"], p.lanes["expert"], p.lanes["stop_the_line"]
    assert review.sla == 4 * 3600  # "durations: 90s, 15m, 4h, 2d"
    assert review.reminders == [0.5, 0.8]  # "points of the SLA"
    assert review.channels == {"slack": "C0REVIEW", "discord": "112233445566778899"}
    assert review.quorum == 1
    assert review.on_timeout == "reject"
    assert expert.sla == 24 * 3600
    assert expert.escalate_to == "stop_the_line"  # "where a breached SLA goes"
    assert stop.page == {"slack": "S0ONCALL"}
    assert stop.ack_within == 5 * 60
    assert stop.sla == 30 * 60
    assert stop.quorum == 2
    assert stop.on_timeout == "reject"
    assert len(p.rules) == 6
    assert p.rules[-1].lane == "auto"
    assert p.rules[-1].when is None
    assert p.rules[-1].audit_sample == pytest.approx(0.05)
    assert p.blind_review == pytest.approx(0.10)
    assert p.summaries is not None
    assert p.summaries.channels == {"slack": "C0MANAGERS"}
    assert p.summaries.weekly == "mon 09:00 Europe/Berlin"
    assert design.path == str(DESIGN_EXAMPLE)
    assert re.fullmatch(r"[0-9a-f]{16}", design.version)


@pytest.mark.parametrize("flag", STOP_FLAGS)
def test_design_example_stop_flags_stop_the_line(design: LoadedPolicy, flag: str) -> None:
    routing = route(design, make_case(flags=["something_else", flag]))
    assert routing.lane == "stop_the_line"
    assert routing.rule_index == 0
    assert routing.rule_label == "rule 1"
    assert routing.audit_sample == 0


def test_design_example_first_match_wins(design: LoadedPolicy) -> None:
    # Flagged, low confidence, a large irreversible expense: rules 1-5 all hold; rule 1 wins.
    flagged = make_case(
        flags=["data_leakage"],
        **{"recommendation.confidence": 0.2, "risk.amount": 50_000.0, "risk.reversible": False},
    )
    assert route(design, flagged).lane == "stop_the_line"
    # Without the flag, rule 2 (low confidence) wins over rule 3 (large expense).
    unflagged = make_case(**{"recommendation.confidence": 0.2, "risk.amount": 50_000.0})
    routing = route(design, unflagged)
    assert (routing.lane, routing.rule_index) == ("expert", 1)


def test_design_example_other_flags_do_not_stop_the_line(design: LoadedPolicy) -> None:
    routing = route(
        design, make_case(flags=["pii_detected"], **{"recommendation.confidence": 0.95})
    )
    assert routing.lane == "auto"


@pytest.mark.parametrize(
    ("changes", "lane", "rule_index"),
    [
        ({"recommendation.confidence": 0.69}, "expert", 1),
        ({"recommendation.confidence": 0.0}, "expert", 1),
        ({"recommendation.confidence": 0.70}, "review", 3),  # not below 0.70
        ({"recommendation.confidence": 0.95, "risk.amount": 10_000.0}, "expert", 2),
        ({"recommendation.confidence": 0.95, "risk.amount": 250_000.0}, "expert", 2),
        ({"recommendation.confidence": 0.95, "risk.amount": 9_999.99}, "auto", 5),
        ({"recommendation.confidence": 0.95, "risk.amount": ...}, "auto", 5),
        ({"kind": "refund", "recommendation.confidence": 0.95, "risk.amount": 20_000.0}, "auto", 5),
        ({"recommendation.confidence": 0.89}, "review", 3),
        ({"recommendation.confidence": 0.82}, "review", 3),
        ({"recommendation.confidence": 0.90}, "auto", 5),  # not below 0.90
        ({"recommendation.confidence": 0.95, "risk.reversible": False}, "review", 4),
        ({"recommendation.confidence": 0.95, "risk.reversible": ...}, "auto", 5),
        ({"recommendation.confidence": 0.95, "risk.reversible": True}, "auto", 5),
        ({"recommendation.confidence": 1.0}, "auto", 5),
    ],
)
def test_design_example_routes(
    design: LoadedPolicy, changes: dict[str, Any], lane: str, rule_index: int
) -> None:
    routing = route(design, make_case(**changes))
    assert (routing.lane, routing.rule_index) == (lane, rule_index)
    assert routing.rule_label == f"rule {rule_index + 1}"
    assert routing.audit_sample == pytest.approx(0.05 if lane == "auto" else 0.0)


def test_design_example_and_test_policy_route_alike(design: LoadedPolicy) -> None:
    # tests/policies/test.yaml is the same policy on the in-memory platform.
    test_policy = load_policy(HERE / "policies" / "test.yaml")
    cases = [make_case(), make_case(flags=["data_leakage"])] + [
        example(path.name) for path in sorted(EXAMPLES.glob("*.json"))
    ]
    for case in cases:
        assert route(test_policy, case) == route(design, case)


# --- The shipped policy ----------------------------------------------------------------


def test_shipped_policy_loads(shipped: LoadedPolicy) -> None:
    p = shipped.policy
    assert set(p.lanes) == {"review", "expert", "stop_the_line"}
    assert p.rules[0].when is not None
    assert p.rules[0].when.flags_any == STOP_FLAGS  # the same flag names as DESIGN.md
    assert p.rules[0].lane == "stop_the_line"
    assert p.rules[-1].when is None
    assert p.rules[-1].lane == "auto"
    assert p.rules[-1].audit_sample == pytest.approx(0.05)
    assert p.lanes["stop_the_line"].quorum == 2
    assert p.lanes["stop_the_line"].page["slack"] == "S0ONCALL"
    assert shipped.version == load_policy(None).version  # the default when no path is given


@pytest.mark.parametrize(
    ("file", "lane", "label"),
    [
        ("agent_email.json", "stop_the_line", "stop the line"),  # hallucination_suspected
        ("expense.json", "expert", "large expense"),  # EUR 14,800 at 0.84
        ("moderation.json", "expert", "low confidence"),  # 0.66
        ("refund.json", "review", "large refund"),  # $1,240 at 0.91
    ],
)
def test_shipped_policy_routes_the_examples(
    shipped: LoadedPolicy, file: str, lane: str, label: str
) -> None:
    routing = route(shipped, example(file))
    assert (routing.lane, routing.rule_label) == (lane, label)
    assert shipped.policy.rules[routing.rule_index].name == label


def test_shipped_policy_covers_every_example() -> None:
    # A new example file must get a row in the table above.
    assert sorted(p.name for p in EXAMPLES.glob("*.json")) == [
        "agent_email.json",
        "expense.json",
        "moderation.json",
        "refund.json",
    ]


@pytest.mark.parametrize(
    ("changes", "label", "lane"),
    [
        ({"risk.level": "critical", CONF: 0.99}, "high consequence", "expert"),
        ({"kind": "refund", "risk.amount": 500.0, CONF: 0.99}, "large refund", "review"),
        ({"kind": "refund", "risk.amount": 499.0, CONF: 0.99}, "routine", "auto"),
        ({CONF: 0.85}, "medium confidence", "review"),
        ({"risk.reversible": False, CONF: 0.99}, "irreversible", "review"),
    ],
)
def test_shipped_policy_rule_names_say_what_they_do(
    shipped: LoadedPolicy, changes: dict[str, Any], label: str, lane: str
) -> None:
    routing = route(shipped, make_case(**changes))
    assert (routing.rule_label, routing.lane) == (label, lane)


# --- Every condition kind --------------------------------------------------------------

ONE_RULE = """\
lanes:
  review:
    approvers: {slack: [U0ALICE]}
rules:
  - if: %s
    lane: review
  - lane: auto
"""


def lane_for(condition: str, case: CaseIn) -> str:
    return route(parse_policy((ONE_RULE % condition).encode()), case).lane


CONDITIONS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("{kind: refund}", {"kind": "refund"}, {"kind": "expense_approval"}),
    ("{kind: [refund, expense_approval]}", {"kind": "expense_approval"}, {"kind": "moderation"}),
    ("{source: billing}", {"source": "billing"}, {}),
    ("{source: [billing, default]}", {}, {"source": "shop"}),
    ("{confidence_below: 0.8}", {CONF: 0.79}, {CONF: 0.8}),
    ("{confidence_at_least: 0.8}", {CONF: 0.8}, {CONF: 0.79}),
    (
        "{margin_below: 0.2}",
        {
            "recommendation.confidence": 0.55,
            "recommendation.alternatives": [{"action": "reject", "confidence": 0.45}],
        },
        {
            "recommendation.confidence": 0.82,
            "recommendation.alternatives": [{"action": "reject", "confidence": 0.18}],
        },
    ),
    (
        "{margin_below: 0.2}",
        {
            "recommendation.confidence": 0.5,
            "recommendation.alternatives": [
                {"action": "a", "confidence": 0.1},
                {"action": "b", "confidence": 0.4},
            ],
        },
        {"recommendation.confidence": 0.5, "recommendation.alternatives": []},
    ),
    (
        "{margin_below: 0.2}",
        {
            "recommendation.confidence": 0.5,
            "recommendation.alternatives": [{"action": "reject", "confidence": 0.35}],
        },
        {"recommendation.confidence": 0.5, "recommendation.alternatives": [{"action": "reject"}]},
    ),
    # The boundary: a margin of exactly 0.2 (0.6 - 0.4, in floating point) is not below 0.2.
    (
        "{margin_below: 0.2}",
        {
            "recommendation.confidence": 0.6,
            "recommendation.alternatives": [{"action": "reject", "confidence": 0.41}],
        },
        {
            "recommendation.confidence": 0.6,
            "recommendation.alternatives": [{"action": "reject", "confidence": 0.4}],
        },
    ),
    ("{amount_at_least: 1000}", {"risk.amount": 1000.0}, {"risk.amount": 999.99}),
    ("{amount_at_least: 1000}", {"risk.amount": 1e9}, {"risk.amount": ...}),
    ("{amount_at_least: 0}", {"risk.amount": 0.0}, {"risk.amount": ...}),
    ("{amount_below: 1000}", {"risk.amount": 999.0}, {"risk.amount": 1000.0}),
    ("{amount_below: 1000}", {"risk.amount": 0.0}, {"risk.amount": ...}),
    ("{currency: EUR}", {"risk.currency": "EUR"}, {"risk.currency": "USD"}),
    ("{currency: [USD, GBP]}", {"risk.currency": "GBP"}, {"risk.currency": ...}),
    ("{reversible: false}", {"risk.reversible": False}, {"risk.reversible": True}),
    ("{reversible: false}", {"risk.reversible": False}, {"risk.reversible": ...}),
    ("{reversible: true}", {"risk.reversible": True}, {"risk.reversible": ...}),
    ("{risk_level: [high, critical]}", {"risk.level": "critical"}, {"risk.level": "medium"}),
    ("{risk_level: high}", {"risk.level": "high"}, {"risk.level": ...}),
    ("{customer_tier: gold}", {"risk.customer_tier": "gold"}, {"risk.customer_tier": "silver"}),
    (
        "{customer_tier: [gold, platinum]}",
        {"risk.customer_tier": "platinum"},
        {"risk.customer_tier": ...},
    ),
    (
        "{compliance_any: [gdpr, hipaa]}",
        {"risk.compliance": ["sox", "hipaa"]},
        {"risk.compliance": ["sox"]},
    ),
    ("{compliance_any: gdpr}", {"risk.compliance": ["gdpr"]}, {"risk.compliance": []}),
    ("{flags_any: [a, b]}", {"flags": ["c", "b"]}, {"flags": ["c"]}),
    ("{flags_any: a}", {"flags": ["a"]}, {"flags": []}),
    ("{flags_all: [a, b]}", {"flags": ["b", "c", "a"]}, {"flags": ["a", "c"]}),
    ("{flags_all: a}", {"flags": ["a"]}, {}),
    # Every condition of a rule must hold.
    ("{kind: expense_approval, amount_at_least: 400, currency: EUR}", {}, {"risk.currency": "USD"}),
]


@pytest.mark.parametrize(("condition", "matching", "other"), CONDITIONS)
def test_condition(condition: str, matching: dict[str, Any], other: dict[str, Any]) -> None:
    assert lane_for(condition, make_case(**matching)) == "review"
    assert lane_for(condition, make_case(**other)) == "auto"


def test_every_condition_kind_is_tested() -> None:
    from policies.schema import Condition

    tested = set()
    for condition, _, _ in CONDITIONS:
        tested |= set(re.findall(r"(\w+):", condition))
    assert set(Condition.model_fields) <= tested


@pytest.mark.parametrize(
    "condition",
    [
        "{amount_at_least: 0}",
        "{amount_below: 1e15}",
        "{currency: EUR}",
        "{customer_tier: x}",
        "{risk_level: [low, medium, high, critical]}",
        "{reversible: true}",
        "{reversible: false}",
    ],
)
def test_missing_risk_values_never_match(condition: str) -> None:
    bare = make_case(risk={})
    assert lane_for(condition, bare) == "auto"
    assert explain(parse_policy((ONE_RULE % condition).encode()), bare)[0].matched is False


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("{}", "an empty `if` matches everything"),
        ("{confidence_below: 1.5}", "confidence_below: must be at most 1 (got 1.5)"),
        ("{amount_at_least: -1}", "amount_at_least: must be at least 0 (got -1)"),
        (
            "{risk_level: [severe]}",
            "must be 'low', 'medium', 'high' or 'critical' (got 'severe')",
        ),
        ("{flags_any: []}", "flags_any: must have at least 1 item (got 0)"),
        (
            "{kinds: refund}",
            "kinds: unknown field (did you mean 'kind'?); the fields here are kind, source",
        ),
        ("{reversible: maybe}", "reversible: must be true or false (got 'maybe')"),
    ],
)
def test_bad_conditions_name_the_field(condition: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy((ONE_RULE % condition).encode(), "one.yaml")
    assert len(caught.value.problems) == 1
    problem = caught.value.problems[0]
    assert problem.startswith("one.yaml:5: rules[0].if")
    assert message in problem


# --- explain() -------------------------------------------------------------------------


def test_explain_says_why_each_earlier_rule_did_not_match(design: LoadedPolicy) -> None:
    case = make_case(
        flags=["pii_detected"],
        **{"recommendation.confidence": 0.95, "risk.amount": 420.0, "risk.reversible": True},
    )
    verdicts = explain(design, case)
    assert [v.index for v in verdicts] == [0, 1, 2, 3, 4, 5]
    assert [v.matched for v in verdicts] == [False] * 5 + [True]
    assert [v.lane for v in verdicts] == [
        "stop_the_line",
        "expert",
        "expert",
        "review",
        "review",
        "auto",
    ]
    assert [v.label for v in verdicts] == [f"rule {n}" for n in range(1, 7)]
    flags, low, large, medium, irreversible, last = (v.reasons for v in verdicts)
    assert len(flags) == 1
    assert "none of the flags" in flags[0]
    assert "disallowed_content" in flags[0]
    assert low == ["confidence 0.95 is not below 0.70"]
    # Only the condition that failed is given: the kind did match.
    assert large == ["amount 420.0 is not at least 10000"]
    assert medium == ["confidence 0.95 is not below 0.90"]
    assert len(irreversible) == 1
    assert "True" in irreversible[0]
    assert "False" in irreversible[0]
    assert last == ["no conditions"]
    assert route(design, case).rule_index == verdicts[-1].index


def test_explain_gives_every_failed_condition_and_the_reasons_of_the_match(
    design: LoadedPolicy,
) -> None:
    case = make_case(kind="refund", **{"recommendation.confidence": 0.6, "risk.amount": ...})
    verdicts = explain(design, case)
    assert len(verdicts) == 2  # stops at the first match
    assert verdicts[1].matched
    assert verdicts[1].reasons == ["confidence 0.60 is below 0.70"]

    case = make_case(kind="refund", **{"recommendation.confidence": 0.95, "risk.amount": ...})
    large = explain(design, case)[2]
    assert not large.matched
    assert len(large.reasons) == 2
    assert "'refund'" in large.reasons[0]
    assert "expense_approval" in large.reasons[0]
    assert "not" in large.reasons[0]
    assert "None" in large.reasons[1]
    assert "10000" in large.reasons[1]


def test_explain_on_a_flagged_case_names_the_flag(design: LoadedPolicy) -> None:
    verdicts = explain(design, make_case(flags=["data_leakage", "x"]))
    assert len(verdicts) == 1
    assert verdicts[0].matched
    assert verdicts[0].lane == "stop_the_line"
    assert verdicts[0].reasons == ["flags ['data_leakage'] raised"]


def test_explain_uses_rule_names(shipped: LoadedPolicy) -> None:
    verdicts = explain(shipped, example("refund.json"))
    assert [v.label for v in verdicts] == [
        "stop the line",
        "low confidence",
        "high consequence",
        "large expense",
        "large refund",
    ]
    assert verdicts[2].reasons == ["risk level medium vs ['high', 'critical']"]
    assert verdicts[-1].reasons == [
        "kind 'refund' is in ['refund']",
        "amount 1240.0 is at least 500",
    ]


@pytest.mark.parametrize(
    ("condition", "changes", "fragments"),
    [
        ("{source: billing}", {}, ["'default'", "billing"]),
        ("{confidence_at_least: 0.9}", {"recommendation.confidence": 0.5}, ["0.50", "0.90"]),
        ("{margin_below: 0.1}", {}, ["0.64", "0.10"]),
        ("{margin_below: 0.1}", {"recommendation.alternatives": []}, ["no scored runner-up"]),
        ("{amount_below: 100}", {}, ["420.0", "100"]),
        ("{currency: USD}", {}, ["EUR", "USD"]),
        ("{risk_level: high}", {}, ["low", "high"]),
        ("{customer_tier: gold}", {}, ["None", "gold"]),
        ("{compliance_any: [gdpr]}", {}, ["none", "gdpr"]),
        ("{flags_all: [a, b]}", {"flags": ["a"]}, ["['b'] not raised"]),
    ],
)
def test_explain_reasons_mention_the_values(
    condition: str, changes: dict[str, Any], fragments: list[str]
) -> None:
    verdict = explain(parse_policy((ONE_RULE % condition).encode()), make_case(**changes))[0]
    assert not verdict.matched
    assert len(verdict.reasons) == 1
    for fragment in fragments:
        assert fragment in verdict.reasons[0]


# --- Errors name the line and the field ------------------------------------------------

BASE = """\
lanes:
  review:
    channels: {slack: C0REVIEW}
    sla: 4h
    reminders: [50%, 80%]
    approvers: {slack: [U0ALICE]}
    quorum: 1
  oncall:
    page: {slack: S0ONCALL}
    quorum: 2
rules:
  - if: {confidence_below: 0.9}
    lane: review
  - lane: auto
    audit_sample: 0.05
"""


def with_line(number: int, text: str) -> str:
    lines = BASE.splitlines()
    lines[number - 1] = text
    return "\n".join(lines) + "\n"


def test_base_policy_is_valid() -> None:
    loaded = parse_policy(BASE.encode())
    assert list(loaded.policy.lanes) == ["review", "oncall"]


BROKEN: list[tuple[str, str, int, str, str]] = [
    # (id, file text, line, field, a piece of the message)
    (
        "bad duration",
        with_line(4, "    sla: 4 hours"),
        4,
        "lanes.review.sla",
        "'4 hours' is not a duration",
    ),
    ("zero duration", with_line(4, "    sla: 0s"), 4, "lanes.review.sla", "longer than zero"),
    (
        "reminder over 100%",
        with_line(5, "    reminders: [50%, 150%]"),
        5,
        "lanes.review.reminders[1]",
        "'150%'",
    ),
    (
        "block reminders",
        with_line(5, "    reminders:\n      - 50%\n      - 100%"),
        7,
        "lanes.review.reminders[1]",
        "'100%'",
    ),
    (
        "unknown lane key",
        with_line(7, "    qourum: 1"),
        7,
        "lanes.review.qourum",
        "unknown field (did you mean 'quorum'?); the fields here are channels, sla, reminders",
    ),
    (
        "unknown top-level key",
        BASE + "blind_reveiw: 0.1\n",
        16,
        "blind_reveiw",
        "unknown field (did you mean 'blind_review'?); the fields here are lanes, kinds",
    ),
    (
        "rule to an undefined lane",
        with_line(13, "    lane: reveiw"),
        13,
        "rules[0].lane",
        "lane 'reveiw', which is not defined",
    ),
    (
        "last rule with an if",
        with_line(15, "    if: {kind: refund}"),
        15,
        "rules[1].if",
        "the last rule must have no `if`",
    ),
    (
        "catch-all before the end",
        with_line(12, "  - name: everything"),
        12,
        "rules[0]",
        "rules after it can never match",
    ),
    ("empty if", with_line(12, "  - if:"), 12, "rules[0]", "`if` is empty"),
    (
        "escalate_to an unknown lane",
        with_line(7, "    escalate_to: experts"),
        7,
        "lanes.review.escalate_to",
        "escalates to 'experts', which is not a human lane",
    ),
    (
        "escalate_to a built-in lane",
        with_line(7, "    escalate_to: auto"),
        7,
        "lanes.review.escalate_to",
        "'auto', which is not a human lane",
    ),
    (
        "escalate_to itself",
        with_line(7, "    escalate_to: review"),
        7,
        "lanes.review.escalate_to",
        "escalates to itself",
    ),
    (
        "quorum 0",
        with_line(10, "    quorum: 0"),
        10,
        "lanes.oncall.quorum",
        "must be at least 1 (got 0)",
    ),
    ("duplicate key", with_line(7, "    sla: 2h"), 7, "lanes.review.sla", "key appears twice"),
    ("duplicate lane", with_line(8, "  review:"), 8, "lanes.review", "key appears twice"),
    ("lane named auto", with_line(8, "  auto:"), 8, "lanes.auto", "built in"),
    ("lane named block", with_line(8, "  block:"), 8, "lanes.block", "built in"),
    (
        "no approvers and no page",
        with_line(9, "    sla: 30m"),
        8,
        "lanes.oncall",
        "no approvers and pages nobody",
    ),
    (
        "empty approver list",
        with_line(6, "    approvers: {slack: []}"),
        2,
        "lanes.review",
        "no approvers and pages nobody",
    ),
    (
        "reminders without an sla",
        with_line(4, "    # no sla"),
        5,
        "lanes.review.reminders",
        "has reminders but no sla",
    ),
    (
        "ack_within without a page",
        with_line(7, "    ack_within: 5m"),
        7,
        "lanes.review.ack_within",
        "asks for an acknowledgement but pages nobody",
    ),
    (
        "audit_sample 1.5",
        with_line(15, "    audit_sample: 1.5"),
        15,
        "rules[1].audit_sample",
        "must be at most 1 (got 1.5)",
    ),
    (
        "blind_review -0.1",
        BASE + "blind_review: -0.1\n",
        16,
        "blind_review",
        "must be at least 0 (got -0.1)",
    ),
    (
        "bad lane name",
        with_line(8, "  On-Call:"),
        8,
        "lanes",
        "key 'On-Call': must be 1 to 64 lower-case letters, digits or _, starting with a letter",
    ),
    (
        "on_timeout",
        with_line(7, "    on_timeout: ignore"),
        7,
        "lanes.review.on_timeout",
        "'reject' or 'approve'",
    ),
    ("audit_lane", BASE + "audit_lane: nowhere\n", 16, "audit_lane", "not a human lane"),
    (
        "daily digest at 25:00",
        BASE + "summaries:\n  daily: tue 25:00\n",
        17,
        "summaries.daily",
        "'tue 25:00' is not a schedule: write `[days ]HH:MM[ Time/Zone]`",
    ),
    (
        "weekly summary in no time zone",
        BASE + "summaries:\n  weekly: mon 09:00 Mars/Base\n",
        17,
        "summaries.weekly",
        "'Mars/Base' is not a time zone",
    ),
    ("no rules", "\n".join(BASE.splitlines()[:10]) + "\n", 1, "rules", "is required"),
    (
        "discord channel by name",
        with_line(3, "    channels: {slack: C0REVIEW, discord: general}"),
        3,
        "lanes.review.channels",
        "discord channel 'general' is not a channel ID: 17 to 20 digits, quoted",
    ),
    (
        "discord approver without role: or user:",
        with_line(6, '    approvers: {discord: ["998877665544332211"]}'),
        6,
        "lanes.review.approvers",
        "discord approver '998877665544332211' must be role:<role ID> or user:<user ID>",
    ),
    (
        "discord page @everyone",
        with_line(9, '    page: {discord: "@everyone"}'),
        9,
        "lanes.oncall.page",
        "discord page '@everyone' must be role:<role ID> or user:<user ID>",
    ),
    (
        "discord summary channel by name",
        BASE + "summaries:\n  channels: {discord: managers}\n",
        17,
        "summaries.channels",
        "discord channel 'managers' is not a channel ID",
    ),
    (
        "sensitive path with an empty part",
        BASE + "sensitive: [requested_by, facts..x]\n",
        16,
        "sensitive[1]",
        "'facts..x' is not a field path: write e.g. facts.employee or facts.*",
    ),
    (
        "sensitive field the case does not have",
        BASE + "sensitive:\n  - requested_by\n  - fact.employee\n",
        18,
        "sensitive[1]",
        "'fact.employee' is not a field of the case",
    ),
    (
        "sensitive path too deep",
        BASE + "sensitive: [facts.*.name]\n",
        16,
        "sensitive[0]",
        "'facts.*.name' is not a field path",
    ),
    (
        "sensitive decision field",
        BASE + "sensitive: [decisions.action]\n",
        16,
        "sensitive[0]",
        "'decisions.action': decisions has no field 'action' (it has reason, reviewer, args)",
    ),
    (
        "sensitive decisions without a field",
        BASE + "sensitive: [decisions]\n",
        16,
        "sensitive[0]",
        "'decisions' names no field of a decision",
    ),
    (
        "sensitive part of a plain field",
        BASE + "sensitive: [summary.first_line]\n",
        16,
        "sensitive[0]",
        "'summary.first_line': summary has no fields to name; write summary alone",
    ),
    (
        "sensitive not a list",
        BASE + "sensitive: requested_by\n",
        16,
        "sensitive",
        "must be a list (got 'requested_by')",
    ),
    (
        "a kind's sensitive_fields",
        BASE + "kinds:\n  refund:\n    reason_codes: [other]\n    sensitive_fields: [facts.]\n",
        19,
        "kinds.refund.sensitive_fields[0]",
        "'facts.' is not a field path",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "field", "message"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_errors_name_the_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, message: str
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    problems = caught.value.problems
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:{line}: {field}: "), problems[0]
    assert message in problems[0]
    assert str(caught.value) == problems[0]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (with_line(4, "    sla: 4h: x"), 4, "mapping values are not allowed here"),
        (with_line(12, "  - if: {confidence_below: 0.9"), 13, "expected ',' or '}'"),
        ("", 1, "the policy file is empty"),
        ("# nothing but a comment\n\n", 1, "the policy file is empty"),
        ("- lanes\n- rules\n", 1, "must be a mapping"),
        ("# a comment first\n\n- lanes\n", 3, "must be a mapping"),
        ("just words\n", 1, "must be a mapping"),
        (
            with_line(4, "    sla: !!python/object/apply:os.system [echo hi]"),
            4,
            "could not determine a constructor",
        ),
        (with_line(3, "    channels: {[a, b]: C0REVIEW}"), 3, "unhashable key"),
    ],
)
def test_file_level_errors_name_the_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(f"{path}:{line}: ")
    assert message in caught.value.problems[0]


def test_every_problem_is_reported(tmp_path: Path) -> None:
    text = BASE.replace("sla: 4h", "sla: 4 hours").replace("quorum: 2", "quorum: 0")
    path = tmp_path / "two.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.problems == [
        f"{path}:4: lanes.review.sla: '4 hours' is not a duration: "
        "write it like 90s, 15m, 4h or 2d",
        f"{path}:10: lanes.oncall.quorum: must be at least 1 (got 0)",
    ]


def test_consistency_problems_are_all_reported() -> None:
    text = with_line(13, "    lane: reveiw").replace("  oncall:", "  auto:")
    with pytest.raises(PolicyError) as caught:
        parse_policy(text.encode(), "p.yaml")
    assert [p.split(": ")[0] for p in caught.value.problems] == [
        "p.yaml:8",
        "p.yaml:13",
    ]
    assert caught.value.problems[0].startswith("p.yaml:8: lanes.auto: ")
    assert caught.value.problems[1].startswith("p.yaml:13: rules[0].lane: ")


def test_unreadable_and_odd_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(PolicyError, match="cannot read the policy file") as caught:
        load_policy(missing)
    assert str(missing) in str(caught.value)
    with pytest.raises(PolicyError, match="not UTF-8"):
        parse_policy(b"lanes: \xff\xfe\n")
    big = tmp_path / "big.yaml"
    big.write_bytes(BASE.encode() + b"#" * (1024 * 1024))
    with pytest.raises(PolicyError, match="larger than 1 MiB"):
        load_policy(big)


# --- The version is a content hash -----------------------------------------------------


def test_version_is_a_content_hash(tmp_path: Path) -> None:
    data = DESIGN_EXAMPLE.read_bytes()
    first = parse_policy(data).version
    assert parse_policy(data, "elsewhere.yaml").version == first
    copied = tmp_path / "copy.yaml"
    copied.write_bytes(data)
    assert load_policy(copied).version == first
    assert load_policy(DESIGN_EXAMPLE).version == first
    # One changed byte in a comment: the same rules, another version.
    changed = data.replace(b"# first match wins", b"# first match wons")
    assert len(changed) == len(data)
    assert sum(a != b for a, b in zip(data, changed, strict=True)) == 1
    assert parse_policy(changed).version != first
    # One added byte (a trailing newline) is another version too.
    assert parse_policy(data + b"\n").version != first
    assert parse_policy(data.replace(b"quorum: 2", b"quorum: 3")).version != first
    versions = {load_policy(p).version for p in (DESIGN_EXAMPLE, DEFAULT_POLICY)}
    assert len(versions) == 2


# --- Reason codes and approvers --------------------------------------------------------


def test_reason_codes_per_kind(design: LoadedPolicy, shipped: LoadedPolicy) -> None:
    expense = ["policy_match", "policy_violation", "missing_receipt", "suspected_fraud", "other"]
    assert design.policy.reason_codes("expense_approval") == expense
    assert shipped.policy.reason_codes("expense_approval") == expense
    assert shipped.policy.reason_codes("refund") == [
        "within_policy",
        "over_threshold",
        "customer_history",
        "suspected_fraud",
        "other",
    ]
    # No entry for the kind: the `default` kind.
    assert shipped.policy.reason_codes("something_new") == [
        "agree_with_ai",
        "policy_match",
        "policy_violation",
        "insufficient_evidence",
        "other",
    ]
    # Neither the kind nor `default`: default_reason_codes.
    assert design.policy.reason_codes("refund") == list(DEFAULT_REASON_CODES)
    assert "risk_too_high" in design.policy.reason_codes("refund")


def test_reason_codes_fall_back_to_the_policys_default_reason_codes() -> None:
    text = (
        BASE
        + "default_reason_codes: [yes_fine, no_way]\nkinds:\n  refund:\n    reason_codes: [r1]\n"
    )
    policy = parse_policy(text.encode()).policy
    assert policy.reason_codes("refund") == ["r1"]
    assert policy.reason_codes("expense_approval") == ["yes_fine", "no_way"]
    # The answer is a copy: changing it changes nothing.
    policy.reason_codes("refund").append("mine")
    assert policy.reason_codes("refund") == ["r1"]


def test_reason_codes_are_checked() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy((BASE + "kinds:\n  refund:\n    reason_codes: []\n").encode(), "p.yaml")
    assert caught.value.problems[0].startswith("p.yaml:18: kinds.refund.reason_codes: ")
    with pytest.raises(PolicyError) as caught:
        parse_policy(
            (BASE + "kinds:\n  refund:\n    reason_codes: [Bad Code]\n").encode(), "p.yaml"
        )
    assert caught.value.problems[0].startswith("p.yaml:18: kinds.refund.reason_codes[0]: ")


def test_approver_entries(design: LoadedPolicy, shipped: LoadedPolicy) -> None:
    review = design.lane("review")
    assert review is not None
    assert review.approver_entries("slack") == ["U0ALICE", "S0REVIEWERS"]
    assert review.approver_entries("discord") == [
        "role:998877665544332211",
        "user:112233445566778800",
    ]
    assert review.approver_entries("memory") == []
    expert = design.lane("expert")
    assert expert is not None
    assert expert.approver_entries("slack") == ["S0EXPERTS"]
    assert expert.approver_entries("discord") == []
    # A lane with only `page`: the paged group decides.
    stop = design.lane("stop_the_line")
    assert stop is not None
    assert stop.approvers == {}
    assert stop.approver_entries("slack") == ["S0ONCALL"]
    assert stop.approver_entries("discord") == []
    shipped_stop = shipped.lane("stop_the_line")
    assert shipped_stop is not None
    assert shipped_stop.approver_entries("discord") == ["role:998877665544332222"]
    assert design.lane("auto") is None
    # The answer is a copy.
    review.approver_entries("slack").append("U0MALLORY")
    assert review.approver_entries("slack") == ["U0ALICE", "S0REVIEWERS"]


def test_approvers_win_over_page() -> None:
    text = BASE.replace(
        "    page: {slack: S0ONCALL}",
        "    page: {slack: S0ONCALL}\n    approvers: {slack: [U0BOB]}",
    )
    lane = parse_policy(text.encode()).lane("oncall")
    assert lane is not None
    assert lane.approver_entries("slack") == ["U0BOB"]
    assert lane.page == {"slack": "S0ONCALL"}
