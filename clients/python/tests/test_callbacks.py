"""verify_callback on a real callback from the server, and on forged ones."""

from __future__ import annotations

import json
import time

import pytest
from serverkit import SECRET, Received, Reviewer, Server, a_case, receiver

from signoff_client import CallbackError, ReplayedCallback, Signoff, verify_callback
from signoff_client.signing import HEADER, sign, signature

PATH = "/hooks/signoff?team=7"


@pytest.fixture(scope="module")
def delivered(server: Server, reviewer: Reviewer) -> tuple[str, Received]:
    """A decision callback as the server sent it, and the URL it went to."""
    with receiver() as hooks, Signoff(server.url, secret=SECRET) as signoff:
        case = signoff.submit(a_case(callback_url=hooks.url + PATH))
        reviewer.decide(case.id, "approve", reason="ship it")
        got = hooks.wait_for(1)[0]
        return hooks.url + got.path, got


def test_a_real_callback_verifies(delivered: tuple[str, Received]) -> None:
    url, got = delivered
    assert got.path == PATH
    found = verify_callback(SECRET, got.method, url, got.headers, got.body)
    assert found["type"] == "decision"
    assert found["escalation"]["status"] == "approved"
    assert found["decision"]["action"] == "approve"
    assert found["decision"]["reason"] == "ship it"


def test_a_repeat_of_a_delivery_is_refused_as_a_replay(delivered: tuple[str, Received]) -> None:
    url, got = delivered
    seen: set[str] = set()
    verify_callback(SECRET, "POST", url, got.headers, got.body, seen=seen)
    assert seen == {got.headers["X-Signoff-Delivery"]}
    with pytest.raises(ReplayedCallback) as again:
        verify_callback(SECRET, "POST", url, got.headers, got.body, seen=seen)
    assert isinstance(again.value, CallbackError)
    assert again.value.delivery == got.headers["X-Signoff-Delivery"]


def test_another_secret_path_method_or_body_is_refused(delivered: tuple[str, Received]) -> None:
    url, got = delivered
    base = url.split("/hooks/")[0]
    for secret, method, where, body in (
        ("another-secret", "POST", url, got.body),
        (SECRET, "POST", base + "/hooks/other?team=7", got.body),
        (SECRET, "POST", base + "/hooks/signoff?team=8", got.body),
        (SECRET, "PUT", url, got.body),
        (SECRET, "POST", url, got.body.replace(b"ship it", b"ship it!")),
    ):
        with pytest.raises(CallbackError, match="does not match"):
            verify_callback(secret, method, where, got.headers, body)


def test_an_old_callback_is_refused(delivered: tuple[str, Received]) -> None:
    url, got = delivered
    stamp = int(got.headers[HEADER].split(",")[0].removeprefix("t="))
    verify_callback(SECRET, "POST", url, got.headers, got.body, now=stamp + 299)
    with pytest.raises(CallbackError, match="window is 300 s"):
        verify_callback(SECRET, "POST", url, got.headers, got.body, now=stamp + 301)
    with pytest.raises(CallbackError, match="window is 60 s"):
        verify_callback(SECRET, "POST", url, got.headers, got.body, now=stamp + 61, window=60)


def test_signatures_made_to_the_contract_verify() -> None:
    # computed here, independently of the server, from the scheme as written
    body = json.dumps({"type": "expired", "escalation": {"id": "x"}, "decision": None}).encode()
    now = int(time.time())
    headers = {
        # two v2 entries, as while a secret is rotated: one match is enough
        "x-signoff-signature": f"t={now},v2=00ff,v2={signature(SECRET, 'POST', '/cb', body, now)}",
        "x-signoff-delivery": "41",
    }
    assert verify_callback(SECRET, "post", "https://w.example/cb", headers, body)["type"] == (
        "expired"
    )
    for bad in ("", "t=1", f"t={now},v1=abc", "v2=abc", "x" * 2000):
        with pytest.raises(CallbackError, match="must look like"):
            verify_callback(SECRET, "POST", "https://w.example/cb", {HEADER: bad}, body)
    with pytest.raises(CallbackError, match="no X-Signoff-Signature"):
        verify_callback(SECRET, "POST", "https://w.example/cb", {}, body)
    with pytest.raises(CallbackError, match="no X-Signoff-Delivery"):
        verify_callback(
            SECRET,
            "POST",
            "https://w.example/cb",
            {HEADER: sign(SECRET, "POST", "/cb", body, now)},
            body,
            seen=set(),
        )
