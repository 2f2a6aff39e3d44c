"""Request and callback signatures.

`X-Signoff-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>`.
Several `v1=` entries may be sent while a secret is being rotated; any one that
matches will do. Requests outside the window (default 300 s either way) are refused.
"""

from __future__ import annotations

import hashlib
import hmac

from bot.errors import AuthError

HEADER = "X-Signoff-Signature"


def signature(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return mac.hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value for `body` signed with `secret` at `timestamp`."""
    return f"t={timestamp},v1={signature(secret, body, timestamp)}"


def parse(header: str) -> tuple[int, list[str]]:
    if len(header) > 1024:
        raise AuthError(f"{HEADER} is too long")
    timestamp: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1" and value:
            macs.append(value.lower())
    if timestamp is None or not macs:
        raise AuthError(f"{HEADER} must look like t=<unix seconds>,v1=<hex HMAC-SHA256>")
    return timestamp, macs


def check_window(timestamp: int, now: float, window: int) -> None:
    if abs(now - timestamp) > window:
        raise AuthError(
            f"{HEADER} timestamp is {int(now - timestamp)} s from the server's clock; "
            f"the window is {window} s (check the sender's clock, and sign each request afresh)"
        )


def matches(secret: str, body: bytes, timestamp: int, macs: list[str]) -> bool:
    expected = signature(secret, body, timestamp)
    return any(hmac.compare_digest(expected, mac) for mac in macs)
