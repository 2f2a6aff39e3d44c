"""The ID token checks of `adapters.web.oidc` (OpenID Connect Core 1.0, 3.1.3.7), against
a provider on 127.0.0.1 that this test controls, so it can send what a broken or hostile
provider would: unsigned tokens, foreign audiences, stale or future tokens, rotated keys,
answers too large. The well-behaved path is tested end to end in test_web_oidc.py."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.web.oidc import OidcClient, OidcError, Pending
from tests.conftest import free_port

CLIENT_ID = "signoff-inbox"
SECRET = "a-client-secret-for-tests"
REDIRECT = "http://127.0.0.1:1/inbox/oidc/callback"
RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
OTHER_RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})  # same kid, other key
EC = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@dataclass
class Hostile:
    """A provider whose token endpoint answers `token(claims)`."""

    base: str = ""
    published: list[Any] = field(default_factory=lambda: [RSA, EC])
    discovery: dict[str, Any] = field(default_factory=dict)
    token_answer: Callable[[dict[str, Any]], tuple[int, Any]] | None = None
    sign: Callable[[dict[str, Any]], str] | None = None
    seen: list[dict[str, Any]] = field(default_factory=list)
    jwks_fetches: int = 0

    def claims(self, nonce: str) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.base,
            "sub": "carol-1",
            "aud": CLIENT_ID,
            "exp": now + 300,
            "iat": now,
            "nonce": nonce,
            "email": "Carol@Example.com",
            "email_verified": True,
        }

    def app(self) -> Starlette:
        async def discovery(request: Request) -> Response:
            doc = {
                "issuer": self.base,
                "authorization_endpoint": f"{self.base}/authorize",
                "token_endpoint": f"{self.base}/token",
                "jwks_uri": f"{self.base}/jwks",
                "code_challenge_methods_supported": ["S256"],
            }
            return JSONResponse({**doc, **self.discovery})

        async def jwks(request: Request) -> Response:
            self.jwks_fetches += 1
            return JSONResponse(KeySet(self.published).as_dict(private=False))

        async def token(request: Request) -> Response:
            form = dict(await request.form())
            self.seen.append({"form": form, "auth": request.headers.get("authorization")})
            nonce = str(self.nonce)
            if self.token_answer is not None:
                status, body = self.token_answer(self.claims(nonce))
                if isinstance(body, bytes):
                    return Response(body, status, media_type="application/json")
                return JSONResponse(body, status)
            claims = self.claims(nonce)
            signed = self.sign(claims) if self.sign else signed_by(RSA, claims)
            return JSONResponse({"access_token": "at", "token_type": "Bearer", "id_token": signed})

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery),
                Route("/jwks", jwks),
                Route("/token", token, methods=["POST"]),
            ]
        )

    nonce: str = ""


def signed_by(key: Any, claims: dict[str, Any], alg: str = "RS256", **header: Any) -> str:
    return jwt.encode({"alg": alg, "kid": key.kid, **header}, claims, key, algorithms=[alg])


@asynccontextmanager
async def hostile() -> AsyncIterator[Hostile]:
    provider = Hostile()
    port = free_port()
    provider.base = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn.Config(provider.app(), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield provider
    finally:
        server.should_exit = True
        await task


async def sign_in(provider: Hostile) -> str:
    """begin() then finish() as the browser's round trip would: the email, or OidcError."""
    client = OidcClient(provider.base, CLIENT_ID, SECRET)
    try:
        url, pending = await client.begin(REDIRECT)
        assert url.startswith(f"{provider.base}/authorize?")
        provider.nonce = pending.nonce
        return await client.finish(REDIRECT, {"code": "the-code", "state": pending.state}, pending)
    finally:
        await client.aclose()


