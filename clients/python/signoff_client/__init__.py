"""signoff-client: the workflow's side of Signoff.

`Signoff` (and `AsyncSignoff`, the same API with coroutines) submits cases, waits for
their decisions and answers reviewers' questions; `require_approval` makes a
function's calls wait for a human; `verify_callback` checks Signoff's callbacks.
"""

from signoff_client._core import VERSION as __version__
from signoff_client.aio import AsyncSignoff
from signoff_client.callbacks import verify_callback
from signoff_client.client import Signoff
from signoff_client.errors import (
    CallbackError,
    Rejected,
    ReplayedCallback,
    SignoffError,
    TimedOut,
)
from signoff_client.models import Case, CasePage, Change, Decision, Event

__all__ = [
    "AsyncSignoff",
    "CallbackError",
    "Case",
    "CasePage",
    "Change",
    "Decision",
    "Event",
    "Rejected",
    "ReplayedCallback",
    "Signoff",
    "SignoffError",
    "TimedOut",
    "__version__",
    "verify_callback",
]
