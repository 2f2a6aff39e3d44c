"""Who is calling: an HMAC signature or a bearer token, matched to a configured source."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from bot import signing
from bot.config import Source
from bot.errors import AuthError


class Authenticator:
    def __init__(self, sources: Mapping[str, Source], window: int) -> None:
        self._secrets = {n: s.secret.get_secret_value() for n, s in sources.items() if s.secret}
        self._tokens = {n: s.token.get_secret_value() for n, s in sources.items() if s.token}
        self._window = window

    def source(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, now: float
    ) -> str:
        """The source that signed this request, or AuthError saying what is wrong.

        `target` is the request target as sent: the raw path and `?query`."""
        header = headers.get(signing.HEADER.lower())
        if header is not None:
            parsed = signing.parse(header)
            signing.check_window(parsed.timestamp, now, self._window)
            hint = headers.get("x-signoff-source")
            names = [hint] if hint in self._secrets else list(self._secrets)
            for name in names:
                if signing.matches(self._secrets[name], method, target, body, parsed):
                    return name
            raise AuthError(
                f'{signing.HEADER} does not match: sign "<t>.<METHOD>.<path?query>." + the '
                "exact body bytes with HMAC-SHA256 and the source's secret"
            )
        auth = headers.get("authorization")
        if auth is not None:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError("Authorization must be `Bearer <token>`")
            for name, expected in self._tokens.items():
                if hmac.compare_digest(expected.encode(), token.strip().encode()):
                    return name
            raise AuthError("the bearer token is not one of a configured source")
        raise AuthError(
            f"sign the request with {signing.HEADER} or send Authorization: Bearer <token>"
        )
