"""`AsyncSignoff`: the same client over httpx.AsyncClient (see `_core` for what it sends)."""

from __future__ import annotations

import asyncio
import functools
import inspect
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


class AsyncSignoff:
    """`Signoff`'s API, each method a coroutine; see `Signoff` for the arguments."""

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
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._cfg = _core.Config.build(url, secret, token, source, timeout, retries, backoff)
        self._http = http or httpx.AsyncClient(follow_redirects=False)
        self._own_http = http is None

    @property
    def url(self) -> str:
        return self._cfg.url

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncSignoff:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _run(self, plan: Plan[T]) -> T:
        reply: _core.Reply = None
        try:
            while True:
                effect = plan.send(reply)
                if isinstance(effect, _core.Sleep):
                    await asyncio.sleep(effect.seconds)
                    reply = None
                    continue
                try:
                    reply = await self._http.send(effect.request)
                except httpx.TransportError as exc:
                    reply = exc
        except StopIteration as done:
            return cast(T, done.value)

    # -- the API ----------------------------------------------------------------------

    async def submit(
        self,
        case: Mapping[str, Any] | None = None,
        /,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Case:
        return await self._run(_core.submit(self._cfg, {**(case or {}), **fields}, idempotency_key))

    async def get(self, case_id: str) -> Case:
        return await self._run(_core.get(self._cfg, case_id))

    async def wait(
        self,
        case_id: str,
        timeout: float = 3600.0,  # noqa: ASYNC109 - the contract's name: how long to wait
        on_timeout: OnTimeout = "reject",
    ) -> Decision:
        return await self._run(_core.wait(self._cfg, case_id, timeout, on_timeout))

    async def cases(
        self,
        status: str | None = None,
        lane: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> CasePage:
        """This source's cases, newest first, a page at a time (pass `next` as cursor)."""
        filters = {"status": status, "lane": lane, "kind": kind, "limit": limit, "cursor": cursor}
        return await self._run(_core.cases(self._cfg, filters))

    async def cancel(self, case_id: str, reason: str | None = None) -> Change:
        return await self._run(_core.cancel(self._cfg, case_id, reason))

    async def answer_info(
        self, case_id: str, text: str, facts: Mapping[str, Any] | None = None
    ) -> Change:
        return await self._run(_core.answer_info(self._cfg, case_id, text, facts))

    async def report_outcome(
        self,
        case_id: str,
        outcome: Literal["correct", "incorrect"],
        actual_action: str | None = None,
        note: str | None = None,
        observed_at: datetime | None = None,
    ) -> Change:
        return await self._run(
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
        """As `Signoff.require_approval`, for `async def` functions only (a plain
        function cannot wait on this client without blocking its loop: wrap it with
        `Signoff` instead)."""
        spec = approval.Spec(
            kind, title, question, recommendation, editable, timeout, on_timeout, case_fields
        )

        def decorate(fn: F) -> F:
            if not inspect.iscoroutinefunction(fn):
                raise TypeError(
                    f"AsyncSignoff.require_approval wraps async functions; {fn.__name__} is "
                    "not one: use Signoff.require_approval for it"
                )

            @functools.wraps(fn)
            async def run(*args: Any, **kwargs: Any) -> Any:
                bound = approval.bind(fn, args, kwargs)
                body = approval.case_for(spec, fn, bound)
                decision = await self._run(approval.flow(self._cfg, spec, body))
                again, named = approval.call_args(bound, decision)
                return await fn(*again, **named)

            return cast(F, run)

        return decorate
