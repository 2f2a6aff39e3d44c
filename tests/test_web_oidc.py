"""Single sign-on for the web inbox (OpenID Connect, authorization code with PKCE),
against a real OpenID provider on 127.0.0.1: oidc-provider-mock, built on Authlib's
server, issuing RS256 ID tokens from its discovery document and JWKS.

Every refusal is checked to leave nobody signed in."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from adapters.memory import MemoryAdapter
from adapters.web import WebSurface
from bot.clock import FrozenClock
from bot.errors import ConfigError
from bot.protocols import Clock
from bot.store.tables import decisions, web_sessions
from tests.conftest import free_port, settings_for
from tests.webkit import Inbox, csrf_of, running_inbox

CLIENT_ID = "signoff-inbox"
CLIENT_SECRET = "test-client-secret-not-a-real-one"


@dataclass
class Provider:
    issuer: str

    def user(self, sub: str, **claims: Any) -> None:
        """Makes (or replaces) a person at the provider, with these ID token claims."""
        answer = httpx.put(f"{self.issuer}/users/{sub}", json=claims, timeout=10)
        assert answer.status_code == 204, answer.text

    def register(self, redirect_uri: str) -> tuple[str, str]:
        """A client registered at a provider that requires registration: (id, secret)."""
        answer = httpx.post(
            f"{self.issuer}/oauth2/clients", json={"redirect_uris": [redirect_uri]}, timeout=10
        )
        assert answer.status_code == 201, answer.text
        made = answer.json()
        return str(made["client_id"]), str(made["client_secret"])

    def authorize(self, url: str, **form: str) -> str:
        """What a person does on the provider's page (`sub` to sign in, `action=deny`
        to refuse): returns where the provider sends the browser back to."""
        assert url.startswith(f"{self.issuer}/oauth2/authorize?"), url
        answer = httpx.post(url, data=form, timeout=10)
        assert answer.status_code == 302, answer.text
        return answer.headers["location"]


@contextmanager
def provider(**options: Any) -> Iterator[Provider]:
    import oidc_provider_mock

    app = oidc_provider_mock.app(require_nonce=True, **options)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Provider(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture
def idp() -> Iterator[Provider]:
    with provider() as found:
        yield found


@asynccontextmanager
async def sso_inbox(
    database_url: str,
    memory: MemoryAdapter,
    idp: Provider,
    *,
    clock: Clock | None = None,
    client: tuple[str, str] = (CLIENT_ID, CLIENT_SECRET),
    port: int | None = None,
) -> AsyncIterator[Inbox]:
    async with running_inbox(
        database_url,
        memory,
        clock=clock,
        port=port or free_port(),
        oidc_issuer=idp.issuer,
        oidc_client_id=client[0],
        oidc_client_secret=client[1],
    ) as inbox:
        yield inbox


@pytest.fixture
async def inbox(sqlite_url: str, memory: MemoryAdapter, idp: Provider) -> AsyncIterator[Inbox]:
    async with sso_inbox(sqlite_url, memory, idp) as found:
        yield found


async def start(client: httpx.AsyncClient, after: str | None = None) -> str:
    """The browser follows 'Sign in with single sign-on': the provider's URL."""
    params = {"next": after} if after else {}
    answer = await client.get("/inbox/oidc/start", params=params)
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


def local(url: str) -> str:
    """The path and query of a URL on the inbox (the provider's redirect back)."""
    return httpx.URL(url).raw_path.decode()


async def session_rows(inbox: Inbox) -> list[dict[str, object]]:
    async with inbox.runtime.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(select(web_sessions))).mappings()]


# -- the way in ------------------------------------------------------------------------


