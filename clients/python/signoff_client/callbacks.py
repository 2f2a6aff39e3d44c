"""`verify_callback`: for the workflow's own endpoint that Signoff POSTs decisions to.

Signoff signs each callback v2 with the source's secret over `POST`, the callback
URL's own path and query, and the body; `X-Signoff-Delivery` names the delivery (the
same on every retry of it) and `X-Signoff-Event` its type.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, MutableSet
from typing import Any

from signoff_client import signing
from signoff_client.errors import CallbackError, ReplayedCallback

DELIVERY = "X-Signoff-Delivery"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def verify_callback(
    secret: str,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    window: int = 300,
    seen: MutableSet[str] | None = None,
) -> dict[str, Any]:
    """The callback's JSON (`{type, escalation, decision, ...}`) once it is shown to
    be Signoff's: a v2 signature by `secret` over `method`, the path and query of
    `url` (the URL the request came to, as the workflow received it) and the raw
    `body`, made within `window` seconds of `now`. With `seen` (a set, or any store
    with `in` and `add`), a delivery id already in it raises ReplayedCallback (answer
    it 2xx, since Signoff retries until it gets one, and do nothing again); a new one
    is added. Anything else wrong raises CallbackError."""
    header = _header(headers, signing.HEADER)
    if header is None:
        raise CallbackError(f"the callback has no {signing.HEADER} header")
    parsed = signing.parse(header)
    if parsed is None:
        raise CallbackError(f"{signing.HEADER} must look like t=<unix seconds>,v2=<hex>")
    stamp = parsed[0]
    now = time.time() if now is None else now
    if abs(now - stamp) > window:
        raise CallbackError(
            f"the callback was signed {int(now - stamp)} s from this clock; the window is "
            f"{window} s (an old callback replayed, or a clock that is off)"
        )
    target = signing.url_target(url)
    if not signing.matches(secret, method, target, body, header):
        raise CallbackError(
            f"the signature does not match {method.upper()} {target} and this body with this "
            "secret (another secret, another path, or a changed body)"
        )
    try:
        found = json.loads(body)
    except ValueError as exc:
        raise CallbackError(f"the callback's body is not JSON: {exc}") from exc
    if not isinstance(found, dict):
        raise CallbackError("the callback's body is not a JSON object")
    if seen is not None:
        delivery = _header(headers, DELIVERY)
        if not delivery:
            raise CallbackError(f"the callback has no {DELIVERY} header to drop repeats by")
        if delivery in seen:
            raise ReplayedCallback(delivery)
        seen.add(delivery)
    return found
