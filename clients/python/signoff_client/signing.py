"""Signature v2, the scheme Signoff checks on every workflow request and puts on every
callback (the server's `bot/signing.py` is the other side of this contract):

    X-Signoff-Signature: t=<unix seconds>,v2=<hex HMAC-SHA256(secret, message)>
    message = "<t>.<METHOD>.<target>." + raw body

METHOD is upper case; `target` is the request target exactly as sent, the path and,
when there is one, `?` and the query; the body is empty for GET.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

HEADER = "X-Signoff-Signature"
MAX_HEADER = 1024


def signature(secret: str, method: str, target: str, body: bytes, timestamp: int) -> str:
    message = f"{timestamp}.{method.upper()}.{target}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, method: str, target: str, body: bytes, timestamp: int) -> str:
    """The header value for this request, signed at `timestamp`."""
    return f"t={timestamp},v2={signature(secret, method, target, body, timestamp)}"


def url_target(url: str) -> str:
    """The request target of an absolute URL (or of a target already): its path, at
    least `/`, and `?query` when it has one. The fragment is never sent."""
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def parse(header: str) -> tuple[int, list[str]] | None:
    """The timestamp and the v2 MACs of a header, or None when it has not that shape.
    A v1 entry (body only) is not looked at: it could be replayed to another path."""
    if len(header) > MAX_HEADER:
        return None
    timestamp: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v2" and value:
            macs.append(value.lower())
    if timestamp is None or not macs:
        return None
    return timestamp, macs


def matches(secret: str, method: str, target: str, body: bytes, header: str) -> bool | None:
    """Whether one v2 entry of `header` is this secret's; None when the header is malformed."""
    parsed = parse(header)
    if parsed is None:
        return None
    timestamp, macs = parsed
    expected = signature(secret, method, target, body, timestamp)
    return any(hmac.compare_digest(expected, mac) for mac in macs)