async def test_a_good_token_gives_the_verified_email_and_sends_pkce() -> None:
    async with hostile() as provider:
        assert await sign_in(provider) == "carol@example.com"
        sent = provider.seen[0]
        assert sent["form"]["grant_type"] == "authorization_code"
        assert sent["form"]["code"] == "the-code"
        assert sent["form"]["redirect_uri"] == REDIRECT
        assert len(sent["form"]["code_verifier"]) >= 43
        assert "client_secret" not in sent["form"]  # client_secret_basic, the default
        assert base64.b64decode(sent["auth"].removeprefix("Basic ")).decode() == (
            f"{CLIENT_ID}:{SECRET}"
        )


async def test_es256_is_accepted_and_client_secret_post_is_used_when_offered() -> None:
    async with hostile() as provider:
        provider.sign = lambda claims: signed_by(EC, claims, "ES256")
        provider.discovery = {"token_endpoint_auth_methods_supported": ["client_secret_post"]}
        assert await sign_in(provider) == "carol@example.com"
        assert provider.seen[0]["form"]["client_secret"] == SECRET
        assert provider.seen[0]["auth"] is None


async def test_rotated_keys_are_fetched_once_more() -> None:
    async with hostile() as provider:
        rotated = RSAKey.generate_key(2048, parameters={"kid": "rsa-2"})
        client = OidcClient(provider.base, CLIENT_ID, SECRET)
        try:
            for key in (RSA, rotated):
                provider.sign = lambda claims, key=key: signed_by(key, claims)
                if key is rotated:
                    provider.published = [rotated]
                _, pending = await client.begin(REDIRECT)
                provider.nonce = pending.nonce
                params = {"code": "c", "state": pending.state}
                assert await client.finish(REDIRECT, params, pending) == "carol@example.com"
        finally:
            await client.aclose()
        assert provider.jwks_fetches == 2


def unsigned(claims: dict[str, Any]) -> str:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(claims).encode())}."


def hs256_with_the_client_secret(claims: dict[str, Any]) -> str:
    key = OctKey.import_key(SECRET.encode() + b"-padded-to-32-bytes!")
    return jwt.encode({"alg": "HS256"}, claims, key, algorithms=["HS256"])


def changed(**given: Any) -> Callable[[dict[str, Any]], str]:
    """A signer that changes claims; a callable value is computed when the token is made
    (times must be relative to then, not to when the tests were collected)."""

    def sign(claims: dict[str, Any]) -> str:
        values = {k: v() if callable(v) else v for k, v in given.items()}
        claims = {**claims, **values}
        for name, value in values.items():
            if value is None:
                del claims[name]
        return signed_by(RSA, claims)

    return sign


BAD_TOKENS: list[tuple[str, Callable[[dict[str, Any]], str], str]] = [
    ("alg none", unsigned, "algorithm 'none', which Signoff refuses"),
    ("HS256", hs256_with_the_client_secret, "algorithm 'HS256', which Signoff refuses"),
    ("other key, same kid", lambda c: signed_by(OTHER_RSA, c), "signature does not verify"),
    (
        "unknown kid",
        lambda c: signed_by(RSAKey.generate_key(2048, parameters={"kid": "x"}), c),
        "does not publish in its JWKS",
    ),
    ("not a JWT", lambda c: "not.a.jwt", "not a signed JWT"),
    ("wrong audience", changed(aud="someone-else"), "is meant for 'someone-else'"),
    ("wrong issuer", changed(iss="https://evil.example"), "issued by 'https://evil.example'"),
    ("expired", changed(exp=lambda: int(time.time()) - 120), "has expired"),
    ("from the future", changed(iat=lambda: int(time.time()) + 600), "issued in the future"),
    ("no sub", changed(sub=None), "lacks the required claim"),
    ("no exp", changed(exp=None), "lacks the required claim"),
    ("wrong nonce", changed(nonce="a-nonce-from-another-attempt"), "nonce does not match"),
    ("no nonce", changed(nonce=None), "nonce does not match"),
    (
        "several audiences, no azp",
        changed(aud=[CLIENT_ID, "other"]),
        "has no azp claim",
    ),
    ("azp of another client", changed(azp="other"), "requested by 'other' (azp)"),
    ("unverified email", changed(email_verified=False), "has not verified the email"),
    ("no email", changed(email=None), "did not say which email address"),
]