async def test_sign_in_with_the_provider_then_decide(inbox: Inbox, idp: Provider) -> None:
    idp.user("alice-1", email="Alice@Example.com", email_verified=True)
    made = await inbox.api.submit()
    async with inbox.browser(None) as client:
        signin = await client.get("/inbox/signin", params={"next": "/inbox/history"})
        assert "Sign in with single sign-on" in signin.text
        assert 'href="/inbox/oidc/start?next=/inbox/history"' in signin.text
        started = await client.get("/inbox/oidc/start", params={"next": "/inbox/history"})
        assert started.status_code == 303
        cookie = started.headers["set-cookie"].lower()
        for part in (
            "signoff_oidc=",
            "httponly",
            "samesite=lax",
            "path=/inbox/oidc",
            "max-age=600",
        ):
            assert part in cookie
        url = httpx.URL(started.headers["location"])
        asked = dict(url.params)
        assert asked["client_id"] == CLIENT_ID
        assert asked["response_type"] == "code"
        assert asked["scope"] == "openid email profile"
        assert asked["redirect_uri"] == f"{inbox.web.base_url}/inbox/oidc/callback"
        assert asked["code_challenge_method"] == "S256"
        assert len(asked["state"]) >= 32
        assert len(asked["nonce"]) >= 32
        back = idp.authorize(str(url), sub="alice-1")
        assert back.startswith(f"{inbox.web.base_url}/inbox/oidc/callback?")
        assert "code=" in back
        landed = await client.get(local(back))
        assert landed.status_code == 303, landed.text
        assert landed.headers["location"] == "/inbox/history"
        set_cookies = landed.headers.get_list("set-cookie")
        assert any(c.startswith("signoff_session=") and "HttpOnly" in c for c in set_cookies)
        assert any(c.startswith("signoff_oidc=") and "Max-Age=0" in c for c in set_cookies)
        queue = await client.get("/inbox/")
        assert queue.status_code == 200
        assert "alice@example.com" in queue.text
        # a person signed in by the provider decides under the same rules as anyone
        page = (await client.get(f"/inbox/cases/{made['id']}")).text
        done = await client.post(
            f"/inbox/cases/{made['id']}",
            data={"csrf": csrf_of(page), "action": "approve", "reason_code": "policy_match"},
        )
        assert done.status_code == 303, done.text
    sessions = await session_rows(inbox)
    assert [(s["email"], s["method"]) for s in sessions] == [("alice@example.com", "oidc")]
    async with inbox.runtime.engine.connect() as conn:
        kept = (await conn.execute(select(decisions))).mappings().all()
    assert [(d["reviewer"], d["platform"]) for d in kept] == [("web:alice@example.com", "web")]
    read = await inbox.api.get(f"/v1/escalations/{made['id']}")
    assert read.json()["status"] == "approved"


async def test_signed_in_by_the_provider_is_not_an_approver(inbox: Inbox, idp: Provider) -> None:
    idp.user("zed", email="zed@example.com", email_verified=True)
    made = await inbox.api.submit()
    async with inbox.browser(None) as client:
        back = idp.authorize(await start(client), sub="zed")
        assert (await client.get(local(back))).status_code == 303
        page = await client.get(f"/inbox/cases/{made['id']}")
        assert page.status_code == 200
        refused = await client.post(
            f"/inbox/cases/{made['id']}",
            data={"csrf": csrf_of(page.text), "action": "approve", "reason_code": "policy_match"},
        )
        assert refused.status_code == 403
    async with inbox.runtime.engine.connect() as conn:
        assert (await conn.execute(select(decisions))).first() is None


async def test_where_to_go_after_is_always_the_inbox(inbox: Inbox, idp: Provider) -> None:
    idp.user("carol", email="carol@example.com", email_verified=True)
    for after in ("https://evil.example/", "//evil.example/x", "/inbox/\\evil", "/elsewhere"):
        async with inbox.browser(None) as client:
            back = idp.authorize(await start(client, after), sub="carol")
            landed = await client.get(local(back))
            assert landed.status_code == 303
            assert landed.headers["location"] == "/inbox/", after


# -- refusals: each leaves nobody signed in ---------------------------------------------


