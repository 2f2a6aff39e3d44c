"""Signature v2 through a real server: a signature binds the method, the request
target as sent and the body; v1 only where SIGNOFF_ACCEPT_V1 allows it; a signed POST
sent again gets the first answer and changes nothing, across restarts and replicas;
callbacks and `signoff send` sign v2."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from bot import signing
from bot.api.app import create_app
from bot.api.auth import Authenticator
from bot.config import Source
from bot.intake import prepare
from bot.protocols import Reviewer
from bot.runtime import Runtime
from bot.schemas import CaseIn
from bot.store import replays
from tests.conftest import (
    OTHER_SECRET,
    SECRET,
    Api,
    MakeRuntime,
    case,
    http_server,
    wait_for,
)
from tests.receiver import Receiver, running

ALICE = Reviewer("memory", "U0ALICE", "Alice")
TABLES = ("cases", "events", "outbox", "decisions", "timers")


def v2(method: str, target: str, body: bytes = b"", *, secret: str = SECRET, at: int = 0) -> str:
    return signing.sign(secret, method, target, body, at or int(time.time()))


def v1(body: bytes = b"", *, secret: str = SECRET, at: int = 0) -> str:
    return signing.sign_v1(secret, body, at or int(time.time()))


async def send(
    api: Api, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> httpx.Response:
    """`method target` with these headers, the target sent as written."""
    request = api.client.build_request(
        method, target, content=body or None, headers={"Content-Type": "application/json"}
    )
    request.headers.update(headers or {})
    assert request.url.raw_path.decode() == target  # as written, not normalised
    return await api.client.send(request)


def signature(value: str) -> dict[str, str]:
    return {signing.HEADER: value}


async def counts(api: Api) -> dict[str, int]:
    return {table: await api.count(table) for table in TABLES}


async def status_of(api: Api, case_id: str) -> str:
    got = await api.get(f"/v1/escalations/{case_id}")
    assert got.status_code == 200, got.text
    return str(got.json()["status"])


async def asked(api: Api, title: str = "asked") -> str:
    """A case a reviewer asked for information about."""
    case_id = str((await api.submit(case(title=title)))["id"])
    await api.runtime.service.request_info(case_id, ALICE, "Which hotel?")
    return case_id


@pytest.fixture
async def v1_api(make_runtime: MakeRuntime, database_url: str) -> AsyncIterator[Api]:
    """A server with SIGNOFF_ACCEPT_V1=true."""
    runtime = await make_runtime(database_url, accept_v1=True)
    async with http_server(runtime) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield Api(client, runtime)


# -- the attacks of issue 12 ---------------------------------------------------------


@pytest.mark.parametrize("read", ["/v1/escalations", "/v1/escalations?status=pending", "case"])
async def test_a_get_signature_replayed_as_a_cancel_is_refused_and_cancels_nothing(
    api: Api, read: str
) -> None:
    ids = [str((await api.submit(case(title=f"case {i}")))["id"]) for i in range(3)]
    target = f"/v1/escalations/{ids[0]}" if read == "case" else read
    captured = v2("GET", target)
    assert (await send(api, "GET", target, headers=signature(captured))).status_code == 200
    before = await counts(api)
    for case_id in ids:
        replayed = await send(
            api, "POST", f"/v1/escalations/{case_id}/cancel", headers=signature(captured)
        )
        assert replayed.status_code == 401, replayed.text
        assert "does not match" in replayed.json()["message"]
    assert [await status_of(api, i) for i in ids] == ["pending"] * 3
    assert await counts(api) == before


async def test_a_v1_get_signature_cannot_cancel_even_with_accept_v1(v1_api: Api) -> None:
    """The old attack: a v1 GET signature covers only `t.` and the empty body, which is
    also a cancel's; v1 is taken on POST /v1/escalations alone."""
    case_id = str((await v1_api.submit())["id"])
    captured = v1()
    read = await send(v1_api, "GET", f"/v1/escalations/{case_id}", headers=signature(captured))
    assert read.status_code == 401
    before = await counts(v1_api)
    cancel = await send(
        v1_api, "POST", f"/v1/escalations/{case_id}/cancel", headers=signature(captured)
    )
    assert cancel.status_code == 401
    assert "only on POST /v1/escalations" in cancel.json()["message"]
    assert await status_of(v1_api, case_id) == "pending"
    assert await counts(v1_api) == before


