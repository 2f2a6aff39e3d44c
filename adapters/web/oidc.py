"""OpenID Connect sign-in for the web inbox: the authorization code flow with PKCE.

`OidcClient.begin` makes the provider's authorization URL and the `Pending` values the
caller keeps (in a signed, short-lived cookie) until the browser comes back;
`OidcClient.finish` checks the answer, exchanges the code and verifies the ID token as
OpenID Connect Core 1.0, section 3.1.3.7 asks, and returns the verified email address.

Authlib builds the authorization URL and the PKCE S256 challenge (RFC 7636); joserfc, the
JOSE library Authlib points to, verifies the ID token's signature against the provider's
JWKS. Requests go through httpx, like the rest of Signoff.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import httpx
from authlib.oauth2.rfc6749.parameters import (  # type: ignore[import-untyped, unused-ignore]
    prepare_grant_uri,
)
from authlib.oauth2.rfc7636 import (  # type: ignore[import-untyped, unused-ignore]
    create_s256_code_challenge,
)
from joserfc import jws
from joserfc.errors import (
    ClaimError,
    ExpiredTokenError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import Key, KeySet
from joserfc.jwt import JWTClaimsRegistry

__all__ = ["OidcClient", "OidcError", "Pending"]

SCOPE: Final = "openid email profile"
#: The only ID token signatures accepted: never "none", never a shared-secret HS*.
ALGORITHMS: Final = ("RS256", "ES256")
#: Clock skew allowed on `exp` and `iat`, in seconds.
LEEWAY: Final = 60
#: The largest answer read from the provider (discovery, JWKS, token), in bytes.
MAX_BODY: Final = 1_000_000
#: How much of the provider's own error text is repeated in an `OidcError`.
MAX_PROVIDER_TEXT: Final = 200
_PKCE_VERIFIER: Final = re.compile(r"[A-Za-z0-9._~-]{43,128}")
_OPAQUE: Final = re.compile(r"[A-Za-z0-9._~-]{16,256}")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


class OidcError(Exception):
    """Signing in with the OpenID Connect provider failed; the message says why, in a
    sentence a person can act on. It never holds a secret, a code or a token."""


def _bounded(text: object, limit: int = MAX_PROVIDER_TEXT) -> str:
    """Text from the provider, made safe to repeat: one line, at most `limit` characters."""
    line = " ".join(_CONTROL.sub(" ", str(text)).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _normalised(issuer: str) -> str:
    return issuer.strip().rstrip("/")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class Pending:
    """What must be kept between the redirect to the provider and the browser's return."""

    state: str
    nonce: str
    code_verifier: str

    @classmethod
    def new(cls) -> Pending:
        return cls(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(48),
        )

    def dump(self) -> str:
        """A compact JSON string of the three values."""
        return json.dumps(
            {"state": self.state, "nonce": self.nonce, "code_verifier": self.code_verifier},
            separators=(",", ":"),
        )

    @classmethod
    def load(cls, text: str) -> Pending:
        """The `Pending` that `dump` made; `OidcError` on anything else."""
        garbage = OidcError(
            "this browser's sign-in attempt could not be read back (it is damaged or "
            "not from Signoff); start signing in again"
        )
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as error:
            raise garbage from error
        if not isinstance(data, dict) or set(data) != {"state", "nonce", "code_verifier"}:
            raise garbage
        state, nonce, verifier = data["state"], data["nonce"], data["code_verifier"]
        if not (
            isinstance(state, str)
            and isinstance(nonce, str)
            and isinstance(verifier, str)
            and _OPAQUE.fullmatch(state)
            and _OPAQUE.fullmatch(nonce)
            and _PKCE_VERIFIER.fullmatch(verifier)
        ):
            raise garbage
        return cls(state=state, nonce=nonce, code_verifier=verifier)


@dataclass(frozen=True)
class _Discovery:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    auth_methods: tuple[str, ...]


