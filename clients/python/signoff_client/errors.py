"""The client's errors, one root.

    SignoffError               the server refused, could not be reached, or was misused
    ├── TimedOut               wait() gave up before anyone decided (with on_timeout=None)
    ├── Rejected               a reviewer rejected a @require_approval call (or it timed out)
    └── CallbackError          a callback failed verify_callback: not from Signoff
        └── ReplayedCallback   a delivery already seen: answer 2xx and do nothing again

A refusal by the server carries its HTTP `status`, the stable `code` of its JSON error
answer (`unauthorized`, `not_found`, `validation_failed`, ...) and its `message`, the
sentence it wrote for people. Errors that never reached an answer have `status` None.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from signoff_client.models import Decision


class SignoffError(Exception):
    def __init__(
        self,
        status: int | None,
        message: str,
        *,
        code: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(f"{status}: {message}" if status is not None else message)
        self.status = status
        self.message = message
        self.code = code
        self.errors = errors or []


class TimedOut(SignoffError):
    def __init__(self, case_id: str, waited: float) -> None:
        super().__init__(None, f"case {case_id} was not decided within {waited:g} s")
        self.case_id = case_id
        self.waited = waited


class Rejected(SignoffError):
    """The call was not approved; `decision` says who, why, or that time ran out."""

    def __init__(self, case_id: str, decision: Decision) -> None:
        if decision.timed_out:
            why = f"case {case_id} was not decided in time ({decision.reason})"
        else:
            who = decision.reviewer or decision.decided_by
            why = f"case {case_id} was rejected by {who}: {decision.reason or decision.reason_code}"
        super().__init__(None, why, code=decision.reason_code)
        self.case_id = case_id
        self.decision = decision
        self.reason = decision.reason


class CallbackError(SignoffError):
    def __init__(self, message: str) -> None:
        super().__init__(None, message, code="bad_callback")


class ReplayedCallback(CallbackError):
    def __init__(self, delivery: str) -> None:
        super().__init__(f"delivery {delivery} was already received: drop the repeat")
        self.code = "replayed_callback"
        self.delivery = delivery
