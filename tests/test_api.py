"""The HTTP intake through a real server: every rule, every bad input, exact status,
and no write when refused."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest

from bot import signing
from tests.conftest import OTHER_SECRET, SECRET, Api, case, signed


async def assert_nothing_written(api: Api) -> None:
    assert await api.count("cases") == 0
    assert await api.count("events") == 0
    assert await api.count("outbox") == 0


async def test_submit_returns_201_and_the_case_reads_back(api: Api) -> None:
    response = await api.post("/v1/escalations", case())
    assert response.status_code == 201
    created = response.json()
    assert set(created) == {"id", "status", "lane", "due_at"}
    assert created["status"] == "pending"
    assert created["lane"] == "review"
    assert response.headers["location"] == f"/v1/escalations/{created['id']}"
    got = (await api.get(f"/v1/escalations/{created['id']}")).json()
    for key in (
        "id",
        "status",
        "lane",
        "kind",
        "title",
        "due_at",
        "created_at",
        "decisions",
        "events",
        "deliveries",
    ):
        assert key in got
    assert got["case"]["question"] == "Approve this expense?"
    assert [e["type"] for e in got["events"]] == ["received", "routed"]
    assert got["events"][1]["detail"]["status"] == "pending"
    assert all(e["policy_version"] == api.runtime.policy.version for e in got["events"])
    assert got["policy_version"] == api.runtime.policy.version
    assert [t["what"] for t in got["timers"]] == ["remind:50", "remind:80", "breach"]
    assert got["deliveries"][0]["kind"] == "post_card"
    assert got["deliveries"][0]["target"] == "memory:C0REVIEW"


async def test_auto_lane_answers_with_the_decision(api: Api) -> None:
    body = case(**{"recommendation.confidence": 0.97})
    response = await api.post("/v1/escalations", body)
    assert response.status_code == 201
    created = response.json()
    assert created["lane"] == "auto"
    assert created["status"] == "auto_decided"
    decision = created["decision"]
    assert decision["action"] == "approve"
    assert decision["decided_by"] == "policy"
    assert decision["policy_version"] == api.runtime.policy.version
    got = (await api.get(f"/v1/escalations/{created['id']}")).json()
    assert got["decisions"][0]["decided_by"] == "policy"
    assert got["due_at"] is None


async def test_auto_lane_follows_a_reject_recommendation(api: Api) -> None:
    body = case(recommendation={"action": "reject", "confidence": 0.99})
    created = (await api.post("/v1/escalations", body)).json()
    assert created["decision"]["action"] == "reject"


async def test_routes_by_policy(api: Api) -> None:
    assert (await api.submit(case(flags=["data_leakage"])))["lane"] == "stop_the_line"
    assert (await api.submit(case(**{"recommendation.confidence": 0.5})))["lane"] == "expert"
    assert (await api.submit(case(**{"risk.amount": 12000})))["lane"] == "expert"
    irreversible = case(**{"recommendation.confidence": 0.95, "risk.reversible": False})
    assert (await api.submit(irreversible))["lane"] == "review"


async def test_sla_override_sets_due_time(api: Api) -> None:
    created = await api.submit(case(sla="15m"))
    got = (await api.get(f"/v1/escalations/{created['id']}")).json()
    from datetime import datetime

    delta = datetime.fromisoformat(got["due_at"]) - datetime.fromisoformat(got["created_at"])
    assert delta.total_seconds() == 900


# -- authentication ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        ({}, "sign the request"),
        ({"X-Signoff-Signature": "garbage"}, "must look like"),
        ({"X-Signoff-Signature": "t=abc,v1=00"}, "must look like"),
        ({"X-Signoff-Signature": "t=123"}, "must look like"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "Bearer"),
        ({"Authorization": "Bearer wrong-token"}, "not one of a configured source"),
        ({"X-Signoff-Signature": "t=1,v1=" + "0" * 64}, "window"),
    ],
)
async def test_unauthenticated_submit_is_401_and_writes_nothing(
    api: Api, headers: dict[str, str], needle: str
) -> None:
    response = await api.client.post(
        "/v1/escalations", content=orjson.dumps(case()), headers=headers
    )
    assert response.status_code == 401
    assert needle in response.json()["message"]
    assert response.json()["error"] == "unauthorized"
    await assert_nothing_written(api)


async def test_wrong_secret_is_401(api: Api) -> None:
    response = await api.post("/v1/escalations", case(), secret="not-the-secret")
    assert response.status_code == 401
    assert "does not match" in response.json()["message"]
    await assert_nothing_written(api)


async def test_tampered_body_is_401(api: Api) -> None:
    raw = orjson.dumps(case())
    headers = signed(raw)
    tampered = raw.replace(b"team dinner", b"team DINNER")
    response = await api.client.post("/v1/escalations", content=tampered, headers=headers)
    assert response.status_code == 401
    await assert_nothing_written(api)


@pytest.mark.parametrize("skew", [-301, 301])
async def test_signature_outside_the_window_is_401(api: Api, skew: int) -> None:
    raw = orjson.dumps(case())
    at = int(time.time()) + skew
    response = await api.client.post("/v1/escalations", content=raw, headers=signed(raw, at=at))
    assert response.status_code == 401
    assert "window is 300 s" in response.json()["message"]
    await assert_nothing_written(api)


async def test_signature_inside_the_window_is_accepted(api: Api) -> None:
    raw = orjson.dumps(case())
    response = await api.client.post(
        "/v1/escalations", content=raw, headers=signed(raw, at=int(time.time()) - 290)
    )
    assert response.status_code == 201


async def test_rotation_any_matching_v2_is_accepted(api: Api) -> None:
    raw = orjson.dumps(case())
    now = int(time.time())
    path = "/v1/escalations"
    old = signing.signature_v2("old-secret", "POST", path, raw, now)
    new = signing.signature_v2(SECRET, "POST", path, raw, now)
    header = f"t={now},v2={old},v2={new}"
    response = await api.client.post(
        "/v1/escalations", content=raw, headers={"X-Signoff-Signature": header}
    )
    assert response.status_code == 201


async def test_get_must_be_signed_too(api: Api) -> None:
    created = await api.submit()
    assert (await api.client.get(f"/v1/escalations/{created['id']}")).status_code == 401
    assert (await api.client.get("/v1/escalations")).status_code == 401


async def test_bearer_token_authenticates_its_source(api: Api) -> None:
    raw = orjson.dumps(case(source="billing"))
    response = await api.client.post(
        "/v1/escalations",
        content=raw,
        headers={"Authorization": "Bearer billing-token", "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text


async def test_a_source_cannot_submit_as_another(api: Api) -> None:
    response = await api.post("/v1/escalations", case(source="billing"))
    assert response.status_code == 403
    assert "source 'default'" in response.json()["message"]
    await assert_nothing_written(api)


async def test_a_source_sees_and_changes_only_its_own_cases(api: Api) -> None:
    created = await api.submit()
    path = f"/v1/escalations/{created['id']}"
    assert (await api.get(path, secret=OTHER_SECRET)).status_code == 403
    cancel = await api.post(f"{path}/cancel", {}, secret=OTHER_SECRET)
    assert cancel.status_code == 403
    info = await api.post(f"{path}/info", {"text": "hello"}, secret=OTHER_SECRET)
    assert info.status_code == 403
    listing = (await api.get("/v1/escalations", secret=OTHER_SECRET)).json()
    assert listing["items"] == []
    assert (await api.get(path)).json()["status"] == "pending"


async def test_unknown_case_is_404(api: Api) -> None:
    response = await api.get("/v1/escalations/doesnotexist")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert (await api.get("/v1/escalations/" + "x" * 100)).status_code == 404
    assert (await api.post("/v1/escalations/nope/cancel", {})).status_code == 404
    assert (await api.post("/v1/escalations/nope/info", {"text": "x"})).status_code == 404


# -- idempotency -----------------------------------------------------------------
# A resend with the same signature is a replay (tests/test_signature.py); these send
# the same key and body signed afresh, as a workflow's retry does.


async def resend(api: Api, body: Any, ago: int, **headers: str) -> httpx.Response:
    """`body` to POST /v1/escalations with a signature of its own (not a replay): signed
    2 + 2 * `ago` seconds back, so that neither a request signed now nor another resend
    can share its timestamp when the clock ticks between them."""
    raw = orjson.dumps(body)
    signature = signed(raw, at=int(time.time()) - 2 - 2 * ago)
    return await api.client.post("/v1/escalations", content=raw, headers={**signature, **headers})


async def test_idempotent_replay_returns_the_first_answer(api: Api) -> None:
    first = await api.post("/v1/escalations", case(), **{"Idempotency-Key": "order-1"})
    again = await resend(api, case(), 1, **{"Idempotency-Key": "order-1"})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()
    assert await api.count("cases") == 1


async def test_idempotency_key_in_the_body(api: Api) -> None:
    first = await api.post("/v1/escalations", case(idempotency_key="k-9"))
    again = await resend(api, case(idempotency_key="k-9"), 1)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    # the header form of the same key finds the same case
    header = await resend(api, case(), 2, **{"Idempotency-Key": "k-9"})
    assert header.status_code == 200
    assert header.json()["id"] == first.json()["id"]


async def test_same_key_other_body_is_409_and_writes_nothing(api: Api) -> None:
    await api.post("/v1/escalations", case(), **{"Idempotency-Key": "order-2"})
    events = await api.count("events")
    other = await api.post(
        "/v1/escalations", case(title="Something else"), **{"Idempotency-Key": "order-2"}
    )
    assert other.status_code == 409
    assert other.json()["error"] == "conflict"
    assert "order-2" in other.json()["message"]
    assert await api.count("cases") == 1
    assert await api.count("events") == events


async def test_keys_are_per_source(api: Api) -> None:
    a = await api.post("/v1/escalations", case(), **{"Idempotency-Key": "shared"})
    b = await api.post(
        "/v1/escalations",
        case(source="billing"),
        secret=OTHER_SECRET,
        **{"Idempotency-Key": "shared"},
    )
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]


async def test_header_and_field_keys_must_agree(api: Api) -> None:
    response = await api.post(
        "/v1/escalations", case(idempotency_key="a"), **{"Idempotency-Key": "b"}
    )
    assert response.status_code == 422
    assert response.json()["field"] == "idempotency_key"
    await assert_nothing_written(api)


async def test_concurrent_replays_make_one_case(api: Api) -> None:
    responses = await asyncio.gather(
        *(resend(api, case(), i, **{"Idempotency-Key": "burst"}) for i in range(20))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 19 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await api.count("cases") == 1


async def test_many_concurrent_submissions_are_all_stored_once(api: Api) -> None:
    responses = await asyncio.gather(
        *(api.post("/v1/escalations", case(title=f"case {i}")) for i in range(100))
    )
    assert all(r.status_code == 201 for r in responses)
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 100
    assert await api.count("cases") == 100


# -- bad input -------------------------------------------------------------------


async def test_body_over_256_kib_is_413(api: Api) -> None:
    body = case(summary="x" * (257 * 1024))
    response = await api.post("/v1/escalations", body)
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    await assert_nothing_written(api)


async def test_chunked_body_over_256_kib_is_413(api: Api) -> None:
    raw = orjson.dumps(case(summary="y" * (300 * 1024)))

    async def chunks():  # type: ignore[no-untyped-def]
        for start in range(0, len(raw), 16384):
            yield raw[start : start + 16384]

    response = await api.client.post("/v1/escalations", content=chunks(), headers=signed(raw))
    assert response.status_code == 413
    await assert_nothing_written(api)


async def test_body_just_under_the_limit_is_accepted(api: Api) -> None:
    body = case(summary="z" * 90_000, facts={f"fact_{i}": "v" * 200 for i in range(200)})
    raw = orjson.dumps(body)
    assert len(raw) < 256 * 1024
    response = await api.post("/v1/escalations", raw)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"surprise": 1}, "surprise"),
        ({"recommendation.confidence": 1.5}, "recommendation.confidence"),
        ({"recommendation.confidence": -0.1}, "recommendation.confidence"),
        ({"recommendation.confidence": "high"}, "recommendation.confidence"),
        ({"recommendation.action": "maybe"}, "recommendation.action"),
        ({"recommendation.extra": True}, "recommendation.extra"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "t" * 301}, "title"),
        ({"title": ...}, "title"),
        ({"question": ""}, "question"),
        ({"kind": "Not A Kind"}, "kind"),
        ({"recommendation": ...}, "recommendation"),
        ({"callback_url": "ftp://example.com/x"}, "callback_url"),
        ({"callback_url": "javascript:alert(1)"}, "callback_url"),
        ({"callback_url": "file:///etc/passwd"}, "callback_url"),
        ({"callback_url": "http://"}, "callback_url"),
        ({"evidence": [{"label": "x", "url": "javascript:alert(1)"}]}, "evidence.0.url"),
        ({"evidence": [{"label": "x", "url": "https://ok.example.com/a b"}]}, "evidence.0.url"),
        ({"policy_refs": [{"label": "p", "url": "mailto:x@example.com"}]}, "policy_refs.0.url"),
        ({"evidence": [{"url": "https://example.com"}]}, "evidence.0.label"),
        ({"actions": ["approve"]}, "actions"),
        ({"actions": ["approve", "request_info"]}, "actions"),
        ({"actions": ["approve", "reject", "delete"]}, "actions.2"),
        ({"flags": ["has space"]}, "flags.0"),
        ({"facts": {f"k{i}": i for i in range(501)}}, "facts"),
        ({"facts": {"nested": {"a": 1}}}, "facts.nested"),
        ({"facts": {"long": "v" * 2001}}, "facts"),
        ({"risk.amount": -5}, "risk.amount"),
        ({"risk.currency": "euro"}, "risk.currency"),
        ({"risk.level": "extreme"}, "risk.level"),
        ({"sla": "forever"}, "sla"),
        ({"sla": "10s"}, "sla"),
        ({"source": "Not Valid!"}, "source"),
        ({"history": [{"text": ""}]}, "history.0.text"),
    ],
)
async def test_invalid_case_is_422_naming_the_field(
    api: Api, change: dict[str, object], field: str
) -> None:
    response = await api.post("/v1/escalations", case(**change))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_failed"
    fields = [e["field"] for e in body["errors"]]
    assert any(f == field or f.startswith(field + ".") for f in fields), fields
    assert field.split(".")[0] in body["message"]
    await assert_nothing_written(api)


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b'"a string"', b"\xff\xfe"])
async def test_not_a_case_is_422(api: Api, raw: bytes) -> None:
    response = await api.post("/v1/escalations", raw)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_failed"
    await assert_nothing_written(api)


async def test_overlong_idempotency_key_header_is_422(api: Api) -> None:
    response = await api.post("/v1/escalations", case(), **{"Idempotency-Key": "k" * 201})
    assert response.status_code == 422
    assert response.json()["field"] == "Idempotency-Key"
    await assert_nothing_written(api)


# -- listing -----------------------------------------------------------------------


async def test_list_is_paginated_and_filtered(api: Api) -> None:
    for i in range(5):
        await api.submit(case(title=f"review {i}"))
    await api.submit(case(**{"recommendation.confidence": 0.4}))
    page = (await api.get("/v1/escalations", limit=2)).json()
    assert len(page["items"]) == 2
    assert page["next"]
    seen = [item["id"] for item in page["items"]]
    while page["next"]:
        page = (await api.get("/v1/escalations", limit=2, cursor=page["next"])).json()
        seen += [item["id"] for item in page["items"]]
    assert len(seen) == 6
    assert len(set(seen)) == 6
    assert seen == sorted(seen, reverse=True)
    experts = (await api.get("/v1/escalations", lane="expert")).json()["items"]
    assert [i["lane"] for i in experts] == ["expert"]
    pending = (await api.get("/v1/escalations", status="pending", kind="expense_approval")).json()
    assert len(pending["items"]) == 6


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 201},
        {"limit": "many"},
        {"status": "bogus"},
        {"cursor": "!!!"},
        {"cursor": "bm90IGEgY3Vyc29y"},
    ],
)
async def test_bad_list_parameters_are_422(api: Api, params: dict[str, object]) -> None:
    response = await api.get("/v1/escalations", **params)
    assert response.status_code == 422, response.text
    assert response.json()["error"] in ("validation_failed", "invalid")


# -- info and cancel ---------------------------------------------------------------


async def test_cancel_then_cancel_again(api: Api) -> None:
    created = await api.submit()
    path = f"/v1/escalations/{created['id']}/cancel"
    first = await api.post(path, {"reason": "customer withdrew"})
    assert first.status_code == 200
    assert first.json()["status"] == "cancelled"
    again = await api.post(path, {})
    assert again.status_code == 409
    assert again.json()["error"] == "already_decided"
    got = (await api.get(f"/v1/escalations/{created['id']}")).json()
    assert got["status"] == "cancelled"
    assert [e["type"] for e in got["events"]][-2:] == ["cancelled", "refused"]
    assert got["events"][-1]["detail"]["code"] == "already_decided"


async def test_cancel_with_an_empty_body(api: Api) -> None:
    created = await api.submit()
    response = await api.post(f"/v1/escalations/{created['id']}/cancel", b"")
    assert response.status_code == 200


async def test_cancel_rejects_unknown_fields(api: Api) -> None:
    created = await api.submit()
    response = await api.post(f"/v1/escalations/{created['id']}/cancel", {"why": "x"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "why"


async def test_info_when_nobody_asked_is_409(api: Api) -> None:
    created = await api.submit()
    response = await api.post(f"/v1/escalations/{created['id']}/info", {"text": "here"})
    assert response.status_code == 409
    assert response.json()["error"] == "no_info_requested"
    got = (await api.get(f"/v1/escalations/{created['id']}")).json()
    assert got["status"] == "pending"
    assert got["events"][-1]["type"] == "refused"
    assert got["events"][-1]["actor"] == "source:default"


@pytest.mark.parametrize("body", [{}, {"text": ""}, {"text": "  "}, {"text": "ok", "extra": 1}])
async def test_invalid_info_is_422(api: Api, body: dict[str, object]) -> None:
    created = await api.submit()
    response = await api.post(f"/v1/escalations/{created['id']}/info", body)
    assert response.status_code == 422


# -- health and metrics ------------------------------------------------------------


async def test_healthz(api: Api) -> None:
    response = await api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_metrics(api: Api) -> None:
    await api.submit()
    await api.submit(case(**{"recommendation.confidence": 0.99}))
    await api.post("/v1/escalations", case(title=""))
    text = (await api.client.get("/metrics")).text
    assert 'signoff_cases{lane="review",status="pending"} 1.0' in text
    assert 'signoff_cases{lane="auto",status="auto_decided"} 1.0' in text
    assert 'signoff_decisions{action="approve",decided_by="policy"} 1.0' in text
    assert 'signoff_cases_submitted_total{lane="review"} 1.0' in text
    assert 'signoff_outbox{kind="callback",status="dead"} 0.0' in text
    assert "signoff_outbox_oldest_pending_seconds" in text
    labels = 'method="POST",route="/v1/escalations",status="422"'
    assert f"signoff_http_request_duration_seconds_count{{{labels}}} 1.0" in text


async def test_openapi_document(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    paths = doc["paths"]
    for path in (
        "/v1/escalations",
        "/v1/escalations/{case_id}",
        "/v1/escalations/{case_id}/info",
        "/v1/escalations/{case_id}/cancel",
        "/healthz",
        "/metrics",
    ):
        assert path in paths
    body = paths["/v1/escalations"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/CaseIn"}
    assert "Recommendation" in doc["components"]["schemas"]


def test_callback_host_patterns() -> None:
    from bot.config import host_allowed

    hosts = ["hooks.example.com", "*.internal.example.com"]
    assert host_allowed("https://hooks.example.com/x", hosts)
    assert host_allowed("http://a.b.internal.example.com:8080/x", hosts)
    assert not host_allowed("https://internal.example.com/x", hosts)  # *. means subdomains
    assert not host_allowed("https://hooks.example.com.evil.net/x", hosts)
    assert not host_allowed("https://evilhooks.example.com/x", hosts)
    assert not host_allowed("http://127.0.0.1:9/x", hosts)
    assert not host_allowed("http://169.254.169.254/latest/meta-data", hosts)
    assert host_allowed("http://169.254.169.254/", [])  # no list: any host, as before


async def test_a_callback_to_a_host_not_allowed_is_refused_and_nothing_is_written(
    make_runtime: Any, sqlite_url: str
) -> None:
    from tests.conftest import http_server

    rt = await make_runtime(sqlite_url, callback_hosts=["hooks.example.com"])
    async with http_server(rt) as base, httpx.AsyncClient(base_url=base) as client:
        api = Api(client, rt)
        refused = await api.post(
            "/v1/escalations", case(callback_url="http://169.254.169.254/latest/meta-data")
        )
        assert refused.status_code == 422, refused.text
        body = refused.json()
        assert body["message"] == (
            "callback_url's host '169.254.169.254' is not one that SIGNOFF_CALLBACK_HOSTS allows"
        )
        assert body["field"] == "callback_url"
        assert await api.count("cases") == 0
        accepted = await api.post(
            "/v1/escalations", case(callback_url="https://hooks.example.com/signoff")
        )
        assert accepted.status_code == 201, accepted.text


def test_a_bad_callback_host_pattern_is_named() -> None:
    from tests.test_cli import invoke

    result = invoke(["report", "weekly"], SIGNOFF_CALLBACK_HOSTS='["hooks.example.com/x"]')
    assert result.exit_code == 2
    assert "SIGNOFF_CALLBACK_HOSTS" in result.stderr
    assert "'hooks.example.com/x' is not a host name or a *.domain pattern" in result.stderr