class OidcClient:
    """A confidential client of one OpenID Connect provider (`issuer`)."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.issuer = _normalised(issuer)
        self.client_id = client_id
        self._client_secret = client_secret
        self._http = httpx.AsyncClient(
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            headers={"Accept": "application/json"},
        )
        self._discovery: _Discovery | None = None
        self._keys: KeySet | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"OidcClient(issuer={self.issuer!r}, client_id={self.client_id!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def begin(self, redirect_uri: str) -> tuple[str, Pending]:
        """The provider's authorization URL to redirect the browser to (scope
        'openid email profile', response_type code, state, nonce, PKCE S256), and what
        to keep."""
        found = await self._discover()
        pending = Pending.new()
        url = prepare_grant_uri(
            found.authorization_endpoint,
            client_id=self.client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=SCOPE,
            state=pending.state,
            nonce=pending.nonce,
            code_challenge=create_s256_code_challenge(pending.code_verifier),
            code_challenge_method="S256",
        )
        return str(url), pending

    async def finish(self, redirect_uri: str, params: Mapping[str, str], pending: Pending) -> str:
        """Checks the provider's answer, exchanges the code, verifies the ID token and
        returns its verified email address, lower-cased and stripped."""
        error = params.get("error")
        if error is not None:
            text = _bounded(error)
            description = params.get("error_description")
            if description:
                text = _bounded(f"{error}: {description}")
            raise OidcError(f"the sign-in provider at {self.issuer} refused the sign-in: {text}")
        state = params.get("state")
        if not state or not _same(state, pending.state):
            raise OidcError(
                "the sign-in answer does not belong to this browser's sign-in attempt "
                "(its state does not match); start signing in again"
            )
        answered_by = params.get("iss")  # RFC 9207, where the provider sends it
        if answered_by is not None and _normalised(answered_by) != self.issuer:
            raise OidcError(
                f"the sign-in answer came from {_bounded(answered_by, 100)!r}, "
                f"not from the configured provider {self.issuer}"
            )
        code = params.get("code")
        if not code:
            raise OidcError("the sign-in provider's answer has no authorization code")
        found = await self._discover()
        id_token = await self._exchange(found, code, redirect_uri, pending.code_verifier)
        claims = await self._verify(found, id_token, pending.nonce)
        return self._email(claims)

    # -- the provider's documents

    async def _discover(self) -> _Discovery:
        if self._discovery is not None:
            return self._discovery
        async with self._lock:
            if self._discovery is None:
                self._discovery = await self._fetch_discovery()
            return self._discovery

    async def _fetch_discovery(self) -> _Discovery:
        url = f"{self.issuer}/.well-known/openid-configuration"
        doc = await self._json("GET", url, "its discovery document")
        issuer = doc.get("issuer")
        if not isinstance(issuer, str) or _normalised(issuer) != self.issuer:
            raise OidcError(
                f"the sign-in provider's discovery document names the issuer "
                f"{_bounded(issuer, 100)!r}, not the configured {self.issuer}; "
                "check SIGNOFF_OIDC_ISSUER"
            )
        endpoints: dict[str, str] = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = doc.get(name)
            if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                raise OidcError(
                    f"the sign-in provider at {self.issuer} has no usable {name} "
                    "in its discovery document"
                )
            endpoints[name] = value
        challenges = doc.get("code_challenge_methods_supported")
        if isinstance(challenges, list) and "S256" not in challenges:
            raise OidcError(
                f"the sign-in provider at {self.issuer} does not support PKCE with S256, "
                "which Signoff requires"
            )
        # OpenID Connect Discovery 1.0, section 3: client_secret_basic when absent
        methods = doc.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
        if not isinstance(methods, list):
            methods = ["client_secret_basic"]
        return _Discovery(
            issuer=issuer,
            authorization_endpoint=endpoints["authorization_endpoint"],
            token_endpoint=endpoints["token_endpoint"],
            jwks_uri=endpoints["jwks_uri"],
            auth_methods=tuple(m for m in methods if isinstance(m, str)),
        )

    async def _key_set(self, found: _Discovery, *, refresh: bool = False) -> KeySet:
        async with self._lock:
            if self._keys is None or refresh:
                doc = await self._json("GET", found.jwks_uri, "its signing keys (JWKS)")
                try:
                    self._keys = KeySet.import_key_set(doc)  # type: ignore[arg-type]
                except (JoseError, ValueError, TypeError, KeyError) as error:
                    raise OidcError(
                        f"the sign-in provider at {self.issuer} published signing keys "
                        "(JWKS) that Signoff cannot read"
                    ) from error
            return self._keys

    # -- the code exchange

    async def _exchange(
        self, found: _Discovery, code: str, redirect_uri: str, verifier: str
    ) -> str:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        headers: dict[str, str] = {}
        if "client_secret_basic" in found.auth_methods:
            # RFC 6749, section 2.3.1: both parts form-encoded, then joined and base64ed
            pair = f"{quote(self.client_id, safe='')}:{quote(self._client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        elif "client_secret_post" in found.auth_methods:
            form |= {"client_id": self.client_id, "client_secret": self._client_secret}
        else:
            raise OidcError(
                f"the sign-in provider at {self.issuer} accepts neither client_secret_basic "
                "nor client_secret_post at its token endpoint, so Signoff cannot sign in there"
            )
        answer = await self._json(
            "POST", found.token_endpoint, "its token endpoint", data=form, headers=headers
        )
        id_token = answer.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise OidcError(
                f"the sign-in provider at {self.issuer} answered the code exchange without "
                "an ID token (is the 'openid' scope allowed for this client?)"
            )
        return id_token

    # -- the ID token (OpenID Connect Core 1.0, section 3.1.3.7)

    async def _verify(self, found: _Discovery, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            signed = jws.extract_compact(id_token.encode())
        except (JoseError, ValueError, TypeError) as error:
            raise OidcError(
                f"the sign-in provider at {self.issuer} sent an ID token that is not a signed JWT"
            ) from error
        header = signed.headers()
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise OidcError(
                f"the ID token is signed with the algorithm {_bounded(alg, 20)!r}, which "
                f"Signoff refuses; it accepts only {' or '.join(ALGORITHMS)}"
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise OidcError("the ID token's header has a key id (kid) that is not a string")
        key = _pick(await self._key_set(found), kid, alg)
        if key is None:  # the provider may have rotated its keys: fetch them once more
            key = _pick(await self._key_set(found, refresh=True), kid, alg)
        if key is None:
            raise OidcError(
                f"the ID token is signed with a key (kid {_bounded(kid, 64)!r}) that the "
                f"sign-in provider at {self.issuer} does not publish in its JWKS"
            )
        try:
            valid = jws.validate_compact(signed, key, algorithms=[alg])
        except (JoseError, ValueError, TypeError):
            valid = False
        if not valid:
            raise OidcError(
                f"the ID token's signature does not verify against the keys of {self.issuer}"
            )
        try:
            claims = json.loads(signed.payload)
        except (TypeError, ValueError) as error:
            raise OidcError("the ID token's claims are not valid JSON") from error
        if not isinstance(claims, dict):
            raise OidcError("the ID token's claims are not a JSON object")
        self._check_claims(claims, nonce)
        return claims

    def _check_claims(self, claims: dict[str, Any], nonce: str) -> None:
        registry = JWTClaimsRegistry(
            leeway=LEEWAY,
            iss={"essential": True},
            sub={"essential": True},
            aud={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError as error:
            raise OidcError(
                "the ID token has expired; sign in again (if this keeps happening, "
                "check this server's clock)"
            ) from error
        except MissingClaimError as error:
            raise OidcError(f"the ID token lacks the required claim(s) {error.claim}") from error
        except ClaimError as error:
            if error.claim == "iat":
                raise OidcError(
                    "the ID token says it was issued in the future; check this server's clock"
                ) from error
            raise OidcError(f"the ID token's {error.claim!r} claim is malformed") from error
        issuer = claims["iss"]
        if _normalised(issuer) != self.issuer:
            raise OidcError(
                f"the ID token was issued by {_bounded(issuer, 100)!r}, "
                f"not by the configured provider {self.issuer}"
            )
        audience = claims["aud"]
        audiences = [audience] if isinstance(audience, str) else list(audience)
        if self.client_id not in audiences:
            raise OidcError(
                f"the ID token is meant for {_bounded(', '.join(audiences), 100)!r}, "
                f"not for this Signoff (client id {self.client_id!r})"
            )
        azp = claims.get("azp")
        if len(audiences) > 1 and azp is None:
            raise OidcError(
                "the ID token is meant for several audiences and does not say that this "
                "Signoff requested it (it has no azp claim)"
            )
        if azp is not None and azp != self.client_id:
            raise OidcError(
                f"the ID token was requested by {_bounded(azp, 100)!r} (azp), "
                f"not by this Signoff (client id {self.client_id!r})"
            )
        got = claims.get("nonce")
        if not isinstance(got, str) or not _same(got, nonce):
            raise OidcError(
                "the ID token's nonce does not match this browser's sign-in attempt "
                "(a replayed or mixed-up token); start signing in again"
            )

    def _email(self, claims: Mapping[str, Any]) -> str:
        email = claims.get("email")
        if not isinstance(email, str) or "@" not in email.strip():
            raise OidcError(
                f"the sign-in provider at {self.issuer} did not say which email address you "
                "have; allow the 'email' scope for this client there"
            )
        verified = claims.get("email_verified")
        # some providers send the string "true"; anything else, or nothing, is not verified
        if verified is not True and verified != "true":
            raise OidcError(
                f"the sign-in provider at {self.issuer} has not verified the email address "
                f"{_bounded(email.strip(), 100)!r}; verify it there, then sign in again"
            )
        return email.strip().lower()

    # -- HTTP

    async def _json(self, method: str, url: str, what: str, **request: Any) -> dict[str, Any]:
        """The provider's JSON object answer to a request, within `MAX_BODY` bytes."""
        try:
            async with self._http.stream(method, url, **request) as response:
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_BODY:
                    raise self._too_big(what)
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY:
                        raise self._too_big(what)
        except httpx.HTTPError as error:
            raise OidcError(
                f"the sign-in provider at {self.issuer} could not be reached for {what}: "
                f"{type(error).__name__}{': ' if str(error) else ''}{_bounded(error, 120)}"
            ) from error
        try:
            doc = json.loads(bytes(body))
        except ValueError:
            doc = None
        if not response.is_success:
            detail = ""
            if isinstance(doc, dict) and isinstance(doc.get("error"), str):
                detail = str(doc["error"])
                if isinstance(doc.get("error_description"), str):
                    detail += f": {doc['error_description']}"
                detail = f" ({_bounded(detail)})"
            raise OidcError(
                f"the sign-in provider at {self.issuer} answered HTTP {response.status_code} "
                f"for {what}{detail}"
            )
        if not isinstance(doc, dict):
            raise OidcError(
                f"the sign-in provider at {self.issuer} sent something other than a JSON "
                f"object for {what}"
            )
        return doc

    def _too_big(self, what: str) -> OidcError:
        return OidcError(
            f"the sign-in provider at {self.issuer} sent more than {MAX_BODY // 1_000_000} MB "
            f"for {what}; Signoff refuses answers that large"
        )


def _pick(keys: KeySet, kid: str | None, alg: str) -> Key | None:
    """The signing key for `alg` with id `kid` (or the only fitting one when there is no
    kid), or None."""
    wanted = "RSA" if alg.startswith("RS") else "EC"
    fitting = [
        key
        for key in keys
        if key.key_type == wanted
        and key.get("use") in (None, "sig")
        and key.get("alg") in (None, alg)
    ]
    if kid is not None:
        fitting = [key for key in fitting if key.kid == kid]
    elif len(fitting) != 1:
        return None
    return fitting[0] if fitting else None
