"""Settings, read once from `SIGNOFF_*` environment variables or a `.env` file.

Nothing else in Signoff reads the environment: `Settings` is built at start-up and
passed down.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///signoff.db"
SECRET_FILE = ".signoff-webhook-secret"  # noqa: S105 - a file name, not a secret


class Source(BaseModel):
    """A workflow that may submit cases: an HMAC secret, a bearer token, or both."""

    secret: SecretStr | None = None
    token: SecretStr | None = None


HOST_PATTERN = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """`host` as an address when it is one (`[::1]` too); an IPv4-mapped IPv6 address
    is its IPv4 address, since that is where a connection to it goes."""
    try:
        found = ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def host_allowed(url: str, patterns: Sequence[str]) -> bool:
    """Whether `url`'s host is one `patterns` names (any host when there are none).
    `*.example.com` takes the subdomains of example.com, not example.com itself; an
    address matches the same address however it is written (`::ffff:127.0.0.1` is
    `127.0.0.1`). Which addresses a name may resolve to is `bot.callbacks`' concern."""
    if not patterns:
        return True
    host = (urlsplit(url).hostname or "").lower()
    address = ip_literal(host)
    for pattern in patterns:
        if address is not None:
            if ip_literal(pattern) == address:
                return True
            continue
        if pattern.startswith("*.") and host.endswith(pattern[1:]) and host != pattern[2:]:
            return True
        if host == pattern:
            return True
    return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SIGNOFF_",
        env_file=".env",
        env_nested_delimiter="__",
        extra="ignore",
    )

    database_url: str = DEFAULT_DATABASE_URL
    policy: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_token: SecretStr | None = None
    sources: dict[str, Source] = Field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=16)

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    discord_bot_token: SecretStr | None = None
    discord_api_url: str = "https://discord.com/api/v10"
    # Discord user ID -> the names a workflow may use for that person (e-mail, login),
    # to refuse self-approval: SIGNOFF_DISCORD_IDENTITIES='{"1122…": ["alice@example.com"]}'
    discord_identities: dict[str, list[str]] = Field(default_factory=dict)

    reports_token: SecretStr | None = None  # bearer token for GET /v1/reports/*
    # Hosts that callback_url may name (`hooks.example.com`, `*.internal.example.com`,
    # `127.0.0.1`); empty allows any host, but never loopback, link-local, cloud
    # metadata and other special addresses: those only when an entry names that host
    # or address exactly (see bot/callbacks.py).
    # JSON: SIGNOFF_CALLBACK_HOSTS='["hooks.example.com"]'
    callback_hosts: list[str] = Field(default_factory=list)
    signature_window: int = Field(default=300, ge=1, le=3600)
    outbox_dead_after: int = Field(default=24 * 3600, ge=1)
    outbox_max_backoff: float = Field(default=300.0, gt=0)
    outbox_poll_interval: float = Field(default=2.0, gt=0)
    callback_timeout: float = Field(default=10.0, gt=0, le=120)
    outbox_lease: float = Field(default=60.0, gt=0)
    sla_sweep_interval: float = Field(default=1.0, gt=0, le=60)
    log_level: str = "INFO"
    # v1 signatures (over the body alone) on POST /v1/escalations, while senders move
    # to v2; refused everywhere else whatever this says
    accept_v1: bool = False

    # The web inbox at /inbox/ (adapters/web). `public_url` is where people reach this
    # server (sign-in links and the OIDC redirect are made from it), by default
    # http://<host>:<port>; behind https, cookies are Secure.
    web: bool = True
    public_url: str | None = None
    web_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError(
                f"{value!r} is not a base URL: give http(s)://host[:port][/path], "
                "e.g. https://signoff.example.com"
            )
        return value.rstrip("/")

    def base_url(self) -> str:
        """Where people reach this server."""
        if self.public_url:
            return self.public_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @field_validator("callback_hosts")
    @classmethod
    def _host_patterns(cls, value: list[str]) -> list[str]:
        found = []
        for pattern in value:
            host = pattern.strip().lower()
            address = ip_literal(host)
            if address is not None:
                found.append(str(address))
                continue
            if not HOST_PATTERN.fullmatch(host):
                raise ValueError(
                    f"{pattern!r} is not a host name or a *.domain pattern, nor an IP address "
                    "(e.g. hooks.example.com, *.internal.example.com, 127.0.0.1 or ::1)"
                )
            found.append(host)
        return found

    @field_validator("sources")
    @classmethod
    def _source_names(cls, value: dict[str, Source]) -> dict[str, Source]:
        return {name.lower(): source for name, source in value.items()}

    def all_sources(self) -> dict[str, Source]:
        """Configured sources, with `default` built from WEBHOOK_SECRET / WEBHOOK_TOKEN."""
        sources = dict(self.sources)
        base = sources.get("default", Source())
        sources["default"] = Source(
            secret=self.webhook_secret or base.secret, token=self.webhook_token or base.token
        )
        return sources

    # Per-channel pacing of posts (bot/pacing.py), for Slack and Discord channels: Slack
    # allows about one message a second per channel with short bursts
    # (https://docs.slack.dev/apis/web-api/rate-limits); per process, so per replica.
    channel_rate: float = 1.0  # messages a second, per channel
    channel_burst: int = 3  # messages sent at once into a quiet channel

    @field_validator("channel_rate")
    @classmethod
    def _channel_rate(cls, value: float) -> float:
        if not 0.01 <= value <= 50:
            raise ValueError(
                f"{value} is not a pacing rate Signoff takes: give messages a second per "
                "channel, from 0.01 to 50 (Slack allows about 1)"
            )
        return value

    @field_validator("channel_burst")
    @classmethod
    def _channel_burst(cls, value: int) -> int:
        if not 1 <= value <= 50:
            raise ValueError(
                f"{value} is not a pacing burst Signoff takes: give how many messages may go "
                "at once into a quiet channel, from 1 to 50 (Slack tolerates about 3)"
            )
        return value