async def test_an_info_answer_signed_for_one_case_is_refused_for_another(api: Api) -> None:
    a, b = await asked(api, "case A"), await asked(api, "case B")
    body = orjson.dumps({"text": "The Grand, two nights."})
    captured = v2("POST", f"/v1/escalations/{a}/info", body)
    before = await counts(api)
    crossed = await send(
        api, "POST", f"/v1/escalations/{b}/info", body, headers=signature(captured)
    )
    assert crossed.status_code == 401, crossed.text
    assert await status_of(api, b) == "info_requested"
    assert await counts(api) == before
    meant = await send(api, "POST", f"/v1/escalations/{a}/info", body, headers=signature(captured))
    assert meant.status_code == 200, meant.text
    assert (await status_of(api, a), await status_of(api, b)) == ("pending", "info_requested")


# -- replays: the first answer, and nothing changed ----------------------------------


async def twice(api: Api, target: str, body: bytes) -> tuple[httpx.Response, httpx.Response]:
    """The same signed request sent twice; asserts the second changed nothing."""
    headers = signature(v2("POST", target, body))
    first = await send(api, "POST", target, body, headers=headers)
    after_first = await counts(api)
    again = await send(api, "POST", target, body, headers=headers)
    assert await counts(api) == after_first
    assert (again.status_code, again.content) == (first.status_code, first.content)
    return first, again


async def test_a_submit_sent_twice_gets_the_first_answer(api: Api) -> None:
    first, _ = await twice(api, "/v1/escalations", orjson.dumps(case()))
    assert first.status_code == 201
    assert await api.count("cases") == 1
    assert await api.count("signatures") == 1


async def test_a_keyed_submit_sent_twice_gets_its_first_answer_too(api: Api) -> None:
    body = orjson.dumps(case(idempotency_key="order-7"))
    first, _ = await twice(api, "/v1/escalations", body)
    assert first.status_code == 201  # not the 200 of a resend signed afresh


async def test_a_cancel_sent_twice_gets_the_first_answer(api: Api) -> None:
    case_id = str((await api.submit())["id"])
    first, _ = await twice(api, f"/v1/escalations/{case_id}/cancel", b'{"reason": "withdrawn"}')
    assert first.status_code == 200
    assert first.json() == {"id": case_id, "status": "cancelled"}
    got = (await api.get(f"/v1/escalations/{case_id}")).json()
    assert [e["type"] for e in got["events"]].count("cancelled") == 1
    assert "refused" not in [e["type"] for e in got["events"]]  # not a second, refused cancel


async def test_an_info_answer_sent_twice_gets_the_first_answer(api: Api) -> None:
    case_id = await asked(api)
    first, _ = await twice(api, f"/v1/escalations/{case_id}/info", b'{"text": "The Grand."}')
    assert first.status_code == 200
    got = (await api.get(f"/v1/escalations/{case_id}")).json()
    assert [e["type"] for e in got["events"]].count("info_answered") == 1


async def test_a_refusal_sent_twice_is_answered_and_audited_once(api: Api) -> None:
    case_id = str((await api.submit())["id"])
    first, _ = await twice(api, f"/v1/escalations/{case_id}/info", b'{"text": "unasked"}')
    assert first.status_code == 409
    assert first.json()["error"] == "no_info_requested"
    got = (await api.get(f"/v1/escalations/{case_id}")).json()
    assert [e["type"] for e in got["events"]].count("refused") == 1


async def test_an_invalid_body_sent_twice_is_422_twice_and_claims_nothing(api: Api) -> None:
    case_id = str((await api.submit())["id"])
    first, _ = await twice(api, f"/v1/escalations/{case_id}/cancel", b'{"why": "x"}')
    assert first.status_code == 422
    assert await api.count("signatures") == 1  # the submit's


