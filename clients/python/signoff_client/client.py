"""`Signoff`: the client over httpx.Client (see `_core` for what it sends)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, TypeVar, cast

import httpx

from signoff_client import _core, approval
from signoff_client._core import OnTimeout, Plan
from signoff_client.models import Case, CasePage, Change, Decision

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Signoff:
    """A workflow's client of one Signoff server, as one source.

    Arguments not given come from SIGNOFF_URL, SIGNOFF_SECRET and SIGNOFF_TOKEN, read
    once here. Every request is signed (v2) with `secret`, or carries `token` as a
    bearer token when there is no secret. `timeout` is each request's network timeout;
    `retries` how often a network error, 429 or 5xx is tried again, after `backoff`
    seconds, doubling each time (or the answer's Retry-After), with the same bytes,
    the same Idempotency-Key and, for five minutes, the same signature, so that the
    server answers a try it already took with its first answer. `http` is a client
    of your own (proxies, TLS settings); it is then yours to close."""

    def __init__(
        self,
        url: str | None = None,
        secret: str | None = None,
        token: str | None = None,
        source: str = "default",
        timeout: float = 10.0,
        retries: int = 3,
        *,
        backoff: float = 0.5,
        http: httpx.Client | None = None,
    ) -> None:
        self._cfg = _core.Config.build(url, secret, token, source, timeout, retries, backoff)
        self._http = http or httpx.Client(follow_redirects=False)
        self._own_http = http is None

    @property
    def url(self) -> str:
        return self._cfg.url

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> Signoff:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, plan: Plan[T]) -> T:
        reply: _core.Reply = None
        try:
            while True:
                effect = plan.send(reply)
                if isinstance(effect, _core.Sleep):
                    time.sleep(effect.seconds)
                    reply = None
                    continue
                try:
                    reply = self._http.send(effect.request)
                except httpx.TransportError as exc:
                    reply = exc
        except StopIteration as done:
            return cast(T, done.value)

    # -- the API ----------------------------------------------------------------------

    def submit(
        self,
        case: Mapping[str, Any] | None = None,
        /,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Case:
        """Submit a case (a dict, keyword fields, or both): the answer `{id, status,
        lane, due_at, decision?}`. One Idempotency-Key per call (made unless given)."""
        return self._run(_core.submit(self._cfg, {**(case or {}), **fields}, idempotency_key))

    def get(self, case_id: str) -> Case:
        """The case: status, lane, due time, decisions, events, deliveries."""
        return self._run(_core.get(self._cfg, case_id))

    def wait(
        self, case_id: str, timeout: float = 3600.0, on_timeout: OnTimeout = "reject"
    ) -> Decision:
        """Block until the case is settled: its decision (a cancelled case settles as a
        reject by `workflow`). After `timeout` seconds, the safe default `on_timeout`
        marked `timed_out=True`; with on_timeout=None, raise TimedOut instead."""
        return self._run(_core.wait(self._cfg, case_id, timeout, on_timeout))

    def cases(
        self,
        status: str | None = None,
        lane: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> CasePage:
        """This source's cases, newest first, a page at a time (pass `next` as cursor)."""
        filters = {"status": status, "lane": lane, "kind": kind, "limit": limit, "cursor": cursor}
        return self._run(_core.cases(self._cfg, filters))

    def cancel(self, case_id: str, reason: str | None = None) -> Change:
        return self._run(_core.cancel(self._cfg, case_id, reason))

    def answer_info(
        self, case_id: str, text: str, facts: Mapping[str, Any] | None = None
    ) -> Change:
        """Answer the reviewer's request for information; the case goes back to pending."""
        return self._run(_core.answer_info(self._cfg, case_id, text, facts))

    def report_outcome(
        self,
        case_id: str,
        outcome: Literal["correct", "incorrect"],
        actual_action: str | None = None,
        note: str | None = None,
        observed_at: datetime | None = None,
    ) -> Change:
        """Report what really happened, later: the ground truth analytics learn from."""
        return self._run(
            _core.report_outcome(self._cfg, case_id, outcome, actual_action, note, observed_at)
        )

    def require_approval(
        self,
        *,
        kind: str,
        title: approval.PerCall = None,
        question: approval.PerCall = None,
        recommendation: Mapping[str, Any] | Callable[..., Mapping[str, Any]] | None = None,
        editable: Collection[str] | None = None,
        timeout: float = 3600.0,
        on_timeout: OnTimeout = "reject",
        **case_fields: Any,
    ) -> Callable[[F], F]:
        """Each call of the wrapped function first becomes a case and waits for its
        decision (see `approval`). An `async def` function is wrapped too: the wait
        then runs in a worker thread (asyncio.to_thread), so the event loop goes on."""
        spec = approval.Spec(
            kind, title, question, recommendation, editable, timeout, on_timeout, case_fields
        )

        def decorate(fn: F) -> F:
            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def run_async(*args: Any, **kwargs: Any) -> Any:
                    bound = approval.bind(fn, args, kwargs)
                    body = approval.case_for(spec, fn, bound)
                    decision = await asyncio.to_thread(
                        self._run, approval.flow(self._cfg, spec, body)
                    )
                    again, named = approval.call_args(bound, decision)
                    return await fn(*again, **named)

                return cast(F, run_async)

            @functools.wraps(fn)
            def run(*args: Any, **kwargs: Any) -> Any:
                bound = approval.bind(fn, args, kwargs)
                body = approval.case_for(spec, fn, bound)
                decision = self._run(approval.flow(self._cfg, spec, body))
                again, named = approval.call_args(bound, decision)
                return fn(*again, **named)

            return cast(F, run)

        return decorate