@pytest.mark.parametrize(
    ("sign", "why"), [b[1:] for b in BAD_TOKENS], ids=[b[0] for b in BAD_TOKENS]
)
async def test_a_bad_id_token_is_refused(sign: Callable[[dict[str, Any]], str], why: str) -> None:
    async with hostile() as provider:
        provider.sign = sign
        with pytest.raises(OidcError, match=why.replace("(", r"\(").replace(")", r"\)")):
            await sign_in(provider)


async def test_a_bad_provider_answer_is_refused() -> None:
    async with hostile() as provider:
        provider.token_answer = lambda c: (
            400,
            {"error": "invalid_grant", "error_description": "spent"},
        )
        with pytest.raises(
            OidcError, match=r"HTTP 400 for its token endpoint \(invalid_grant: spent\)"
        ):
            await sign_in(provider)
        provider.token_answer = lambda c: (200, {"access_token": "at"})
        with pytest.raises(OidcError, match="without an ID token"):
            await sign_in(provider)
        provider.token_answer = lambda c: (200, b"[1, 2]")
        with pytest.raises(OidcError, match="other than a JSON object"):
            await sign_in(provider)
        provider.token_answer = lambda c: (200, b'{"id_token": "' + b"a" * 1_000_001 + b'"}')
        with pytest.raises(OidcError, match="more than 1 MB"):
            await sign_in(provider)


@pytest.mark.parametrize(
    ("discovery", "why"),
    [
        ({"issuer": "https://elsewhere.example"}, "names the issuer 'https://elsewhere.example'"),
        ({"token_endpoint": "ftp://x"}, "no usable token_endpoint"),
        ({"code_challenge_methods_supported": ["plain"]}, "does not support PKCE with S256"),
        (
            {"token_endpoint_auth_methods_supported": ["private_key_jwt"]},
            "accepts neither client_secret_basic nor client_secret_post",
        ),
    ],
)
async def test_a_bad_discovery_document_is_refused(discovery: dict[str, Any], why: str) -> None:
    async with hostile() as provider:
        provider.discovery = discovery
        with pytest.raises(OidcError, match=why):
            await sign_in(provider)


async def test_the_answer_in_the_browser_is_checked_before_any_exchange() -> None:
    async with hostile() as provider:
        client = OidcClient(provider.base, CLIENT_ID, SECRET)
        try:
            _, pending = await client.begin(REDIRECT)
            cases = [
                (
                    {"error": "access_denied", "error_description": "no\nway"},
                    "access_denied: no way",
                ),
                ({"code": "c", "state": "other"}, "does not belong to this browser"),
                ({"code": "c"}, "does not belong to this browser"),
                ({"state": pending.state}, "has no authorization code"),
                (
                    {"code": "c", "state": pending.state, "iss": "https://mix-up.example"},
                    "came from 'https://mix-up.example'",
                ),
            ]
            for params, why in cases:
                with pytest.raises(OidcError, match=why):
                    await client.finish(REDIRECT, params, pending)
        finally:
            await client.aclose()
        assert provider.seen == []  # no code was sent to the token endpoint


def test_a_pending_attempt_round_trips_and_refuses_anything_else() -> None:
    made = Pending.new()
    assert Pending.load(made.dump()) == made
    for text in ("", "[]", "{}", '{"state": "s"}', made.dump().replace('"state"', '"State"')):
        with pytest.raises(OidcError, match="could not be read back"):
            Pending.load(text)
    short = json.dumps({"state": "s", "nonce": made.nonce, "code_verifier": made.code_verifier})
    with pytest.raises(OidcError):
        Pending.load(short)
