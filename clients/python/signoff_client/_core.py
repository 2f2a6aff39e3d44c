"""What the two clients share: every request built, signed, retried and read here, as
plans (generators) that yield what to do next, a `Send` or a `Sleep`, and are sent
back what came of it. `Signoff` runs plans with httpx.Client and time.sleep,
`AsyncSignoff` with httpx.AsyncClient and asyncio.sleep; the logic exists once.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlencode

import httpx
from pydantic_core import to_json

from signoff_client import signing
from signoff_client.errors import SignoffError, TimedOut
from signoff_client.models import Case, CasePage, Change, Decision

VERSION = "0.1.0"
#: the longest long-poll the server holds (DESIGN: `wait` at most 60 s)
MAX_POLL = 60
#: between GETs that came back early and undecided: from this, growing, up to MAX_PAUSE
FIRST_PAUSE, MAX_PAUSE = 0.2, 2.0
#: a retry reuses its request's signature (so that the server answers a request it
#: already took with its first answer) until the signature is this old, then re-signs
RESIGN_AFTER = 240.0
RETRY_STATUSES = frozenset({429}) | frozenset(range(500, 600))

OnTimeout = Literal["approve", "reject"] | None
T = TypeVar("T")


@dataclass(frozen=True)
class Send:
    request: httpx.Request


@dataclass(frozen=True)
class Sleep:
    seconds: float


Effect = Send | Sleep
#: what a runner sends back: the answer, or the network error, for a Send; None for a Sleep
Reply = httpx.Response | httpx.TransportError | None
Plan = Generator[Effect, Reply, T]


@dataclass(frozen=True)
class Config:
    url: str
    secret: str | None
    token: str | None
    source: str
    timeout: float
    retries: int
    backoff: float = 0.5
    clock: Callable[[], float] = field(default=time.time, repr=False)
    monotonic: Callable[[], float] = field(default=time.monotonic, repr=False)

    @classmethod
    def build(
        cls,
        url: str | None,
        secret: str | None,
        token: str | None,
        source: str,
        timeout: float,
        retries: int,
        backoff: float = 0.5,
        env: Mapping[str, str] | None = None,
    ) -> Config:
        """The settings, from the arguments, else SIGNOFF_URL, SIGNOFF_SECRET, SIGNOFF_TOKEN."""
        env = os.environ if env is None else env
        url = url or env.get("SIGNOFF_URL") or ""
        secret = secret or env.get("SIGNOFF_SECRET") or None
        token = token or env.get("SIGNOFF_TOKEN") or None
        if not url:
            raise SignoffError(None, "no server URL: pass url= or set SIGNOFF_URL")
        if not url.startswith(("http://", "https://")):
            raise SignoffError(None, f"url must be http:// or https://, not {url!r}")
        if not secret and not token:
            raise SignoffError(
                None,
                f"no credentials for source {source!r}: pass secret= (or set SIGNOFF_SECRET), "
                "or token= (SIGNOFF_TOKEN) for a bearer token",
            )
        if retries < 0 or timeout <= 0 or backoff < 0:
            raise SignoffError(None, "retries and backoff must be 0 or more, and timeout above 0")
        return cls(url.rstrip("/"), secret, token, source, timeout, retries, backoff)


def encode(body: Mapping[str, Any] | None) -> bytes:
    """JSON, with what pydantic knows how to write (datetimes, decimals, models)."""
    return b"" if body is None else to_json(body)


def build(
    cfg: Config,
    method: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    read_timeout: float | None = None,
) -> httpx.Request:
    """A request, signed (or with the bearer token) over exactly what will be sent."""
    request = httpx.Request(
        method,
        cfg.url + path,
        content=body,
        headers={
            "User-Agent": f"signoff-client/{VERSION}",
            "Accept": "application/json",
            "X-Signoff-Source": cfg.source,
            **({"Content-Type": "application/json"} if body else {}),
            **(headers or {}),
        },
    )
    if cfg.secret:
        target = request.url.raw_path.decode("ascii")
        stamp = int(cfg.clock())
        request.headers[signing.HEADER] = signing.sign(cfg.secret, method, target, body, stamp)
    else:
        request.headers["Authorization"] = f"Bearer {cfg.token}"
    timeout = httpx.Timeout(cfg.timeout, read=read_timeout or cfg.timeout)
    request.extensions["timeout"] = timeout.as_dict()
    return request


def backoff(cfg: Config, attempt: int, response: httpx.Response | None) -> float:
    """Before retry `attempt` (1, 2, ...): doubling from cfg.backoff, or Retry-After."""
    after = response.headers.get("Retry-After", "") if response is not None else ""
    if after.isdigit():
        return min(float(after), 60.0)
    return float(min(cfg.backoff * 2 ** (attempt - 1), 30.0))


def request(
    cfg: Config,
    method: str,
    path: str,
    body: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    read_timeout: float | None = None,
) -> Plan[dict[str, Any]]:
    """Send one request, retried on network errors, 429 and 5xx; its JSON, or SignoffError.
    Every try carries the same bytes and headers (an Idempotency-Key too)."""
    raw = encode(body)
    made = build(cfg, method, path, raw, headers, read_timeout)
    signed_at = cfg.monotonic()
    reply: Reply = None
    for attempt in range(cfg.retries + 1):
        if attempt:
            yield Sleep(backoff(cfg, attempt, reply if isinstance(reply, httpx.Response) else None))
            if cfg.monotonic() - signed_at > RESIGN_AFTER:
                made = build(cfg, method, path, raw, headers, read_timeout)
                signed_at = cfg.monotonic()
        reply = yield Send(made)
        if isinstance(reply, httpx.Response) and reply.status_code not in RETRY_STATUSES:
            break
        if isinstance(reply, httpx.UnsupportedProtocol):
            break
    if isinstance(reply, httpx.TransportError):
        raise SignoffError(
            None,
            f"cannot reach {cfg.url} after {cfg.retries + 1} tries: "
            f"{type(reply).__name__}: {reply}",
        ) from reply
    assert isinstance(reply, httpx.Response)
    return read(reply)


def read(response: httpx.Response) -> dict[str, Any]:
    """The JSON of a 2xx answer; otherwise the server's error as SignoffError."""
    try:
        found = response.json() if response.content else {}
    except ValueError:
        found = None
    if response.is_success and isinstance(found, dict):
        return found
    if response.is_success:
        raise SignoffError(response.status_code, "the server's answer is not a JSON object")
    if isinstance(found, dict) and isinstance(found.get("message"), str):
        errors = found.get("errors")
        raise SignoffError(
            response.status_code,
            found["message"],
            code=found.get("error") if isinstance(found.get("error"), str) else None,
            errors=errors if isinstance(errors, list) else None,
        )
    text = response.text.strip()[:500] or response.reason_phrase
    raise SignoffError(response.status_code, f"HTTP {response.status_code}: {text}")