async def test_copies_sent_at_once_make_one_change(api: Api) -> None:
    case_id = str((await api.submit())["id"])
    target = f"/v1/escalations/{case_id}/cancel"
    headers = signature(v2("POST", target))
    cancels = await asyncio.gather(*(send(api, "POST", target, headers=headers) for _ in range(10)))
    assert {(r.status_code, r.content) for r in cancels} == {(200, cancels[0].content)}
    body = orjson.dumps(case(title="sent ten times at once"))
    headers = signature(v2("POST", "/v1/escalations", body))
    submits = await asyncio.gather(
        *(send(api, "POST", "/v1/escalations", body, headers=headers) for _ in range(10))
    )
    assert {r.status_code for r in submits} == {201}
    assert len({r.json()["id"] for r in submits}) == 1
    assert await api.count("cases") == 2
    got = (await api.get(f"/v1/escalations/{case_id}")).json()
    assert [e["type"] for e in got["events"]] == ["received", "routed", "cancelled"]


async def test_copies_in_one_intake_batch_make_one_case(
    make_runtime: MakeRuntime, database_url: str
) -> None:
    """The writer's own batch: two requests with one signature, committed together."""
    rt = await make_runtime(database_url)
    body = CaseIn.model_validate(case())
    expires = datetime.now(UTC) + timedelta(seconds=300)
    copies = [prepare(body, rt.policy, rt.platforms, rt.clock.now(), None) for _ in range(3)]
    for p in copies:
        p.replay_key, p.replay_expires_at = "d" * 64, expires
    answers = await asyncio.gather(*(rt.writer.submit(p) for p in copies))
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert [a.replayed for a in answers] == [False, True, True]
    assert len({a.response["id"] for a in answers}) == 1
    async with rt.engine.connect() as conn:
        from sqlalchemy import text

        assert (await conn.execute(text("SELECT count(*) FROM cases"))).scalar_one() == 1


async def test_a_replay_is_known_after_a_restart_and_to_another_replica(
    make_runtime: MakeRuntime, database_url: str
) -> None:
    first_rt = await make_runtime(database_url)
    body = orjson.dumps(case())
    submit = signature(v2("POST", "/v1/escalations", body))
    async with http_server(first_rt) as base, httpx.AsyncClient(base_url=base) as client:
        api = Api(client, first_rt)
        created = await send(api, "POST", "/v1/escalations", body, headers=submit)
        assert created.status_code == 201
        cancel_target = f"/v1/escalations/{created.json()['id']}/cancel"
        cancel = signature(v2("POST", cancel_target))
        cancelled = await send(api, "POST", cancel_target, headers=cancel)
        assert cancelled.status_code == 200
    await first_rt.stop()
    # two replicas on the database the first one left: neither makes a second change
    replicas = [await make_runtime(database_url), await make_runtime(database_url)]
    for rt in replicas:
        async with http_server(rt) as base, httpx.AsyncClient(base_url=base) as client:
            api = Api(client, rt)
            before = await counts(api)
            again = await send(api, "POST", "/v1/escalations", body, headers=submit)
            assert (again.status_code, again.content) == (201, created.content)
            again = await send(api, "POST", cancel_target, headers=cancel)
            assert (again.status_code, again.content) == (200, cancelled.content)
            assert await counts(api) == before == {**before, "cases": 1}


# -- v1 ------------------------------------------------------------------------------


async def test_v1_is_refused_by_default_with_how_to_sign_v2(api: Api) -> None:
    body = orjson.dumps(case())
    response = await send(api, "POST", "/v1/escalations", body, headers=signature(v1(body)))
    assert response.status_code == 401
    message = response.json()["message"]
    assert "v1 signatures (over the body alone) are no longer accepted" in message
    assert '"<t>.<METHOD>.<path?query>." + the exact body bytes' in message
    assert await api.count("cases") == 0


