"""Every kind of bad input gets a sentence that says what is allowed, and changes nothing.

One table per body (the case, an answer, a withdrawal), one per query, one for the
policy file: each row is a bad value of one field for one rule (type, missing, too
long, too many, pattern, range, unknown field, bad JSON), with the exact `field` and
`message` the client reads. Each table goes through a real server and a real database;
after it, nothing has been written.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from bot.durations import parse_duration
from bot.errors import PolicyError
from bot.policy import parse_policy
from bot.schemas import SLA_MAX, SLA_MIN, SLA_TEXT, CancelIn, CaseIn, InfoIn
from tests.conftest import Api, case
from tests.test_policy import BASE, with_line

NAME = "1 to 64 lower-case letters, digits or _ . -, starting with a letter or digit"
FLAG = "1 to 64 letters, digits or _ . : -"
URL = "an http:// or https:// URL with a host and without spaces or control characters"
SLA = (
    "a duration from 1 minute to 30 days: a whole number of seconds from 60 to 2592000, "
    "or a number and a unit (s, m, h, d or w) such as 90s, 15m, 4h or 2d"
)
SCALAR = "text (at most 2000 characters), a number, true, false or null"
CASE_FIELDS = (
    "source, kind, title, question, summary, recommendation, risk, flags, facts, evidence, "
    "policy_refs, history, actions, requested_by, callback_url, sla, metadata, idempotency_key, "
    "proposal"
)

# (what, change to a valid case, field, message)
CASE_ROWS: list[tuple[str, dict[str, Any], str, str]] = [
    ("source pattern", {"source": "Not Valid!"}, "source", f"must be {NAME} (got 'Not Valid!')"),
    ("source type", {"source": 5}, "source", "must be text (got 5)"),
    ("kind missing", {"kind": ...}, "kind", "is required"),
    ("kind pattern", {"kind": "Not A Kind"}, "kind", f"must be {NAME} (got 'Not A Kind')"),
    ("kind too long", {"kind": "k" * 65}, "kind", f"must be {NAME} (got 65 characters)"),
    ("title missing", {"title": ...}, "title", "is required"),
    ("title empty", {"title": ""}, "title", "must not be empty"),
    ("title blank", {"title": "   "}, "title", "must be text that is not only spaces (got '   ')"),
    ("title too long", {"title": "t" * 301}, "title", "must be at most 300 characters (got 301)"),
    ("title type", {"title": 5}, "title", "must be text (got 5)"),
    ("question empty", {"question": ""}, "question", "must not be empty"),
    (
        "question too long",
        {"question": "q" * 3001},
        "question",
        "must be at most 3000 characters (got 3001)",
    ),
    (
        "summary too long",
        {"summary": "s" * 100_001},
        "summary",
        "must be at most 100000 characters (got 100001)",
    ),
    ("summary type", {"summary": ["a"]}, "summary", "must be text (got a list)"),
    ("recommendation missing", {"recommendation": ...}, "recommendation", "is required"),
    (
        "recommendation type",
        {"recommendation": "approve"},
        "recommendation",
        "must be a JSON object (got 'approve')",
    ),
    (
        "recommendation action",
        {"recommendation.action": "maybe"},
        "recommendation.action",
        "must be 'approve' or 'reject' (got 'maybe')",
    ),
    (
        "confidence above 1",
        {"recommendation.confidence": 1.5},
        "recommendation.confidence",
        "must be at most 1 (got 1.5)",
    ),
    (
        "confidence below 0",
        {"recommendation.confidence": -0.1},
        "recommendation.confidence",
        "must be at least 0 (got -0.1)",
    ),
    (
        "confidence type",
        {"recommendation.confidence": "high"},
        "recommendation.confidence",
        "must be a number (got 'high')",
    ),
    (
        "confidence missing",
        {"recommendation": {"action": "approve"}},
        "recommendation.confidence",
        "is required",
    ),
    (
        "rationale too long",
        {"recommendation.rationale": "r" * 10_001},
        "recommendation.rationale",
        "must be at most 10000 characters (got 10001)",
    ),
    (
        "alternatives too many",
        {"recommendation.alternatives": [{"action": "reject"}] * 11},
        "recommendation.alternatives",
        "must have at most 10 items (got 11)",
    ),
    (
        "alternative action empty",
        {"recommendation.alternatives": [{"action": ""}]},
        "recommendation.alternatives.0.action",
        "must not be empty",
    ),
    (
        "alternative confidence",
        {"recommendation.alternatives": [{"action": "reject", "confidence": 2}]},
        "recommendation.alternatives.0.confidence",
        "must be at most 1 (got 2)",
    ),
    (
        "recommendation unknown field",
        {"recommendation.confidance": 0.5},
        "recommendation.confidance",
        "unknown field (did you mean 'confidence'?); the fields here are action, confidence, "
        "rationale, alternatives",
    ),
    (
        "risk level",
        {"risk.level": "extreme"},
        "risk.level",
        "must be 'low', 'medium', 'high' or 'critical' (got 'extreme')",
    ),
    ("risk amount negative", {"risk.amount": -5}, "risk.amount", "must be at least 0 (got -5)"),
    (
        "risk amount too large",
        {"risk.amount": 2e15},
        "risk.amount",
        "must be at most 1e+15 (got 2000000000000000.0)",
    ),
    (
        "risk currency",
        {"risk.currency": "euro"},
        "risk.currency",
        "must be a three-letter currency code in capitals, such as EUR (got 'euro')",
    ),
    (
        "risk reversible type",
        {"risk.reversible": "maybe"},
        "risk.reversible",
        "must be true or false (got 'maybe')",
    ),
    (
        "risk customer_tier too long",
        {"risk.customer_tier": "g" * 65},
        "risk.customer_tier",
        "must be at most 64 characters (got 65)",
    ),
    (
        "risk compliance pattern",
        {"risk.compliance": ["has space"]},
        "risk.compliance.0",
        f"must be {FLAG} (got 'has space')",
    ),
    (
        "risk compliance too many",
        {"risk.compliance": ["gdpr"] * 21},
        "risk.compliance",
        "must have at most 20 items (got 21)",
    ),
    (
        "risk unknown field",
        {"risk.levle": "low"},
        "risk.levle",
        "unknown field (did you mean 'level'?); the fields here are level, amount, currency, "
        "reversible, customer_tier, compliance",
    ),
    ("flags pattern", {"flags": ["Bad Flag"]}, "flags.0", f"must be {FLAG} (got 'Bad Flag')"),
    (
        "flags item too long",
        {"flags": ["f" * 65]},
        "flags.0",
        f"must be {FLAG} (got 65 characters)",
    ),
    ("flags too many", {"flags": ["f"] * 51}, "flags", "must have at most 50 items (got 51)"),
    ("flags type", {"flags": "pii"}, "flags", "must be a list (got 'pii')"),
    (
        "facts too many",
        {"facts": {f"k{i}": i for i in range(501)}},
        "facts",
        "must have at most 500 entries (got 501)",
    ),
    (
        "facts nested",
        {"facts": {"nested": {"a": 1}}},
        "facts.nested",
        f"must be {SCALAR} (got an object)",
    ),
    (
        "facts value too long",
        {"facts": {"long": "v" * 2001}},
        "facts.long",
        f"must be {SCALAR} (got 2001 characters)",
    ),
    ("facts key empty", {"facts": {"": 1}}, "facts", "key '': must not be empty"),
    (
        "facts key too long",
        {"facts": {"k" * 101: 1}},
        "facts",
        f"key '{'k' * 40}'...: must be at most 100 characters (got 101)",
    ),
    ("facts type", {"facts": ["a"]}, "facts", "must be a JSON object (got a list)"),
    (
        "evidence too many",
        {"evidence": [{"label": "e"}] * 51},
        "evidence",
        "must have at most 50 items (got 51)",
    ),
    (
        "evidence label missing",
        {"evidence": [{"url": "https://example.com"}]},
        "evidence.0.label",
        "is required",
    ),
    (
        "evidence label too long",
        {"evidence": [{"label": "l" * 201}]},
        "evidence.0.label",
        "must be at most 200 characters (got 201)",
    ),
    (
        "evidence url scheme",
        {"evidence": [{"label": "x", "url": "javascript:alert(1)"}]},
        "evidence.0.url",
        f"must be {URL} (got 'javascript:alert(1)')",
    ),
    (
        "evidence url space",
        {"evidence": [{"label": "x", "url": "https://ok.example.com/a b"}]},
        "evidence.0.url",
        f"must be {URL} (got 'https://ok.example.com/a b')",
    ),
    (
        "evidence url too long",
        {"evidence": [{"label": "x", "url": "https://example.com/" + "a" * 2030}]},
        "evidence.0.url",
        "must be at most 2048 characters (got 2050)",
    ),
    (
        "evidence excerpt too long",
        {"evidence": [{"label": "x", "excerpt": "e" * 5001}]},
        "evidence.0.excerpt",
        "must be at most 5000 characters (got 5001)",
    ),
    (
        "policy_refs too many",
        {"policy_refs": [{"label": "p"}] * 21},
        "policy_refs",
        "must have at most 20 items (got 21)",
    ),
    (
        "policy_refs url",
        {"policy_refs": [{"label": "p", "url": "mailto:x@example.com"}]},
        "policy_refs.0.url",
        f"must be {URL} (got 'mailto:x@example.com')",
    ),
    (
        "history too many",
        {"history": [{"text": "h"}] * 101},
        "history",
        "must have at most 100 items (got 101)",
    ),
    ("history text empty", {"history": [{"text": ""}]}, "history.0.text", "must not be empty"),
    (
        "history at",
        {"history": [{"text": "h", "at": "yesterday"}]},
        "history.0.at",
        "must be a date and time in ISO 8601, such as 2026-12-04T09:30:00Z (got 'yesterday')",
    ),
    (
        "history actor too long",
        {"history": [{"text": "h", "actor": "a" * 201}]},
        "history.0.actor",
        "must be at most 200 characters (got 201)",
    ),
    ("actions too few", {"actions": ["approve"]}, "actions", "must have at least 2 items (got 1)"),
    (
        "actions without reject",
        {"actions": ["approve", "request_info"]},
        "actions",
        "must include both approve and reject; request_info and modify are optional "
        '(got ["approve", "request_info"])',
    ),
    (
        "actions repeat",
        {"actions": ["approve", "approve", "reject"]},
        "actions",
        'must name each action once (got ["approve", "approve", "reject"])',
    ),
    (
        "actions literal",
        {"actions": ["approve", "reject", "delete"]},
        "actions.2",
        "must be 'approve', 'reject', 'request_info' or 'modify' (got 'delete')",
    ),
    (
        "actions too many",
        {"actions": ["approve", "reject", "request_info", "modify", "approve"]},
        "actions",
        "must have at most 4 items (got 5)",
    ),
    (
        "modify without a proposal",
        {"actions": ["approve", "reject", "modify"]},
        "(body)",
        "actions may include modify only when the case has a proposal to edit",
    ),
    ("proposal without a name", {"proposal": {"args": {}}}, "proposal.name", "is required"),
    (
        "proposal arg name",
        {"proposal": {"name": "refund", "args": {"1st": 1}}},
        "proposal.args",
        "key '1st': must match the pattern ^[A-Za-z_][A-Za-z0-9_.-]{0,63}$",
    ),
    (
        "proposal editable unknown",
        {"proposal": {"name": "refund", "args": {"amount": 1}, "editable": ["to"]}},
        "proposal",
        "editable names arguments that args does not have: to",
    ),
    (
        "proposal editable repeat",
        {"proposal": {"name": "refund", "args": {"a": 1}, "editable": ["a", "a"]}},
        "proposal",
        "editable must name each argument once",
    ),
    (
        "proposal args too large",
        {"proposal": {"name": "refund", "args": {"memo": "m" * 20_000}}},
        "proposal.args",
        "must be at most 20000 bytes as JSON (got 20011)",
    ),
    (
        "proposal too many args",
        {"proposal": {"name": "refund", "args": {f"a{i}": i for i in range(51)}}},
        "proposal.args",
        "must have at most 50 entries (got 51)",
    ),
    ("requested_by empty", {"requested_by": ""}, "requested_by", "must not be empty"),
    (
        "requested_by too long",
        {"requested_by": "r" * 257},
        "requested_by",
        "must be at most 256 characters (got 257)",
    ),
    (
        "callback_url scheme",
        {"callback_url": "ftp://example.com/x"},
        "callback_url",
        f"must be {URL} (got 'ftp://example.com/x')",
    ),
    (
        "callback_url no host",
        {"callback_url": "http://"},
        "callback_url",
        f"must be {URL} (got 'http://')",
    ),
    (
        "callback_url bracketed host not IPv6",
        {"callback_url": "HTTP://[0]"},
        "callback_url",
        f"must be {URL} (got 'HTTP://[0]')",
    ),
    (
        "callback_url port too large",
        {"callback_url": "http://example.com:99999/"},
        "callback_url",
        f"must be {URL} (got 'http://example.com:99999/')",
    ),
    (
        "evidence url bracketed IPv4",
        {"evidence": [{"label": "x", "url": "http://[1.2.3.4]/"}]},
        "evidence.0.url",
        f"must be {URL} (got 'http://[1.2.3.4]/')",
    ),
    ("sla text", {"sla": "forever"}, "sla", f"must be {SLA} (got 'forever')"),
    ("sla too short", {"sla": "10s"}, "sla", f"must be {SLA} (got '10s')"),
    ("sla too long", {"sla": "31d"}, "sla", f"must be {SLA} (got '31d')"),
    ("sla seconds too few", {"sla": 59}, "sla", f"must be {SLA} (got 59)"),
    ("sla bool", {"sla": True}, "sla", f"must be {SLA} (got true)"),
    (
        "metadata too many",
        {"metadata": {f"k{i}": i for i in range(51)}},
        "metadata",
        "must have at most 50 entries (got 51)",
    ),
    ("idempotency_key empty", {"idempotency_key": ""}, "idempotency_key", "must not be empty"),
    (
        "idempotency_key too long",
        {"idempotency_key": "k" * 201},
        "idempotency_key",
        "must be at most 200 characters (got 201)",
    ),
    ("title NUL", {"title": "a\x00b"}, "title", "must not contain the NUL character (\\u0000)"),
    (
        "facts key NUL",
        {"facts": {"k\x00": 1}},
        "facts",
        "must not contain the NUL character (\\u0000)",
    ),
    (
        "evidence excerpt NUL",
        {"evidence": [{"label": "x", "excerpt": "\x00"}]},
        "evidence.0.excerpt",
        "must not contain the NUL character (\\u0000)",
    ),
    (
        "unknown field",
        {"surprise": 1},
        "surprise",
        f"unknown field; the fields here are {CASE_FIELDS}",
    ),
    (
        "unknown field near a known one",
        {"flag": ["x"]},
        "flag",
        f"unknown field (did you mean 'flags'?); the fields here are {CASE_FIELDS}",
    ),
]

# (what, raw body, message at `(body)`)
RAW_ROWS: list[tuple[str, bytes, str]] = [
    ("empty", b"", "is empty: send a JSON object (see /openapi.json)"),
    ("spaces only", b"  \n", "is empty: send a JSON object (see /openapi.json)"),
    (
        "cut short",
        b"{",
        "is not valid JSON: EOF while parsing an object at line 1 column 1",
    ),
    ("YAML", b"kind: refund", "is not valid JSON: expected value at line 1 column 1"),
    ("not UTF-8", b"\xff\xfe", "is not valid JSON: expected value at line 1 column 1"),
    ("a list", b"[]", "must be a JSON object (got a list)"),
    ("null", b"null", "must be a JSON object (got null)"),
    ("a string", b'"a case"', "must be a JSON object (got 'a case')"),
    ("a number", b"42", "must be a JSON object (got 42)"),
]


async def written(api: Api) -> tuple[int, int, int]:
    return (await api.count("cases"), await api.count("events"), await api.count("outbox"))


def mismatch(what: str, response: Any, field: str, message: str, summary: str) -> str | None:
    """None when `response` is the 422 that says exactly `message` about `field`."""
    expected = {
        "error": "validation_failed",
        "message": f"{summary}: {field}: {message}",
        "errors": [{"field": field, "message": message}],
    }
    if response.status_code == 422 and response.json() == expected:
        return None
    return f"{what}: {response.status_code} {response.text}"


async def test_every_bad_case_says_what_is_allowed_and_writes_nothing(api: Api) -> None:
    wrong = []
    for what, change, field, message in CASE_ROWS:
        response = await api.post("/v1/escalations", case(**change))
        wrong.append(mismatch(what, response, field, message, "invalid case"))
    for what, raw, message in RAW_ROWS:
        response = await api.post("/v1/escalations", raw)
        wrong.append(mismatch(what, response, "(body)", message, "invalid case"))
    assert [w for w in wrong if w] == []
    assert await written(api) == (0, 0, 0)


async def test_several_problems_are_all_named(api: Api) -> None:
    response = await api.post(
        "/v1/escalations", case(title="", flags=["Bad Flag"], **{"risk.currency": "euro"})
    )
    assert response.status_code == 422
    assert response.json() == {
        "error": "validation_failed",
        "message": "invalid case: title: must not be empty (and 2 more)",
        "errors": [
            {"field": "title", "message": "must not be empty"},
            {
                "field": "risk.currency",
                "message": "must be a three-letter currency code in capitals, such as EUR "
                "(got 'euro')",
            },
            {"field": "flags.0", "message": f"must be {FLAG} (got 'Bad Flag')"},
        ],
    }
    assert await written(api) == (0, 0, 0)


@pytest.mark.parametrize(
    ("headers", "body", "field", "message"),
    [
        (
            {"Idempotency-Key": "k" * 201},
            case(),
            "Idempotency-Key",
            "Idempotency-Key must be 1 to 200 characters",
        ),
        (
            {"Idempotency-Key": "one"},
            case(idempotency_key="two"),
            "idempotency_key",
            "the Idempotency-Key header and the idempotency_key field differ; send one",
        ),
    ],
)
async def test_header_problems_use_the_same_shape(
    api: Api, headers: dict[str, str], body: dict[str, Any], field: str, message: str
) -> None:
    response = await api.post("/v1/escalations", body, **headers)
    assert response.status_code == 422
    assert response.json() == {
        "error": "invalid",
        "message": message,
        "field": field,
        "errors": [{"field": field, "message": message}],
    }
    assert await written(api) == (0, 0, 0)


# (what, body, field, message)
INFO_ROWS: list[tuple[str, Any, str, str]] = [
    ("text missing", {}, "text", "is required"),
    ("text empty", {"text": ""}, "text", "must not be empty"),
    ("text blank", {"text": "  "}, "text", "must be text that is not only spaces (got '  ')"),
    (
        "text too long",
        {"text": "t" * 10_001},
        "text",
        "must be at most 10000 characters (got 10001)",
    ),
    ("text type", {"text": 5}, "text", "must be text (got 5)"),
    (
        "facts too many",
        {"text": "ok", "facts": {f"k{i}": i for i in range(501)}},
        "facts",
        "must have at most 500 entries (got 501)",
    ),
    (
        "facts nested",
        {"text": "ok", "facts": {"a": [1]}},
        "facts.a",
        f"must be {SCALAR} (got a list)",
    ),
    (
        "unknown field",
        {"text": "ok", "fact": {}},
        "fact",
        "unknown field (did you mean 'facts'?); the fields here are text, facts",
    ),
    ("a list", [], "(body)", "must be a JSON object (got a list)"),
    ("empty", b"", "(body)", "is empty: send a JSON object (see /openapi.json)"),
    (
        "not JSON",
        b"{text",
        "(body)",
        "is not valid JSON: key must be a string at line 1 column 2",
    ),
]
CANCEL_ROWS: list[tuple[str, Any, str, str]] = [
    (
        "reason too long",
        {"reason": "r" * 2001},
        "reason",
        "must be at most 2000 characters (got 2001)",
    ),
    ("reason type", {"reason": ["r"]}, "reason", "must be text (got a list)"),
    ("unknown field", {"why": "x"}, "why", "unknown field; the fields here are reason"),
    ("a string", b'"stop"', "(body)", "must be a JSON object (got 'stop')"),
    (
        "not JSON",
        b"{",
        "(body)",
        "is not valid JSON: EOF while parsing an object at line 1 column 1",
    ),
]


async def test_bad_answers_and_withdrawals_say_what_is_allowed_and_change_nothing(
    api: Api,
) -> None:
    created = await api.submit()
    before = await written(api)
    wrong = []
    for route, rows, summary in (
        ("info", INFO_ROWS, "invalid answer"),
        ("cancel", CANCEL_ROWS, "invalid cancel"),
    ):
        for what, body, field, message in rows:
            response = await api.post(f"/v1/escalations/{created['id']}/{route}", body)
            wrong.append(mismatch(f"{route}: {what}", response, field, message, summary))
    assert [w for w in wrong if w] == []
    assert await written(api) == before
    got = (await api.get(f"/v1/escalations/{created['id']}")).json()
    assert got["status"] == "pending"


STATUSES = (
    "'pending', 'info_requested', 'approved', 'rejected', 'expired', 'cancelled' or 'auto_decided'"
)
# (what, query, field, message)
QUERY_ROWS: list[tuple[str, dict[str, Any], str, str]] = [
    ("limit 0", {"limit": 0}, "limit", "must be at least 1 (got '0')"),
    ("limit 201", {"limit": 201}, "limit", "must be at most 200 (got '201')"),
    ("limit not a number", {"limit": "many"}, "limit", "must be a whole number (got 'many')"),
    ("status", {"status": "bogus"}, "status", f"must be {STATUSES} (got 'bogus')"),
    ("lane too long", {"lane": "l" * 65}, "lane", "must be at most 64 characters (got 65)"),
    ("kind too long", {"kind": "k" * 65}, "kind", "must be at most 64 characters (got 65)"),
    (
        "lane NUL",
        {"lane": "a\x00"},
        "lane",
        "must be text without the NUL character (\\u0000) (got 'a\\x00')",
    ),
    (
        "cursor too long",
        {"cursor": "c" * 201},
        "cursor",
        "must be at most 200 characters (got 201)",
    ),
]


async def test_bad_list_parameters_say_what_is_allowed(api: Api) -> None:
    wrong = []
    for what, query, field, message in QUERY_ROWS:
        response = await api.get("/v1/escalations", **query)
        wrong.append(mismatch(what, response, field, message, "invalid request"))
    response = await api.get("/v1/escalations", cursor="bm90IGEgY3Vyc29y")
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "cursor", "message": "cursor is not one this server gave out"}
    ]
    assert [w for w in wrong if w] == []


# (what, policy text, the one problem, after `p.yaml:`)
POLICY_ROWS: list[tuple[str, str, str]] = [
    (
        "type",
        with_line(10, "    quorum: two"),
        "10: lanes.oncall.quorum: must be a whole number (got 'two')",
    ),
    (
        "range",
        with_line(10, "    quorum: 0"),
        "10: lanes.oncall.quorum: must be at least 1 (got 0)",
    ),
    ("missing", "\n".join(BASE.splitlines()[:10]) + "\n", "1: rules: is required"),
    (
        "pattern",
        with_line(8, "  On-Call:"),
        "8: lanes: key 'On-Call': must be 1 to 64 lower-case letters, digits or _, starting "
        "with a letter",
    ),
    (
        "unknown field",
        with_line(7, "    qourum: 1"),
        "7: lanes.review.qourum: unknown field (did you mean 'quorum'?); the fields here are "
        "channels, sla, reminders, approvers, quorum, reject_vetoes, on_timeout, escalate_to, "
        "page, ack_within, hours",
    ),
    (
        "choice",
        with_line(7, "    on_timeout: ignore"),
        "7: lanes.review.on_timeout: must be 'reject' or 'approve' (got 'ignore')",
    ),
    (
        "duration",
        with_line(4, "    sla: 4 hours"),
        "4: lanes.review.sla: '4 hours' is not a duration: write it like 90s, 15m, 4h or 2d",
    ),
    (
        "bad YAML",
        with_line(4, "    sla: 4h: x"),
        "4: column 12: mapping values are not allowed here",
    ),
]


@pytest.mark.parametrize(
    ("text", "problem"), [r[1:] for r in POLICY_ROWS], ids=[r[0] for r in POLICY_ROWS]
)
def test_policy_problems_name_the_line_and_say_what_is_allowed(text: str, problem: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text.encode(), "p.yaml")
    assert caught.value.problems == [f"p.yaml:{problem}"]


# --- the document states the rules the validation enforces ----------------------------


def walk(schema: Any, where: str = "") -> list[str]:
    """Every place in a JSON schema that leaves a string, a list or an object unbounded."""
    found = []
    if isinstance(schema, dict):
        kind = schema.get("type")
        bounded_text = "maxLength" in schema or "enum" in schema or "const" in schema
        if kind == "string" and not bounded_text and "format" not in schema:
            found.append(f"{where}: a string without maxLength")
        if kind == "array" and "maxItems" not in schema:
            found.append(f"{where}: a list without maxItems")
        if kind == "object" and not (
            schema.get("additionalProperties") is False or "maxProperties" in schema
        ):
            found.append(f"{where}: an object without bounds")
        for key, value in schema.items():
            found += walk(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            found += walk(value, f"{where}/{index}")
    return found


@pytest.mark.parametrize("model", [CaseIn, InfoIn, CancelIn])
def test_every_input_is_bounded_in_the_schema(model: Any) -> None:
    assert walk(model.model_json_schema()) == []


def test_the_schema_states_the_rules_checked_in_code() -> None:
    props = CaseIn.model_json_schema()["properties"]
    assert props["actions"]["uniqueItems"] is True
    assert props["actions"]["allOf"] == [
        {"contains": {"const": "approve"}},
        {"contains": {"const": "reject"}},
    ]
    integer, text, null = props["sla"]["anyOf"]
    assert integer == {"type": "integer", "minimum": 60, "maximum": 2592000}
    assert text["pattern"] == SLA_TEXT
    assert null == {"type": "null"}
    url = CaseIn.model_json_schema()["$defs"]["Evidence"]["properties"]["url"]["anyOf"][0]
    assert url["maxLength"] == 2048
    assert re.fullmatch(url["pattern"].strip("^$"), "https://example.com/a")
    assert not re.search(url["pattern"], "https://example.com/a b")
    assert not re.search(url["pattern"], "ftp://example.com/a")
    assert props["title"]["pattern"] == r"\S"


@pytest.mark.parametrize(
    ("unit", "top"),
    [
        ("s", 2_600_000),
        ("m", 50_000),
        ("h", 1000),
        ("d", 100),
        ("w", 20),
    ],
)
def test_the_sla_pattern_is_exactly_the_range(unit: str, top: int) -> None:
    pattern = re.compile(SLA_TEXT)
    step = 997 if unit == "s" else 1  # seconds: a stride, plus every value near the bounds
    numbers = {*range(0, top, step), *range(0, 200), *range(2_591_900, 2_592_100)}
    for n in sorted(x for x in numbers if x < top):
        allowed = SLA_MIN <= parse_duration(f"{n}{unit}") <= SLA_MAX
        assert bool(pattern.fullmatch(f"{n}{unit}")) is allowed, f"{n}{unit}"


@pytest.mark.parametrize("route", ["", "/info", "/cancel"])
async def test_an_id_no_case_can_have_is_404(api: Api, route: str) -> None:
    # a NUL in the id: PostgreSQL could not even compare it, so nobody asks it
    path = f"/v1/escalations/%00{route}"
    body = {"text": "t"} if route == "/info" else {}
    response = await (api.post(path, body) if route else api.get(path))
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "message": "no case with that id"}
