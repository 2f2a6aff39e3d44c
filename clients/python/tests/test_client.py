"""The sync and async clients against a real `signoff serve`."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from serverkit import SECRET, Reviewer, Server, a_case, proxy

from signoff_client import AsyncSignoff, Change, Signoff, SignoffError, TimedOut
from signoff_client.signing import HEADER, matches


def test_submit_get_and_wait_for_an_approval(signoff: Signoff, reviewer: Reviewer) -> None:
    case = signoff.submit(a_case())
    assert case.status == "pending"
    assert case.lane == "review"
    assert case.decision is None
    read = signoff.get(case.id)
    assert (read.id, read.status, read.kind) == (case.id, "pending", "tool_call")
    assert read.events
    started = time.monotonic()
    later = reviewer.decide_later(case.id, 1.0, "approve", reason="fine by me")
    decision = signoff.wait(case.id, timeout=30)
    later.join()
    assert time.monotonic() - started >= 1.0
    assert decision.action == "approve"
    assert decision.approved
    assert decision.reason_code == "safe_action"
    assert decision.reason == "fine by me"
    assert decision.reviewer == "web:alice@example.com"
    assert decision.decided_by == "human"
    assert decision.args is None
    assert not decision.timed_out
    assert signoff.get(case.id).status == "approved"


def test_a_rejection_is_returned_not_raised(signoff: Signoff, reviewer: Reviewer) -> None:
    case = signoff.submit(**a_case())
    reviewer.decide(case.id, "reject", "not_authorized", "the customer opted out")
    decision = signoff.wait(case.id, timeout=30)
    assert decision.action == "reject"
    assert not decision.approved
    assert (decision.reason_code, decision.reason) == ("not_authorized", "the customer opted out")
    assert decision.decided_by == "human"


def test_the_auto_lane_decides_at_once(signoff: Signoff) -> None:
    sure = a_case(recommendation={"action": "approve", "confidence": 0.99})
    case = signoff.submit(sure)
    assert case.status == "auto_decided"
    assert case.decision is not None
    assert case.decision.decided_by == "policy"
    decision = signoff.wait(case.id, timeout=5)
    assert (decision.action, decision.decided_by) == ("approve", "policy")


def test_a_timeout_gives_the_safe_default_marked_so(signoff: Signoff) -> None:
    case = signoff.submit(a_case())
    started = time.monotonic()
    decision = signoff.wait(case.id, timeout=1.5)
    waited = time.monotonic() - started
    assert 1.4 <= waited < 5
    assert decision.action == "reject"
    assert decision.timed_out
    assert decision.decided_by == "timeout"
    assert signoff.get(case.id).status == "pending"  # the case itself stays open
    approving = signoff.wait(case.id, timeout=0.5, on_timeout="approve")
    assert (approving.action, approving.timed_out) == ("approve", True)
    with pytest.raises(TimedOut) as raised:
        signoff.wait(case.id, timeout=0.5, on_timeout=None)
    assert raised.value.case_id == case.id


def test_wait_does_not_spin_on_a_server_that_answers_at_once(
    server: Server, signoff: Signoff
) -> None:
    # Until the server holds long-polls, each GET comes back at once; count them
    case = signoff.submit(a_case())
    gets: list[str] = []

    def count(request: httpx.Request) -> None:
        gets.append(request.url.raw_path.decode())

    with httpx.Client(event_hooks={"request": [count]}) as http:
        decision = Signoff(server.url, secret=SECRET, http=http).wait(case.id, timeout=3)
    assert decision.timed_out
    # a long-polling server holds each GET (wait=3, then the rest); one that answers at
    # once is asked again after 0.2 s, 0.3 s, 0.45 s, ... up to 2 s apart
    assert 1 <= len(gets) <= 12, gets
    assert gets[0] in (f"/v1/escalations/{case.id}?wait={s}" for s in (2, 3))


def test_cancel(signoff: Signoff) -> None:
    case = signoff.submit(a_case())
    changed = signoff.cancel(case.id, reason="the customer withdrew")
    assert (changed.id, changed.status) == (case.id, "cancelled")
    decision = signoff.wait(case.id, timeout=5)
    assert (decision.action, decision.decided_by) == ("reject", "workflow")
    assert decision.reason == "the customer withdrew"
    with pytest.raises(SignoffError) as again:
        signoff.cancel(case.id)
    assert again.value.status == 409
    assert again.value.message


def test_answer_info(signoff: Signoff, reviewer: Reviewer) -> None:
    case = signoff.submit(a_case())
    reviewer.decide(case.id, "request_info", "", "Which quarter?")
    assert signoff.get(case.id).status == "info_requested"
    answered = signoff.answer_info(case.id, "Q3", facts={"quarter": "Q3"})
    assert (answered.id, answered.status) == (case.id, "pending")
    events = signoff.get(case.id).events
    assert [e.type for e in events][-2:] == ["info_requested", "info_answered"]
    assert events[-1].detail == {"text": "Q3", "facts": {"quarter": "Q3"}}


def test_answer_info_when_nobody_asked_is_the_servers_409(signoff: Signoff) -> None:
    case = signoff.submit(a_case())
    with pytest.raises(SignoffError) as refused:
        signoff.answer_info(case.id, "nobody asked")
    assert refused.value.status == 409
    assert refused.value.code
    assert refused.value.message


def test_a_bad_secret_is_the_servers_401(server: Server) -> None:
    with Signoff(server.url, secret="not-the-secret") as wrong, pytest.raises(SignoffError) as bad:
        wrong.submit(a_case())
    assert bad.value.status == 401
    assert bad.value.code == "unauthorized"
    assert "signature" in bad.value.message.lower()


def test_an_invalid_case_is_the_servers_422_with_its_fields(signoff: Signoff) -> None:
    with pytest.raises(SignoffError) as bad:
        signoff.submit(a_case(flags=["Bad Flag"]))
    assert bad.value.status == 422
    assert bad.value.code == "validation_failed"
    assert [e["field"] for e in bad.value.errors] == ["flags.0"]
    assert "flags.0" in bad.value.message


def test_an_unknown_case_is_a_404(signoff: Signoff) -> None:
    with pytest.raises(SignoffError) as missing:
        signoff.get("no-such-case")
    assert missing.value.status == 404
    assert missing.value.code == "not_found"


def test_report_outcome_sends_a_signed_post_to_the_contracts_route(
    server: Server, signoff: Signoff
) -> None:
    case = signoff.submit(a_case())
    answer: Change | SignoffError
    with proxy(server.url, "none") as seen, Signoff(seen.url, secret=SECRET) as through:
        try:
            answer = through.report_outcome(
                case.id, "incorrect", actual_action="reject", note="it bounced"
            )
        except SignoffError as exc:
            answer = exc
    if isinstance(answer, SignoffError):
        # the server has no /outcome route yet: its JSON 404 (or 405) comes through
        assert answer.status in (404, 405), answer
        assert f"/v1/escalations/{case.id}/outcome" in answer.message
    else:  # the route has arrived
        assert answer.id == case.id
    sent = seen.seen[-1]
    target = f"/v1/escalations/{case.id}/outcome"
    assert (sent.method, sent.path) == ("POST", target)
    assert json.loads(sent.body) == {
        "outcome": "incorrect",
        "actual_action": "reject",
        "note": "it bounced",
    }
    assert matches(SECRET, "POST", target, sent.body, sent.headers[HEADER])
    assert sent.headers["Content-Type"] == "application/json"


def test_settings_come_from_the_environment(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNOFF_URL", server.url)
    monkeypatch.setenv("SIGNOFF_SECRET", SECRET)
    with Signoff() as client:
        assert client.submit(a_case()).status == "pending"
    monkeypatch.delenv("SIGNOFF_SECRET")
    monkeypatch.delenv("SIGNOFF_TOKEN", raising=False)
    with pytest.raises(SignoffError, match="no credentials"):
        Signoff()


def test_a_bearer_token_the_server_does_not_know_is_refused(server: Server) -> None:
    with Signoff(server.url, token="unknown-token") as client, pytest.raises(SignoffError) as bad:
        client.get("anything")
    assert bad.value.status == 401


# -- the async client ----------------------------------------------------------------


async def test_async_submit_wait_and_cancel(asignoff: AsyncSignoff, reviewer: Reviewer) -> None:
    case = await asignoff.submit(a_case())
    assert (await asignoff.get(case.id)).status == "pending"
    waiting = asyncio.create_task(asignoff.wait(case.id, timeout=30))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    await asyncio.to_thread(reviewer.decide, case.id, "approve", "safe_action", "ok")
    decision = await waiting
    assert (decision.action, decision.reviewer) == ("approve", "web:alice@example.com")
    other = await asignoff.submit(a_case())
    assert (await asignoff.cancel(other.id)).status == "cancelled"
    timed = await asignoff.wait((await asignoff.submit(a_case())).id, timeout=1)
    assert (timed.action, timed.timed_out) == ("reject", True)


async def test_async_errors_carry_the_servers_message(server: Server) -> None:
    async with AsyncSignoff(server.url, secret="wrong") as wrong:
        with pytest.raises(SignoffError) as bad:
            await wrong.get("x")
    assert bad.value.status == 401
    assert bad.value.message