async def test_v1_is_taken_on_submit_with_accept_v1_and_warned_once(
    v1_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.api.auth")
    macs = []
    for i in range(3):
        body = orjson.dumps(case(title=f"old sender {i}"))
        header = v1(body)
        macs.append(header.partition("v1=")[2])
        response = await send(v1_api, "POST", "/v1/escalations", body, headers=signature(header))
        assert response.status_code == 201, response.text
    assert await v1_api.count("cases") == 3
    warnings = [r for r in caplog.records if r.name == "bot.api.auth"]
    assert len(warnings) == 1
    said = warnings[0].getMessage()
    assert "source 'default' signed POST /v1/escalations with a v1 signature" in said
    assert "SIGNOFF_ACCEPT_V1" in said
    for secret in (SECRET, *macs):
        assert secret not in caplog.text


async def test_a_v1_submit_sent_twice_gets_the_first_answer(v1_api: Api) -> None:
    body = orjson.dumps(case())
    headers = signature(v1(body))
    first = await send(v1_api, "POST", "/v1/escalations", body, headers=headers)
    again = await send(v1_api, "POST", "/v1/escalations", body, headers=headers)
    assert (first.status_code, again.content) == (201, first.content)
    assert await v1_api.count("cases") == 1


async def test_v1_is_refused_everywhere_else_even_with_accept_v1(v1_api: Api) -> None:
    case_id = await asked(v1_api)
    before = await counts(v1_api)
    info = orjson.dumps({"text": "here"})
    tries = [
        ("GET", f"/v1/escalations/{case_id}", b""),
        ("GET", "/v1/escalations", b""),
        ("POST", f"/v1/escalations/{case_id}/info", info),
        ("POST", f"/v1/escalations/{case_id}/cancel", b""),
        ("POST", "/v1/escalations?dry_run=1", orjson.dumps(case())),
        ("POST", "/v1/escalation%73", orjson.dumps(case())),
    ]
    for method, target, body in tries:
        response = await send(v1_api, method, target, body, headers=signature(v1(body)))
        assert response.status_code == 401, (target, response.text)
        message = response.json()["message"]
        assert "accepted only on POST /v1/escalations" in message
        assert "sign v2" in message
    assert await counts(v1_api) == before
    assert await status_of(v1_api, case_id) == "info_requested"


async def test_beside_a_v2_entry_v1_is_not_looked_at(v1_api: Api) -> None:
    body = orjson.dumps(case())
    now = int(time.time())
    good_v1 = signing.signature_v1(SECRET, body, now)
    good_v2 = signing.signature_v2(SECRET, "POST", "/v1/escalations", body, now)
    bad = "0" * 64
    refused = await send(
        v1_api, "POST", "/v1/escalations", body, headers=signature(f"t={now},v1={good_v1},v2={bad}")
    )
    assert refused.status_code == 401
    assert "does not match" in refused.json()["message"]
    assert await v1_api.count("cases") == 0
    taken = await send(
        v1_api, "POST", "/v1/escalations", body, headers=signature(f"t={now},v1={bad},v2={good_v2}")
    )
    assert taken.status_code == 201, taken.text


def test_the_v1_warning_is_said_once_per_source_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.api.auth")
    sources = {"default": Source(secret=SECRET), "billing": Source(secret=OTHER_SECRET)}  # type: ignore[arg-type]
    auth = Authenticator(sources, 300, accept_v1=True, warn_every=3600)
    body = b"{}"
    start = int(time.time())

    def submit(secret: str, at: float) -> str:
        header = {"x-signoff-signature": v1(body, secret=secret, at=int(at))}
        return auth.source("POST", "/v1/escalations", header, body, at)

    for at in (start, start + 10, start + 3599):
        assert submit(SECRET, at) == "default"
    assert submit(OTHER_SECRET, start + 20) == "billing"
    assert submit(SECRET, start + 3601) == "default"
    said = [r.getMessage() for r in caplog.records]
    assert [s.split()[1] for s in said] == ["'default'", "'billing'", "'default'"]


# -- tampering -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent", ["?status=approved", "", "?status=pending&lane=review", "?status=pending&"]
)
async def test_a_changed_query_string_is_refused(api: Api, sent: str) -> None:
    captured = v2("GET", "/v1/escalations?status=pending")
    assert (
        await send(api, "GET", "/v1/escalations?status=pending", headers=signature(captured))
    ).status_code == 200
    tampered = await send(api, "GET", f"/v1/escalations{sent}", headers=signature(captured))
    assert tampered.status_code == 401


