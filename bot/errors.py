"""Signoff's errors, one root.

    SignoffError
    ├── ConfigError            settings or policy file unusable
    │   └── PolicyError        policy file invalid (names the line and the field)
    ├── AuthError              request not signed, bad signature, stale timestamp (HTTP 401)
    ├── ForbiddenError         authenticated, but not this source's case (HTTP 403)
    ├── NotFound (LookupError) no such case (HTTP 404)
    ├── ConflictError          idempotency key reused with another body (HTTP 409)
    ├── InvalidInput           a body that parses but is not acceptable (HTTP 422)
    └── DecisionRefused        the decision service said no; carries a code
        └── AlreadyDecided     a terminal case; carries who won

Every refusal carries a stable machine `code` and a sentence for people.
"""

from __future__ import annotations

from typing import Any


class SignoffError(Exception):
    code = "error"
    status = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.details}


class ConfigError(SignoffError):
    code = "config_error"


class PolicyError(ConfigError):
    code = "policy_error"

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class AuthError(SignoffError):
    code = "unauthorized"
    status = 401


class ForbiddenError(SignoffError):
    code = "forbidden"
    status = 403


class NotFound(SignoffError, LookupError):
    code = "not_found"
    status = 404


class ConflictError(SignoffError):
    code = "conflict"
    status = 409


class InvalidInput(SignoffError):
    code = "invalid"
    status = 422

    def to_json(self) -> dict[str, Any]:
        # the same `errors` list as a body that failed validation, so a client reads one shape
        found = super().to_json()
        if "field" in self.details:
            found["errors"] = [{"field": self.details["field"], "message": self.message}]
        return found


class DecisionRefused(SignoffError):
    """The decision service refused. `code` says why, in a word a program can match."""

    status = 409

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.code = code


class AlreadyDecided(DecisionRefused):
    def __init__(self, status: str, by: str | None, message: str) -> None:
        super().__init__("already_decided", message, case_status=status, decided_by=by)
        self.case_status = status
        self.winner = by
