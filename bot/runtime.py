"""Everything a running Signoff holds, built once from `Settings` and started together."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import adapters as surfaces
from adapters.log import LogAdapter
from bot.clock import SystemClock
from bot.config import Settings
from bot.errors import ConfigError
from bot.intake import IntakeWriter
from bot.outbox import OutboxWorker
from bot.pacing import ChannelPacer
from bot.policy import LoadedPolicy, load_policy
from bot.protocols import Adapter, Clock, Surface
from bot.service import Service
from bot.sla import SlaClock
from bot.store import db
from bot.waiters import CaseWaiters, PgNotifier

log = logging.getLogger(__name__)


def configure_logging(level: str) -> None:
    """The server's logging: `level` for Signoff; APScheduler, which says every second
    that the SLA sweep ran, only from WARNING up unless debugging."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("apscheduler").setLevel(logging.WARNING)


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        policy: LoadedPolicy | None = None,
        adapters: Mapping[str, Adapter] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy or load_policy(settings.policy)
        self.clock = clock or SystemClock()
        found: dict[str, Adapter] = {"log": LogAdapter()}
        found.update(surfaces.from_settings(settings) if adapters is None else adapters)
        self.adapters = found
        self.sources = settings.all_sources()
        self.engine = db.create_engine(settings.database_url)
        self.store = db.Store(self.engine)
        secrets = {
            n: s.secret.get_secret_value() if s.secret else None for n, s in self.sources.items()
        }
        self.outbox = OutboxWorker(
            self.store,
            self.policy,
            self.adapters,
            secrets,
            self.clock,
            dead_after=settings.outbox_dead_after,
            max_backoff=settings.outbox_max_backoff,
            poll_interval=settings.outbox_poll_interval,
            callback_timeout=settings.callback_timeout,
            lease=settings.outbox_lease,
            callback_hosts=settings.callback_hosts,
            pacer=ChannelPacer(settings.channel_rate, settings.channel_burst),
        )
        self.writer = IntakeWriter(self.store, self.outbox.wake, dispatcher=self.outbox)
        self.waiters = CaseWaiters()
        self.notifier = (
            None
            if self.store.is_sqlite
            else PgNotifier(_asyncpg_dsn(settings.database_url), self.waiters)
        )
        self.service = Service(self.store, self.policy, self.adapters, self.clock, self.committed)
        self.sla = SlaClock(
            self.store,
            self.policy,
            self.clock,
            lambda: self.platforms,
            self.committed,
            interval=settings.sla_sweep_interval,
        )
        self.started = False

    def committed(self, *case_ids: str) -> None:
        """After a commit that moved `case_ids`: wake the outbox, this process's
        long-polls, and (on PostgreSQL) the other replicas' long-polls."""
        self.outbox.wake()
        if case_ids:
            self.waiters.changed(case_ids)
            if self.notifier is not None and self.started:
                self.notifier.notify(case_ids)

    @property
    def surfaces(self) -> list[Surface]:
        """Adapters that take reviewers' clicks."""
        return [a for a in self.adapters.values() if isinstance(a, Surface)]

    @property
    def platforms(self) -> set[str]:
        """Platforms that cards are posted to (the log stands in when there are none)."""
        return set(self.adapters) - {"log"}

    async def prepare_database(self) -> None:
        """Upgrade an empty database; refuse to run on one that is behind or ahead."""
        current, head = await db.revision_state(self.engine)
        if current == head:
            return
        if current is None:
            log.info("empty database: creating the schema (revision %s)", head)
            await db.upgrade(self.engine)
            return
        raise ConfigError(
            f"the database is at revision {current} and this Signoff expects {head}: "
            "run `signoff db upgrade` (after a backup)"
        )

    async def start(self, *, workers: bool = True) -> None:
        await self.prepare_database()
        self.store.start()
        self.writer.start()
        try:
            for surface in self.surfaces:
                await surface.start(self.service)
        except BaseException:
            await self.stop()  # what started so far, so that nothing is left running
            raise
        if workers:
            self.outbox.start()
            self.sla.start()
        if self.notifier is not None:
            self.notifier.start()
        self.started = True

    async def stop(self) -> None:
        if self.notifier is not None:
            await self.notifier.stop()
        self.waiters.wake_all()  # long-polls answer now rather than hold the shutdown
        await self.sla.stop()
        await self.writer.stop()
        await self.outbox.stop()
        for surface in self.surfaces:
            await surface.stop()  # after the outbox: its last deliveries use the clients
        await self.store.close()
        self.started = False


def _asyncpg_dsn(url: str) -> str:
    """The database URL as asyncpg's own `connect` takes it (no `+driver`)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)
