"""Retries through a proxy on 127.0.0.1 that fails the first request in a chosen way."""

from __future__ import annotations

import pytest
from serverkit import SECRET, Server, a_case, free_port, proxy

from signoff_client import AsyncSignoff, Signoff, SignoffError
from signoff_client.signing import HEADER


def pending_ids(signoff: Signoff) -> set[str]:
    return {case.id for case in signoff.cases(limit=200).items}


@pytest.mark.parametrize("first", ["503", "drop", "lost"])
def test_a_submit_is_retried_with_the_same_key_and_made_once(
    server: Server, signoff: Signoff, first: str
) -> None:
    before = pending_ids(signoff)
    with (
        proxy(server.url, first) as seen,
        Signoff(seen.url, secret=SECRET, retries=2, backoff=0.05) as through,
    ):
        case = through.submit(a_case())
    tries = seen.seen
    assert len(tries) == 2
    keys = {t.headers["Idempotency-Key"] for t in tries}
    assert len(keys) == 1
    assert keys.pop()
    assert tries[0].body == tries[1].body
    assert tries[0].headers[HEADER] == tries[1].headers[HEADER]
    made = pending_ids(signoff) - before
    assert made == {case.id}  # one case, whichever try reached the server
    assert signoff.get(case.id).status == "pending"


def test_a_lost_cancel_answer_is_retried_and_gets_the_first_answer(
    server: Server, signoff: Signoff
) -> None:
    case = signoff.submit(a_case())
    with (
        proxy(server.url, "lost") as seen,
        Signoff(seen.url, secret=SECRET, backoff=0.05) as through,
    ):
        changed = through.cancel(case.id, reason="no longer needed")
    assert len(seen.seen) == 2
    assert changed.status == "cancelled"  # not a 409: the server knew the request


def test_retries_run_out_with_a_signoff_error(server: Server) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with (
        Signoff(closed, secret=SECRET, retries=1, backoff=0.05) as nowhere,
        pytest.raises(SignoffError) as unreachable,
    ):
        nowhere.get("x")
    assert unreachable.value.status is None
    assert "after 2 tries" in unreachable.value.message


def test_a_5xx_that_lasts_is_the_last_answer(server: Server) -> None:
    with (
        proxy(server.url, "503") as seen,
        Signoff(seen.url, secret=SECRET, retries=0) as once,
        pytest.raises(SignoffError) as failed,
    ):
        once.get("x")
    assert (failed.value.status, failed.value.message) == (503, "try again")


async def test_the_async_client_retries_too(server: Server) -> None:
    with proxy(server.url, "drop") as seen:
        async with AsyncSignoff(seen.url, secret=SECRET, backoff=0.05) as through:
            case = await through.submit(a_case())
    assert case.status == "pending"
    assert len({t.headers["Idempotency-Key"] for t in seen.seen}) == 1
    assert len(seen.seen) == 2