async def refused(client: httpx.AsyncClient, url: str, why: str) -> None:
    answer = await client.get(url)
    assert answer.status_code == 400, answer.text
    assert "Single sign-on did not work" in answer.text
    assert why in answer.text, answer.text
    assert 'href="/inbox/oidc/start"' in answer.text  # a way to start again
    assert not any(c.startswith("signoff_session=") for c in answer.headers.get_list("set-cookie"))
    assert (await client.get("/inbox/")).status_code == 303  # still signed out


async def test_a_code_is_good_once(inbox: Inbox, idp: Provider) -> None:
    idp.user("carol", email="carol@example.com", email_verified=True)
    async with inbox.browser(None) as client:
        provider_url = await start(client)
        attempt = client.cookies["signoff_oidc"]
        back = idp.authorize(provider_url, sub="carol")
        assert (await client.get(local(back))).status_code == 303
    # the same answer again, even with the attempt's cookie copied: the provider
    # refuses the spent code, and nobody else is signed in
    async with inbox.browser(None) as thief:
        thief.cookies.set("signoff_oidc", attempt, path="/inbox/oidc")
        await refused(thief, local(back), "answered HTTP 400 for its token endpoint")
    assert len(await session_rows(inbox)) == 1


async def test_an_answer_for_another_browser_is_refused(inbox: Inbox, idp: Provider) -> None:
    idp.user("carol", email="carol@example.com", email_verified=True)
    async with inbox.browser(None) as victim, inbox.browser(None) as attacker:
        # the attacker starts a sign-in and makes the victim's browser finish it
        await start(victim)
        back = idp.authorize(await start(attacker), sub="carol")
        await refused(victim, local(back), "does not belong to this browser")
        # and without any attempt under way
        async with inbox.browser(None) as fresh:
            await refused(fresh, local(back), "no sign-in attempt under way")
    assert await session_rows(inbox) == []


@pytest.mark.parametrize("damage", ["flip", "unsigned", "garbage", "long"])
async def test_a_damaged_attempt_cookie_is_refused(
    inbox: Inbox, idp: Provider, damage: str
) -> None:
    idp.user("carol", email="carol@example.com", email_verified=True)
    async with inbox.browser(None) as client:
        back = idp.authorize(await start(client), sub="carol")
        value = client.cookies["signoff_oidc"]
        body, _, mac = value.partition(".")
        changed = {
            "flip": ("A" if body[5] != "A" else "B").join((body[:5], body[6:])) + "." + mac,
            "unsigned": body,
            "garbage": "not-a-cookie",
            "long": value + "A" * 3000,
        }[damage]
        client.cookies.delete("signoff_oidc")
        client.cookies.set("signoff_oidc", changed, path="/inbox/oidc")
        await refused(client, local(back), "could not be read back")
    assert await session_rows(inbox) == []


async def test_an_attempt_is_good_for_ten_minutes(
    sqlite_url: str, memory: MemoryAdapter, idp: Provider
) -> None:
    idp.user("carol", email="carol@example.com", email_verified=True)
    clock = FrozenClock(datetime.now(UTC))
    async with sso_inbox(sqlite_url, memory, idp, clock=clock) as inbox:
        async with inbox.browser(None) as client:
            back = idp.authorize(await start(client), sub="carol")
            clock.advance(601)
            await refused(client, local(back), "took longer than 10 minutes")
        assert await session_rows(inbox) == []


async def test_the_provider_refusing_is_shown(inbox: Inbox, idp: Provider) -> None:
    async with inbox.browser(None) as client:
        back = idp.authorize(await start(client), action="deny")
        await refused(client, local(back), "refused the sign-in: access_denied")
    assert await session_rows(inbox) == []


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"email": "carol@example.com", "email_verified": False}, "has not verified the email"),
        ({"email": "carol@example.com"}, "has not verified the email"),
        ({"email_verified": True, "name": "Carol"}, "did not say which email address"),
    ],
)
async def test_only_a_verified_email_signs_in(
    inbox: Inbox, idp: Provider, claims: dict[str, Any], why: str
) -> None:
    idp.user("carol", **claims)
    async with inbox.browser(None) as client:
        back = idp.authorize(await start(client), sub="carol")
        await refused(client, local(back), why)
    assert await session_rows(inbox) == []