async def test_query_parameters_are_signed_in_the_order_sent(api: Api) -> None:
    signed_for = "/v1/escalations?status=pending&limit=5"
    captured = v2("GET", signed_for)
    assert (await send(api, "GET", signed_for, headers=signature(captured))).status_code == 200
    swapped = await send(
        api, "GET", "/v1/escalations?limit=5&status=pending", headers=signature(captured)
    )
    assert swapped.status_code == 401


@pytest.mark.parametrize(
    ("signed_as", "sent_as"), [("GET", "POST"), ("PUT", "POST"), ("DELETE", "POST")]
)
async def test_a_changed_method_is_refused(api: Api, signed_as: str, sent_as: str) -> None:
    case_id = str((await api.submit())["id"])
    target = f"/v1/escalations/{case_id}/cancel"
    before = await counts(api)
    response = await send(api, sent_as, target, headers=signature(v2(signed_as, target)))
    assert response.status_code == 401
    assert await counts(api) == before
    assert await status_of(api, case_id) == "pending"


async def test_the_method_is_signed_in_upper_case(api: Api) -> None:
    case_id = str((await api.submit())["id"])
    target = f"/v1/escalations/{case_id}/cancel"
    now = int(time.time())
    message = f"{now}.post.{target}.".encode()
    lower = hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()
    assert (
        await send(api, "POST", target, headers=signature(f"t={now},v2={lower}"))
    ).status_code == 401
    assert (
        await send(api, "POST", target, headers=signature(v2("post", target)))
    ).status_code == 200


async def test_the_path_is_signed_exactly_as_sent(api: Api) -> None:
    case_id = str((await api.submit())["id"])
    plain = f"/v1/escalations/{case_id}/cancel"
    encoded = f"/v1/escalations/%{ord(case_id[0]):02X}{case_id[1:]}/cancel"
    upper = f"/v1/escalations/{case_id.upper()}/cancel"
    before = await counts(api)
    # (a bare `?` is no change: ASGI gives the server no query either way)
    for sent in (encoded, upper, plain.replace("/cancel", "/%63ancel")):
        response = await send(api, "POST", sent, headers=signature(v2("POST", plain)))
        assert response.status_code in (401, 404), (sent, response.text)
        assert response.status_code == 401 or sent == upper  # an upper-case id is no case
    assert await counts(api) == before
    assert await status_of(api, case_id) == "pending"
    # the encoded form, signed as sent, names the same case and is accepted
    taken = await send(api, "POST", encoded, headers=signature(v2("POST", encoded)))
    assert taken.status_code == 200, taken.text
    assert await status_of(api, case_id) == "cancelled"


async def test_an_encoded_submit_path_must_be_signed_as_sent(api: Api) -> None:
    body = orjson.dumps(case())
    sent = "/v1/escalation%73"
    refused = await send(
        api, "POST", sent, body, headers=signature(v2("POST", "/v1/escalations", body))
    )
    assert refused.status_code == 401
    assert await api.count("cases") == 0
    taken = await send(api, "POST", sent, body, headers=signature(v2("POST", sent, body)))
    assert taken.status_code == 201, taken.text


# -- rotation and the window ------------------------------------------------------------


@pytest.mark.parametrize("order", ["old first", "new first"])
async def test_rotation_two_v2_entries_either_may_match(api: Api, order: str) -> None:
    case_id = str((await api.submit())["id"])
    target = f"/v1/escalations/{case_id}/cancel"
    now = int(time.time())
    old = signing.signature_v2("the-old-secret", "POST", target, b"", now)
    new = signing.signature_v2(SECRET, "POST", target, b"", now)
    entries = [old, new] if order == "old first" else [new, old]
    header = f"t={now}," + ",".join(f"v2={e}" for e in entries)
    assert (await send(api, "POST", target, headers=signature(header))).status_code == 200


async def test_rotation_with_no_matching_entry_is_refused(api: Api) -> None:
    case_id = str((await api.submit())["id"])
    target = f"/v1/escalations/{case_id}/cancel"
    now = int(time.time())
    entries = [signing.signature_v2(s, "POST", target, b"", now) for s in ("a", "b")]
    header = f"t={now}," + ",".join(f"v2={e}" for e in entries)
    assert (await send(api, "POST", target, headers=signature(header))).status_code == 401
    assert await status_of(api, case_id) == "pending"


