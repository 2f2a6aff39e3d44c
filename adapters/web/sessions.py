"""Sign-in for the web inbox: one-time links and sessions, kept in the database.

Only SHA-256 hashes of tokens are stored, so a copy of the database lets nobody sign
in. A link is good for 15 minutes and one sign-in; opening it shows a button, and only
pressing it (a POST) uses it, so a mail scanner that fetches links cannot spend it. A
session lasts `SIGNOFF_WEB_SESSION_HOURS` and carries the CSRF token of its forms.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select, update

from bot.store.db import Store, Writer
from bot.store.tables import web_logins, web_sessions

LINK_LIFETIME = timedelta(minutes=15)
MAX_EMAIL = 320


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normal_email(value: str) -> str:
    """An e-mail address as the policy writes it (lower-case), or ValueError."""
    email = value.strip().lower()
    local, at, domain = email.partition("@")
    if (
        not at
        or not local
        or not domain
        or "@" in domain
        or len(email) > MAX_EMAIL
        or any(c.isspace() or ord(c) < 32 for c in email)
    ):
        raise ValueError(f"{value[:100]!r} is not an e-mail address (like alice@example.com)")
    return email


@dataclass(frozen=True)
class Session:
    email: str
    csrf: str
    method: str
    expires_at: datetime

    @property
    def reviewer_key(self) -> str:
        return f"web:{self.email}"


class Sessions:
    def __init__(self, store: Store, hours: float) -> None:
        self.store = store
        self.lifetime = timedelta(hours=hours)

    async def new_link(self, email: str, now: datetime) -> str:
        """A one-time sign-in token for `email` (the caller makes the URL)."""
        email = normal_email(email)
        token = secrets.token_urlsafe(32)
        row = {
            "token_hash": digest(token),
            "email": email,
            "created_at": now,
            "expires_at": now + LINK_LIFETIME,
            "used_at": None,
        }
        async with self.store.write() as conn:
            await conn.execute(web_logins.insert(), [row])
        return token

    async def link_email(self, token: str, now: datetime) -> str | None:
        """Whose link this is, while it is good (not used, not expired); reads only."""
        if not 20 <= len(token) <= 100:
            return None

        def read(conn: Connection) -> str | None:
            row = conn.execute(
                select(web_logins.c.email).where(
                    web_logins.c.token_hash == digest(token),
                    web_logins.c.used_at.is_(None),
                    web_logins.c.expires_at > now,
                )
            ).first()
            return None if row is None else str(row[0])

        return await self.store.run_read(read)

    async def use_link(self, token: str, now: datetime) -> tuple[str, str] | None:
        """Spend the link and start a session: (cookie token, email), or None when the
        link is unknown, used or expired. Two presses at once: one wins."""
        if not 20 <= len(token) <= 100:
            return None
        async with self.store.write() as conn:
            email = (
                await conn.execute(
                    update(web_logins)
                    .where(
                        web_logins.c.token_hash == digest(token),
                        web_logins.c.used_at.is_(None),
                        web_logins.c.expires_at > now,
                    )
                    .values(used_at=now)
                    .returning(web_logins.c.email)
                )
            ).scalar_one_or_none()
            if email is None:
                return None
            cookie = await self._start(conn, str(email), "link", now)
        return cookie, str(email)

    async def start(self, email: str, method: str, now: datetime) -> str:
        """A session for `email` (signed in some other way: OIDC); returns its cookie token."""
        async with self.store.write() as conn:
            return await self._start(conn, normal_email(email), method, now)

    async def _start(self, conn: Writer, email: str, method: str, now: datetime) -> str:
        token = secrets.token_urlsafe(32)
        row = {
            "token_hash": digest(token),
            "email": email,
            "method": method,
            "csrf": secrets.token_urlsafe(24),
            "created_at": now,
            "expires_at": now + self.lifetime,
        }
        await conn.execute(web_sessions.insert(), [row])
        # sweep what has run out, a little at every sign-in
        await conn.execute(delete(web_sessions).where(web_sessions.c.expires_at <= now))
        await conn.execute(delete(web_logins).where(web_logins.c.expires_at <= now - LINK_LIFETIME))
        return token

    async def get(self, token: str | None, now: datetime) -> Session | None:
        if not token or len(token) > 100:
            return None

        def read(conn: Connection) -> Session | None:
            row = (
                conn.execute(
                    select(web_sessions).where(
                        web_sessions.c.token_hash == digest(token),
                        web_sessions.c.expires_at > now,
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            return Session(row["email"], row["csrf"], row["method"], row["expires_at"])

        return await self.store.run_read(read)

    async def end(self, token: str) -> None:
        async with self.store.write() as conn:
            await conn.execute(
                delete(web_sessions).where(web_sessions.c.token_hash == digest(token))
            )

    async def any_session(self) -> bool:
        """Whether anyone has signed in yet (so `serve` knows to print a first link)."""

        def read(conn: Connection) -> bool:
            return conn.execute(select(web_sessions.c.email).limit(1)).first() is not None

        return await self.store.run_read(read)