async def test_a_wrong_client_secret_is_refused_by_the_provider(
    sqlite_url: str, memory: MemoryAdapter
) -> None:
    port = free_port()
    with provider(require_client_registration=True) as strict:
        strict.user("carol", email="carol@example.com", email_verified=True)
        client_id, secret = strict.register(f"http://127.0.0.1:{port}/inbox/oidc/callback")
        async with sso_inbox(
            sqlite_url, memory, strict, client=(client_id, secret + "-wrong"), port=port
        ) as inbox:
            async with inbox.browser(None) as client:
                back = strict.authorize(await start(client), sub="carol")
                await refused(client, local(back), "answered HTTP 401 for its token endpoint")
            assert await session_rows(inbox) == []
        async with sso_inbox(
            sqlite_url, memory, strict, client=(client_id, secret), port=port
        ) as inbox:
            async with inbox.browser(None) as client:
                back = strict.authorize(await start(client), sub="carol")
                assert (await client.get(local(back))).status_code == 303
            assert len(await session_rows(inbox)) == 1


async def test_an_unreachable_provider_is_a_clear_page(
    sqlite_url: str, memory: MemoryAdapter
) -> None:
    gone = Provider(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    async with sso_inbox(sqlite_url, memory, gone) as inbox, inbox.browser(None) as client:
        answer = await client.get("/inbox/oidc/start")
        assert answer.status_code == 502
        assert "could not be reached for its discovery document" in answer.text
        assert "signoff_oidc" not in answer.headers.get("set-cookie", "")


# -- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "why"),
    [
        ({"oidc_client_secret": "sekrit-123"}, "needs SIGNOFF_OIDC_CLIENT_ID too"),
        ({"oidc_client_id": "c"}, "needs SIGNOFF_OIDC_CLIENT_SECRET too"),
        ({}, "needs SIGNOFF_OIDC_CLIENT_ID and SIGNOFF_OIDC_CLIENT_SECRET"),
        (
            {
                "oidc_client_id": "c",
                "oidc_client_secret": "sekrit-123",
                "oidc_issuer": "http://idp.example",
            },
            "must be an https:// URL",
        ),
        (
            {
                "oidc_client_id": "c",
                "oidc_client_secret": "sekrit-123",
                "oidc_issuer": "https://x/?a=1",
            },
            "no query or fragment",
        ),
    ],
)
def test_sso_settings_are_checked(sqlite_url: str, settings: dict[str, str], why: str) -> None:
    values = {"oidc_issuer": "https://idp.example.com", **settings}
    with pytest.raises(ConfigError, match=why) as raised:
        WebSurface(settings_for(sqlite_url, **values))
    assert "sekrit-123" not in str(raised.value)  # the secret is never repeated


async def test_with_sso_no_first_start_link_is_printed(
    sqlite_url: str, memory: MemoryAdapter, idp: Provider, capsys: pytest.CaptureFixture[str]
) -> None:
    async with sso_inbox(sqlite_url, memory, idp):
        assert "token=" not in capsys.readouterr().err


async def test_without_sso_there_is_no_sso_route(sqlite_url: str, memory: MemoryAdapter) -> None:
    async with running_inbox(sqlite_url, memory) as inbox, inbox.browser(None) as client:
        assert "single sign-on" not in (await client.get("/inbox/signin")).text
        assert (await client.get("/inbox/oidc/start")).status_code == 404
        assert (await client.get("/inbox/oidc/callback?code=x&state=y")).status_code == 404