@pytest.mark.parametrize("skew", [-301, 301])
async def test_a_cancel_outside_the_window_is_refused(api: Api, skew: int) -> None:
    case_id = str((await api.submit())["id"])
    target = f"/v1/escalations/{case_id}/cancel"
    at = int(time.time()) + skew
    response = await send(api, "POST", target, headers=signature(v2("POST", target, at=at)))
    assert response.status_code == 401
    assert "the window is 300 s" in response.json()["message"]
    assert await status_of(api, case_id) == "pending"


async def test_a_signature_is_kept_until_its_window_closes(api: Api) -> None:
    at = int(time.time()) - 100
    body = orjson.dumps(case())
    response = await send(
        api,
        "POST",
        "/v1/escalations",
        body,
        headers=signature(v2("POST", "/v1/escalations", body, at=at)),
    )
    assert response.status_code == 201
    async with api.runtime.engine.connect() as conn:
        from sqlalchemy import select

        from bot.store.tables import read_utc, signatures

        [row] = (await conn.execute(select(signatures))).mappings().all()
    assert read_utc(row["expires_at"]) == datetime.fromtimestamp(at + 300, UTC)
    assert row["source"] == "default"
    assert row["status"] == 201
    assert orjson.loads(row["response"]) == response.json()
    # what is stored is a hash, not the MAC
    mac = signing.signature_v2(SECRET, "POST", "/v1/escalations", body, at)
    assert row["digest"] != mac


async def test_a_replay_after_the_window_is_refused_though_its_row_is_swept(
    make_runtime: MakeRuntime, database_url: str
) -> None:
    rt = await make_runtime(database_url, signature_window=2)
    async with http_server(rt) as base, httpx.AsyncClient(base_url=base) as client:
        api = Api(client, rt)
        case_id = str((await api.submit())["id"])
        target = f"/v1/escalations/{case_id}/cancel"
        headers = signature(v2("POST", target, at=int(time.time()) - 1))
        assert (await send(api, "POST", target, headers=headers)).status_code == 200
        await asyncio.sleep(2.2)
        assert await replays.sweep_all(rt.store, datetime.now(UTC)) >= 1
        late = await send(api, "POST", target, headers=headers)
        assert late.status_code == 401
        assert "window" in late.json()["message"]


async def test_the_sweep_forgets_only_closed_windows(
    make_runtime: MakeRuntime, database_url: str
) -> None:
    rt = await make_runtime(database_url)
    now = datetime.now(UTC).replace(microsecond=0)
    closed = [(now - timedelta(seconds=s), f"{s:064d}") for s in range(1, 8)]
    open_ = [(now + timedelta(seconds=s), f"{100 + s:064d}") for s in (0, 1, 300)]
    for key in closed + open_:
        assert await rt.store.run_write(lambda c, k=key: replays.claim(c, k, "default"))  # type: ignore[misc]
    assert await rt.store.run_write(lambda c: replays.sweep(c, now, limit=3)) == 3
    assert await replays.sweep_all(rt.store, now) == 4
    left = await rt.store.run_read(lambda c: replays.known(c, closed + open_))
    assert sorted(left) == sorted(d for _, d in open_)


