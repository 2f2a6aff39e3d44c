"""Request and callback signatures.

v2, the current scheme, binds the signature to the request, not only to its body:

    X-Signoff-Signature: t=<unix seconds>,v2=<hex HMAC-SHA256(secret, message)>
    message = "<t>.<METHOD>.<target>." + raw body

where METHOD is upper case and `target` is the request target exactly as sent: the
path and, when there is one, `?` and the query (`/v1/escalations?status=pending`).
The body is empty for GET. Several `v2=` entries may be sent while a secret is being
rotated; any one that matches will do. When a header holds a `v2=` entry only v2
entries are checked (a `v1=` beside it is ignored).

v1 (`"<t>." + body` alone) is kept for workflows that have not moved yet: a listener
could replay a v1 signature against another path, so the server takes it only where
`SIGNOFF_ACCEPT_V1=true` and only on `POST /v1/escalations` (see `bot.api.auth`).

Requests outside the window (default 300 s either way) are refused.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from bot.errors import AuthError

HEADER = "X-Signoff-Signature"
MAX_HEADER = 1024
SHAPE = "t=<unix seconds>,v2=<hex HMAC-SHA256>"


@dataclass(frozen=True, slots=True)
class Match:
    """A signature that matched: its scheme and the MAC that this secret gives."""

    scheme: Literal["v2", "v1"]
    mac: str


@dataclass(frozen=True, slots=True)
class Parsed:
    """A parsed header: its timestamp and the MACs of each scheme it carries."""

    timestamp: int
    v2: tuple[str, ...]
    v1: tuple[str, ...]

    @property
    def scheme(self) -> Literal["v2", "v1"]:
        return "v2" if self.v2 else "v1"


def message_v2(method: str, target: str, body: bytes, timestamp: int) -> bytes:
    """The bytes a v2 signature covers."""
    return f"{timestamp}.{method.upper()}.{target}.".encode() + body


def signature_v2(secret: str, method: str, target: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), message_v2(method, target, body, timestamp), hashlib.sha256)
    return mac.hexdigest()


def signature_v1(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return mac.hexdigest()


def sign(secret: str, method: str, target: str, body: bytes, timestamp: int) -> str:
    """The v2 header value for this request, signed with `secret` at `timestamp`."""
    return f"t={timestamp},v2={signature_v2(secret, method, target, body, timestamp)}"


def sign_v1(secret: str, body: bytes, timestamp: int) -> str:
    """The deprecated v1 header value (body only); for migration tests and old senders."""
    return f"t={timestamp},v1={signature_v1(secret, body, timestamp)}"


def url_target(url: str) -> str:
    """The request target of an absolute URL: its path (at least `/`) and `?query`."""
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def parse(header: str) -> Parsed:
    if len(header) > MAX_HEADER:
        raise AuthError(f"{HEADER} is too long (at most {MAX_HEADER} characters)")
    timestamp: int | None = None
    v2: list[str] = []
    v1: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v2" and value:
            v2.append(value.lower())
        elif key == "v1" and value:
            v1.append(value.lower())
    if timestamp is None or not (v2 or v1):
        raise AuthError(f"{HEADER} must look like {SHAPE}")
    return Parsed(timestamp, tuple(v2), tuple(v1))


def check_window(timestamp: int, now: float, window: int) -> None:
    if abs(now - timestamp) > window:
        raise AuthError(
            f"{HEADER} timestamp is {int(now - timestamp)} s from the server's clock; "
            f"the window is {window} s (check the sender's clock, and sign each request afresh)"
        )


def verify(secret: str, method: str, target: str, body: bytes, parsed: Parsed) -> Match | None:
    """The entry of `parsed` that this secret signed, or None. v1 entries are looked at
    only when the header has no v2 entry; whether v1 is allowed is the caller's rule."""
    if parsed.v2:
        expected = signature_v2(secret, method, target, body, parsed.timestamp)
        found = any(hmac.compare_digest(expected, m) for m in parsed.v2)
        return Match("v2", expected) if found else None
    expected = signature_v1(secret, body, parsed.timestamp)
    found = any(hmac.compare_digest(expected, m) for m in parsed.v1)
    return Match("v1", expected) if found else None


def matches(
    secret: str, method: str, target: str, body: bytes, parsed: Parsed
) -> Literal["v2", "v1"] | None:
    """Which scheme of `parsed` this secret signed, or None (see `verify`)."""
    found = verify(secret, method, target, body, parsed)
    return found.scheme if found else None
