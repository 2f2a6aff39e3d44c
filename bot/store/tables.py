"""The tables, as SQLAlchemy 2 declarative models.

Times are stored as naive UTC and read back as aware UTC on every database, so a
query's `due_at <= now` means the same on SQLite and PostgreSQL. Case bodies and
event details are JSON text that Signoff writes itself (orjson), which keeps the
intake path free of per-row type conversions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC times")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return read_utc(value)


def read_utc(value: Any) -> datetime | None:
    """A stored time (naive UTC; text on SQLite) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("source", "idempotency_key", name="uq_cases_source_idempotency_key"),
        Index("ix_cases_source_id", "source", "id"),
        Index("ix_cases_status_lane", "status", "lane"),
        Index("ix_cases_kind", "kind"),
        Index("ix_cases_created_at", "created_at"),
        Index("ix_cases_status_due_at", "status", "due_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(32))
    lane: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(120))
    policy_version: Mapped[str] = mapped_column(String(64))
    recommended_action: Mapped[str] = mapped_column(String(32))
    confidence: Mapped[float] = mapped_column(Float)
    requested_by: Mapped[str | None] = mapped_column(String(256))
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    audit_sampled: Mapped[bool] = mapped_column(Boolean, default=False)
    blind_review: Mapped[bool] = mapped_column(Boolean, default=False)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(256))
    claimed_by: Mapped[str | None] = mapped_column(String(300))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    submit_response: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)


class Decision(Base):
    """A decision or a quorum vote. One row per reviewer per case (the quorum is of
    distinct people); `final` marks the row that settled the case."""

    __tablename__ = "decisions"
    __table_args__ = (
        UniqueConstraint("case_id", "reviewer", name="uq_decisions_case_reviewer"),
        Index("ix_decisions_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"))
    action: Mapped[str] = mapped_column(String(32))
    reason_code: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    # `modify`: the proposal's full arguments as the reviewer left them (JSON text)
    args: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(String(300))
    platform: Mapped[str | None] = mapped_column(String(32))
    decided_by: Mapped[str] = mapped_column(String(16))
    final: Mapped[bool] = mapped_column(Boolean, default=False)
    overrode_ai: Mapped[bool] = mapped_column(Boolean, default=False)
    policy_version: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The case's dimensions, copied when the decision is written, so that reports over a
    # week's decisions read this table's range alone (no join to every case).
    kind: Mapped[str | None] = mapped_column(String(64))
    lane: Mapped[str | None] = mapped_column(String(64))
    confidence: Mapped[float | None] = mapped_column(Float)
    blind_review: Mapped[bool | None] = mapped_column(Boolean)
    case_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Event(Base):
    """The audit log: append-only. Nothing updates or deletes these rows."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_case_id_id", "case_id", "id"), Index("ix_events_at", "at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[str | None] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    type: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(300))
    detail: Mapped[str] = mapped_column(Text, default="{}")
    policy_version: Mapped[str | None] = mapped_column(String(64))


class Outbox(Base):
    """Deliveries owed: card posts and updates, thread notes, pages, callbacks."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_outbox_case_id", "case_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(2100))
    payload: Mapped[str] = mapped_column(Text, default="{}")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Card(Base):
    """Where a case's card was posted, so later updates edit that message."""

    __tablename__ = "cards"

    case_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    platform: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel: Mapped[str] = mapped_column(String(200), primary_key=True)
    message_ref: Mapped[str] = mapped_column(Text)
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Timer(Base):
    """The SLA clock's rows: what is due when, and when it fired."""

    __tablename__ = "timers"
    __table_args__ = (
        Index("ix_timers_fired_at_due_at", "fired_at", "due_at"),
        Index("ix_timers_case_id", "case_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(String(32))
    what: Mapped[str] = mapped_column(String(32))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Run(Base):
    """A scheduled job's run, by a key naming its period (`digest:2026-11-30`): the
    replica that inserts the key first runs the job; the others find it taken."""

    __tablename__ = "runs"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class Signature(Base):
    """A mutating request's signature, accepted once, kept for as long as the window
    lets it be sent again, with the answer that a replay of it gets. `digest` is a
    hash of the MAC (never the MAC); `status` is None while the first answer is being
    made. The key leads with the expiry, so that new rows go to the end of the index
    (a random hash alone would touch a page anywhere in it per row) and a sweep reads
    one range; a request's expiry is known from its own timestamp when it is looked up."""

    __tablename__ = "signatures"
    __table_args__ = {"sqlite_with_rowid": False}  # noqa: RUF012 - SQLAlchemy's form

    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[str | None] = mapped_column(Text)


cases = cast(Table, Case.__table__)
decisions = cast(Table, Decision.__table__)
events = cast(Table, Event.__table__)
outbox = cast(Table, Outbox.__table__)
cards = cast(Table, Card.__table__)
timers = cast(Table, Timer.__table__)
runs = cast(Table, Run.__table__)
signatures = cast(Table, Signature.__table__)


class WebLogin(Base):
    """A one-time sign-in link for the web inbox (`signoff web login-link`): only a hash
    of its token is kept; `used_at` is set by the one sign-in it allows."""

    __tablename__ = "web_logins"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebSession(Base):
    """A signed-in browser: the cookie holds the token, the table a hash of it, who it
    is, how they signed in (link or oidc), and the CSRF token its forms carry."""

    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_expires_at", "expires_at"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    method: Mapped[str] = mapped_column(String(16))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


web_logins = cast(Table, WebLogin.__table__)
web_sessions = cast(Table, WebSession.__table__)
