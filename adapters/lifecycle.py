"""What the platform surfaces share about starting and stopping: the decision service
their clicks go to, the interactions in flight, and a background task to end."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from bot.errors import DecisionRefused

if TYPE_CHECKING:
    from bot.service import Service


class Bound:
    """Handlers bound to the decision service once the runtime starts them, keeping
    hold of the work they run so that a stop can let it finish."""

    def __init__(self) -> None:
        self._service: Service | None = None
        self._pending: set[asyncio.Task[Any]] = set()

    def bind(self, service: Service) -> None:
        self._service = service

    def unbind(self) -> None:
        self._service = None

    @property
    def bound(self) -> bool:
        return self._service is not None

    @property
    def service(self) -> Service:
        if self._service is None:
            raise DecisionRefused("starting", "Signoff is starting; click again in a moment.")
        return self._service

    def hold(self, task: asyncio.Task[Any]) -> None:
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Let the work in flight finish (at shutdown), for at most 5 seconds."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=5.0)


async def end(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` if it still runs, and wait for it, whatever it raises."""
    if task is None:
        return
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