def case_path(case_id: str, tail: str = "") -> str:
    return f"/v1/escalations/{quote(case_id, safe='')}{tail}"


# -- the operations ------------------------------------------------------------------


def submit(cfg: Config, case: Mapping[str, Any], idempotency_key: str | None = None) -> Plan[Case]:
    body = dict(case)
    body.setdefault("source", cfg.source)
    key = idempotency_key or str(body.get("idempotency_key") or "") or uuid.uuid4().hex
    # In the body too: the server takes the very same signature twice as a replay, and
    # two submits of one case in the same second would otherwise sign the same bytes
    body["idempotency_key"] = key
    found = yield from request(
        cfg, "POST", "/v1/escalations", body, headers={"Idempotency-Key": key}
    )
    return Case.model_validate(found)


def get(cfg: Config, case_id: str, wait: int = 0) -> Plan[Case]:
    query = f"?wait={wait}" if wait > 0 else ""
    read_timeout = wait + cfg.timeout if wait else None
    found = yield from request(cfg, "GET", case_path(case_id, query), read_timeout=read_timeout)
    return Case.model_validate(found)


def cases(cfg: Config, filters: Mapping[str, str | int | None]) -> Plan[CasePage]:
    given = {k: v for k, v in filters.items() if v is not None}
    query = f"?{urlencode(given)}" if given else ""
    found = yield from request(cfg, "GET", f"/v1/escalations{query}")
    return CasePage.model_validate(found)


def cancel(cfg: Config, case_id: str, reason: str | None = None) -> Plan[Change]:
    body = {} if reason is None else {"reason": reason}
    found = yield from request(cfg, "POST", case_path(case_id, "/cancel"), body)
    return Change.model_validate(found)


def answer_info(
    cfg: Config, case_id: str, text: str, facts: Mapping[str, Any] | None = None
) -> Plan[Change]:
    body: dict[str, Any] = {"text": text}
    if facts is not None:
        body["facts"] = dict(facts)
    found = yield from request(cfg, "POST", case_path(case_id, "/info"), body)
    return Change.model_validate(found)


def report_outcome(
    cfg: Config,
    case_id: str,
    outcome: Literal["correct", "incorrect"],
    actual_action: str | None = None,
    note: str | None = None,
    observed_at: datetime | None = None,
) -> Plan[Change]:
    body: dict[str, Any] = {"outcome": outcome}
    for name, value in (
        ("actual_action", actual_action),
        ("note", note),
        ("observed_at", observed_at),
    ):
        if value is not None:
            body[name] = value
    found = yield from request(cfg, "POST", case_path(case_id, "/outcome"), body)
    return Change.model_validate(found)


def timed_out(case_id: str, timeout: float, on_timeout: OnTimeout, why: str = "") -> Decision:
    """The safe default once nobody decided in time (or TimedOut, with no default)."""
    if on_timeout is None:
        raise TimedOut(case_id, timeout)
    return Decision(
        action=on_timeout,
        reason_code="timeout",
        reason=f"no decision within {timeout:g} s, so the safe default: {on_timeout}{why}",
        decided_by="timeout",
        timed_out=True,
    )


def settled(case: Case) -> Decision:
    found = case.outcome()
    if found is None:  # a terminal case without a decision: nothing the server sends today
        raise SignoffError(None, f"case {case.id} is {case.status} but carries no decision")
    return found


def wait(cfg: Config, case_id: str, timeout: float, on_timeout: OnTimeout) -> Plan[Decision]:
    """Long-poll the case until it is settled or `timeout` seconds pass. A server that
    answers before `wait` (one without long-polling, or a change that decided nothing)
    is asked again after a short pause that grows, so that this never spins. Network
    errors and 5xx answers that outlast the retries do not end the wait early."""
    deadline = cfg.monotonic() + timeout
    pause = FIRST_PAUSE
    trouble = ""
    while True:
        remaining = deadline - cfg.monotonic()
        poll = max(0, min(math.floor(remaining), MAX_POLL))
        asked = cfg.monotonic()
        answered = True
        try:
            case = yield from get(cfg, case_id, poll)
        except SignoffError as exc:
            if exc.status is not None and exc.status < 500:
                raise
            answered, trouble = False, f" (the server was not reachable: {exc.message})"
        else:
            trouble = ""
            if case.terminal:
                return settled(case)
        now = cfg.monotonic()
        if now >= deadline:
            return timed_out(case_id, timeout, on_timeout, trouble)
        if not answered or now - asked < poll - 0.05 or poll < 1:
            yield Sleep(min(pause, deadline - now))
            pause = min(pause * 1.5, MAX_PAUSE)