async def test_the_writer_sweeps_on_its_own(
    make_runtime: MakeRuntime, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.intake

    monkeypatch.setattr(bot.intake, "SWEEP_EVERY", 0.05)
    rt = await make_runtime(sqlite_url)
    gone = (datetime.now(UTC) - timedelta(seconds=1), "a" * 64)
    await rt.store.run_write(lambda c: replays.claim(c, gone, "default"))

    async def left() -> int:
        return len(await rt.store.run_read(lambda c: replays.known(c, [gone])))

    for _ in range(100):
        if not await left():
            break
        await asyncio.sleep(0.05)
    assert await left() == 0


# -- bearer tokens, and which routes are guarded --------------------------------------


async def test_a_bearer_request_has_no_signature_to_replay(api: Api) -> None:
    """What protects a bearer-token submit from being counted twice is its
    Idempotency-Key; a bearer cancel sent twice is two cancels, the second refused."""
    bearer = {"Authorization": "Bearer billing-token"}
    body = orjson.dumps(case(source="billing"))
    keyed = {**bearer, "Idempotency-Key": "b-1"}
    first = await send(api, "POST", "/v1/escalations", body, keyed)
    again = await send(api, "POST", "/v1/escalations", body, keyed)
    assert (first.status_code, again.status_code) == (201, 200)
    target = f"/v1/escalations/{first.json()['id']}/cancel"
    assert (await send(api, "POST", target, headers=bearer)).status_code == 200
    second = await send(api, "POST", target, headers=bearer)
    assert second.status_code == 409
    assert second.json()["error"] == "already_decided"
    assert await api.count("signatures") == 0


def test_every_mutating_route_is_one_these_tests_replay(runtime: Runtime) -> None:
    """A new POST under /v1/escalations must go through the replay guard
    (`workflow_change` in bot/api/app.py) and be added to the tests above."""
    app = create_app(runtime, manage_runtime=False)
    posts = {
        route.path  # type: ignore[attr-defined]
        for route in app.routes
        if "POST" in getattr(route, "methods", set()) and route.path.startswith("/v1/")  # type: ignore[attr-defined]
    }
    assert posts == {
        "/v1/escalations",
        "/v1/escalations/{case_id}/info",
        "/v1/escalations/{case_id}/cancel",
    }


async def test_the_openapi_document_names_the_security_schemes(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["signature"]["type"] == "apiKey"
    assert schemes["signature"]["in"] == "header"
    assert schemes["signature"]["name"] == "X-Signoff-Signature"
    assert "<t>.<METHOD>.<path?query>." in schemes["signature"]["description"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/v1/escalations"):
                assert operation["security"] == [{"signature": []}, {"bearer": []}], (path, method)
            elif path.startswith("/v1/reports/"):
                assert operation["security"] == [{"reportsToken": []}]
            else:
                assert "security" not in operation, path


# -- callbacks and `signoff send` -----------------------------------------------------


async def test_callbacks_are_signed_v2_over_the_callback_urls_own_path_and_query(
    make_runtime: MakeRuntime, database_url: str
) -> None:
    async with running(Receiver(SECRET)) as receiver:
        rt = await make_runtime(database_url, callback_hosts=["127.0.0.1"])
        url = receiver.url.replace("/hook", "/hooks/signoff") + "?tenant=a%20b&k=1"
        body = CaseIn.model_validate(case(callback_url=url, **{"recommendation.confidence": 0.99}))
        await rt.writer.submit(prepare(body, rt.policy, rt.platforms, rt.clock.now(), None))
        await wait_for(lambda: len(receiver.received) == 1)
    [delivery] = receiver.received
    assert delivery.target == "/hooks/signoff?tenant=a%20b&k=1"
    assert delivery.signature_ok  # v2, POST, that target, those bytes
    parsed = signing.parse(delivery.headers["x-signoff-signature"])
    assert parsed.v2
    assert not parsed.v1
    for other in ("/hooks/signoff", "/hook?tenant=a%20b&k=1", "/hooks/signoff?k=1&tenant=a%20b"):
        assert signing.matches(SECRET, "POST", other, delivery.raw, parsed) is None
    assert signing.matches(SECRET, "POST", delivery.target, delivery.raw, parsed) == "v2"


async def test_send_signs_v2_for_the_path_under_a_url_prefix(isolated: Path) -> None:
    from tests.test_cli import EXAMPLES, run_cli

    async with running(Receiver(SECRET)) as receiver:
        base = receiver.url.replace("/hook", "/signoff/")
        code, _, err = await run_cli(
            "send", "--url", base, str(EXAMPLES / "refund.json"), cwd=isolated,
            SIGNOFF_WEBHOOK_SECRET=SECRET,
        )  # fmt: skip
    assert code == 0, err
    [delivery] = receiver.received
    assert delivery.target == "/signoff/v1/escalations"
    assert delivery.signature_ok
    assert delivery.raw == (EXAMPLES / "refund.json").read_bytes()


@pytest.fixture
def isolated(tmp_path: Path) -> Path:
    return tmp_path
