"""Who is calling: an HMAC signature or a bearer token, matched to a configured source.

A v2 signature covers the method, the request target and the body (see
`bot.signing`). A v1 signature covers the body alone, so a listener could replay one
against another path: it is refused unless `SIGNOFF_ACCEPT_V1=true`, and even then
taken only on `POST /v1/escalations` (where the body says what it does), with a
deprecation warning in the log, at most once an hour per source.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from bot import signing
from bot.config import Source
from bot.errors import AuthError

log = logging.getLogger(__name__)

V1_METHOD = "POST"
V1_PATH = "/v1/escalations"
V1_WARN_EVERY = 3600.0  # seconds between two deprecation warnings for one source
HOW_TO_SIGN = (
    f'sign v2: {signing.HEADER}: t=<unix seconds>,v2=<hex HMAC-SHA256(secret, "<t>.<METHOD>.'
    '<path?query>." + the exact body bytes)>, with the path and query exactly as sent '
    "(`signoff send` and the README's examples do)"
)


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request: its source, how it proved it, and for a signed one
    the key under which a replay of it is found (a hash of the MAC, never the MAC)."""

    source: str
    scheme: Literal["v2", "v1", "bearer"]
    replay_key: str | None = None
    signed_at: int | None = None


class Authenticator:
    def __init__(
        self,
        sources: Mapping[str, Source],
        window: int,
        *,
        accept_v1: bool = False,
        warn_every: float = V1_WARN_EVERY,
    ) -> None:
        self._secrets = {n: s.secret.get_secret_value() for n, s in sources.items() if s.secret}
        self._tokens = {n: s.token.get_secret_value() for n, s in sources.items() if s.token}
        self._window = window
        self._accept_v1 = accept_v1
        self._warn_every = warn_every
        self._warned: dict[str, float] = {}  # source -> when its last v1 warning was logged

    @property
    def window(self) -> int:
        return self._window

    def source(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, now: float
    ) -> str:
        """The source that signed this request (see `authenticate`)."""
        return self.authenticate(method, target, headers, body, now).source

    def authenticate(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, now: float
    ) -> Caller:
        """Who sent this request, or AuthError saying what is wrong.

        `target` is the request target as sent: the raw path and `?query`."""
        header = headers.get(signing.HEADER.lower())
        if header is not None:
            return self._signed(method, target, headers, header, body, now)
        auth = headers.get("authorization")
        if auth is not None:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError("Authorization must be `Bearer <token>`")
            for name, expected in self._tokens.items():
                if hmac.compare_digest(expected.encode(), token.strip().encode()):
                    return Caller(name, "bearer")
            raise AuthError("the bearer token is not one of a configured source")
        raise AuthError(
            f"sign the request with {signing.HEADER} or send Authorization: Bearer <token>"
        )

    def _signed(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        header: str,
        body: bytes,
        now: float,
    ) -> Caller:
        parsed = signing.parse(header)
        signing.check_window(parsed.timestamp, now, self._window)
        if not parsed.v2 and not self._v1_allowed(method, target):
            raise AuthError(self._v1_refusal())
        hint = headers.get("x-signoff-source")
        names = [hint] if hint in self._secrets else list(self._secrets)
        for name in names:
            found = signing.verify(self._secrets[name], method, target, body, parsed)
            if found is None:
                continue
            if found.scheme == "v1":
                self._deprecated(name, now)
            # The MAC binds the request (v1: its body and time); its hash is what a
            # replay is looked up by, so the database never holds a usable signature.
            key = hashlib.sha256(f"{found.scheme}:{found.mac}".encode()).hexdigest()
            return Caller(name, found.scheme, key, parsed.timestamp)
        raise AuthError(
            f'{signing.HEADER} does not match: sign "<t>.<METHOD>.<path?query>." + the '
            "exact body bytes with HMAC-SHA256 and the source's secret"
        )

    def _v1_allowed(self, method: str, target: str) -> bool:
        # the target exactly: v1 does not cover it, so nothing may be added to it
        return self._accept_v1 and method.upper() == V1_METHOD and target == V1_PATH

    def _v1_refusal(self) -> str:
        if self._accept_v1:
            return (
                f"a v1 signature (over the body alone) is accepted only on {V1_METHOD} "
                f"{V1_PATH}, while senders move to v2; {HOW_TO_SIGN}"
            )
        return f"v1 signatures (over the body alone) are no longer accepted; {HOW_TO_SIGN}"

    def _deprecated(self, source: str, now: float) -> None:
        last = self._warned.get(source)
        if last is not None and now - last < self._warn_every:
            return
        self._warned[source] = now
        log.warning(
            "source %r signed %s %s with a v1 signature, which is deprecated: accepted only "
            "because SIGNOFF_ACCEPT_V1=true; move it to v2 (the method and the path?query "
            "signed with the body), then unset SIGNOFF_ACCEPT_V1. Said at most once every "
            "%d s per source.",
            source,
            V1_METHOD,
            V1_PATH,
            int(self._warn_every),
        )
