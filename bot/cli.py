"""The `signoff` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click
import httpx
import yaml
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsError

from bot import __version__, signing
from bot.config import SECRET_FILE, Settings
from bot.errors import ConfigError, PolicyError, SignoffError
from bot.policy import explain, load_policy, route
from bot.validation import dotted
from bot.validation import explain as explain_error

log = logging.getLogger("signoff")


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"signoff: {message}", err=True)
    sys.exit(code)


def load_settings() -> Settings:
    try:
        return Settings()
    except SettingsError as exc:  # a value pydantic-settings could not even parse as JSON
        found = re.search(r'field "(\w+)"', str(exc))
        name = f"SIGNOFF_{found.group(1).upper()}" if found else "a setting"
        fail(f"bad settings: {name} is not valid JSON", 2)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            # never quote a value back: a setting may be a secret
            loc, message = explain_error(error, Settings, quote=False)
            name = "__".join(str(p) for p in loc).upper()
            problems.append(f"SIGNOFF_{name}: {message}")
        fail(f"bad settings: {'; '.join(problems)}", 2)


def read_secret_file() -> str | None:
    path = Path(SECRET_FILE)
    if path.is_file():
        value = path.read_text().strip()
        return value or None
    return None


def ensure_webhook_secret(settings: Settings) -> tuple[Settings, bool]:
    """The default source's secret: from the settings, else the kept file, else a new one."""
    if settings.webhook_secret is not None and settings.webhook_secret.get_secret_value():
        return settings, False  # (set but empty, as `SIGNOFF_WEBHOOK_SECRET=` is, counts as unset)
    kept = read_secret_file()
    created = kept is None
    if kept is None:
        kept = secrets.token_urlsafe(32)
        try:
            fd = os.open(SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # there, but empty (or made a moment ago by another start)
            fail(f"./{SECRET_FILE} holds no secret: delete it, or set SIGNOFF_WEBHOOK_SECRET", 2)
        with os.fdopen(fd, "w") as handle:
            handle.write(kept + "\n")
    return settings.model_copy(update={"webhook_secret": SecretStr(kept)}), created


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="signoff")
def main() -> None:
    """Signoff: human sign-off for AI workflows, in Slack and Discord.

    Errors go to stderr. Exit status: 0 done; 1 what you gave (a policy, a case, a
    request) was checked and refused; 2 cannot run as asked (options, settings, a file
    that cannot be read); 3 the server cannot be reached."""


@main.command()
@click.option("--host", help="Address to listen on (default SIGNOFF_HOST or 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default SIGNOFF_PORT or 8080).")
@click.option(
    "--workers",
    type=click.IntRange(1, 16),
    help="Server processes sharing the port (default SIGNOFF_WORKERS or 1).",
)
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the server: the HTTP API, the outbox worker, and the connected platforms."""
    import uvicorn

    from bot.api.app import create_app
    from bot.runtime import Runtime, configure_logging

    settings = load_settings()
    configure_logging(settings.log_level)
    settings, created = ensure_webhook_secret(settings)
    host = host or settings.host
    port = settings.port if port is None else port
    settings = settings.model_copy(update={"host": host, "port": port})
    try:
        runtime = Runtime(settings)
    except SignoffError as exc:
        fail(exc.message, 2)
    url = f"http://{host}:{port}"
    if created:
        click.echo(
            "\nNo SIGNOFF_WEBHOOK_SECRET was set, so Signoff made one and keeps it in "
            f"{Path(SECRET_FILE).resolve()}\n(mode 0600). Workflows sign their requests with it. "
            "Try:\n\n"
            f"    signoff send --url {url} examples/refund.json\n",
            err=True,
        )
    platforms = ", ".join(sorted(runtime.platforms - {"web"})) or "none (cards go to the log)"
    if "web" in runtime.adapters:
        platforms += f"  web inbox: {settings.base_url()}/inbox/"
    click.echo(
        f"signoff {__version__}: {url}  policy {runtime.policy.path} ({runtime.policy.version})  "
        f"database {_redact(settings.database_url)}  platforms: {platforms}",
        err=True,
    )
    workers = settings.workers if workers is None else workers
    if workers > 1:
        if runtime.store.is_sqlite:
            fail(
                "--workers above 1 needs PostgreSQL: SQLite has one writer, and several "
                "processes would queue behind each other (set SIGNOFF_DATABASE_URL)",
                2,
            )
        serve_workers(runtime, settings, host, port, workers)
        return
    app = create_app(runtime)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        access_log=False,
        loop="auto",
        http="auto",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    try:
        server.run()  # a failed start ends in SystemExit (uvicorn's code 3)
    except ConfigError as exc:
        fail(exc.message, 2)
    except SystemExit:
        refused = getattr(app, "startup_error", None)
        if refused is not None:  # a setting a platform refused: said once, plainly
            fail(refused.message, 2)
        raise
    if not server.started:
        sys.exit(1)


def serve_workers(runtime: Any, settings: Settings, host: str, port: int, workers: int) -> None:
    """Several server processes on one port. The schema is brought up to date here,
    once, before they start; each builds its own runtime from the same settings."""
    import uvicorn

    try:
        asyncio.run(_prepare_once(runtime))
    except SignoffError as exc:
        fail(exc.message, 2)
    if settings.webhook_secret is not None:
        # the workers read their settings afresh; hand them the secret kept on disk
        os.environ["SIGNOFF_WEBHOOK_SECRET"] = settings.webhook_secret.get_secret_value()
    uvicorn.run(
        "bot.api.app:app_from_settings",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="on",
    )


async def _prepare_once(runtime: Any) -> None:
    try:
        await runtime.prepare_database()
    finally:
        await runtime.store.close()


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable URL)"


@main.command()
@click.argument("case_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--url", help="Signoff's base URL (default http://SIGNOFF_HOST:SIGNOFF_PORT).")
@click.option("--source", default="default", show_default=True, help="Source to sign as.")
@click.option("--idempotency-key", help="Send this Idempotency-Key (resend safely).")
def send(case_file: Path, url: str | None, source: str, idempotency_key: str | None) -> None:
    """Sign CASE_FILE with the source's secret and submit it."""
    settings = load_settings()
    try:
        body = case_file.read_bytes()
    except OSError as exc:
        fail(f"{case_file}: {exc.strerror}", 2)
    try:
        json.loads(body)
    except ValueError as exc:
        fail(f"{case_file}: not JSON: {exc}", 1)
    configured = settings.all_sources().get(source)
    secret = configured.secret.get_secret_value() if configured and configured.secret else None
    if secret is None and source == "default":
        secret = read_secret_file()
    if secret is None:
        fail(
            f"no secret for source {source!r}: set SIGNOFF_WEBHOOK_SECRET (or "
            f"SIGNOFF_SOURCES__{source.upper()}__SECRET), or run from the directory where "
            f"`signoff serve` keeps {SECRET_FILE}",
            2,
        )
    base = (url or f"http://{settings.host}:{settings.port}").rstrip("/")
    endpoint = f"{base}/v1/escalations"
    stamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        signing.HEADER: signing.sign(secret, "POST", signing.url_target(endpoint), body, stamp),
        "X-Signoff-Source": source,
    }
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    try:
        response = httpx.post(endpoint, content=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        fail(f"cannot reach {base}: {exc}", 3)
    click.echo(json.dumps(_json(response), indent=2))
    if response.status_code >= 400:
        fail(f"HTTP {response.status_code}: {_json(response).get('message', response.text)}", 1)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {"message": response.text}
    return value if isinstance(value, dict) else {"value": value}


@main.group()
def policy() -> None:
    """Check a policy file, or see how it routes a case."""


@policy.command("check")
@click.argument("policy_file", type=click.Path(dir_okay=False, path_type=Path))
def policy_check(policy_file: Path) -> None:
    """Check POLICY_FILE; errors name the line and the field."""
    try:
        loaded = load_policy(policy_file)
    except PolicyError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        sys.exit(1)
    p = loaded.policy
    click.echo(
        f"{policy_file}: ok (version {loaded.version}): lanes {', '.join(p.lanes)}; "
        f"{len(p.rules)} rules; reason codes for {len(p.kinds)} kinds"
    )


@policy.command("explain")
@click.argument("case_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Policy file (default SIGNOFF_POLICY, else the shipped one).",
)
def policy_explain(case_file: Path, policy_file: Path | None) -> None:
    """Say which lane CASE_FILE goes to, the rule that matched, and why the others did not."""
    from bot.schemas import CaseIn

    settings = load_settings()
    try:
        loaded = load_policy(policy_file or settings.policy)
    except PolicyError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        sys.exit(1)
    try:
        case = CaseIn.model_validate_json(case_file.read_bytes())
    except OSError as exc:
        fail(f"{case_file}: {exc.strerror}", 2)
    except ValidationError as exc:
        for error in exc.errors():
            if error["type"] == "json_invalid":
                click.echo(f"{case_file}: not JSON: {error.get('ctx', {}).get('error')}", err=True)
                continue
            loc, message = explain_error(error, CaseIn)
            click.echo(f"{case_file}: {dotted(loc) or '(case)'}: {message}", err=True)
        sys.exit(1)
    routing = route(loaded, case)
    click.echo(f"lane: {routing.lane}")
    click.echo(
        f"rule: {routing.rule_label} (rule {routing.rule_index + 1} of {len(loaded.policy.rules)})"
    )
    for verdict in explain(loaded, case):
        mark = "MATCH" if verdict.matched else "no   "
        click.echo(f"  {mark} {verdict.label} -> {verdict.lane}: {'; '.join(verdict.reasons)}")


@main.group()
def slack() -> None:
    """Set up the Slack app."""


@slack.command("manifest")
@click.option("--url", help="Signoff's public base URL; clicks go to URL/slack/events.")
@click.option("--socket-mode", is_flag=True, help="Take clicks over Socket Mode (no public URL).")
@click.option("--name", default="Signoff", show_default=True, help="The app's name in Slack.")
@click.option(
    "--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True
)
def slack_manifest(url: str | None, socket_mode: bool, name: str, fmt: str) -> None:
    """Print the Slack app manifest (paste it at api.slack.com/apps, "From a manifest")."""
    from adapters.slack.manifest import manifest

    try:
        found = manifest(url, socket_mode=socket_mode, name=name)
    except ValueError as exc:
        fail(str(exc), 2)
    if fmt == "json":
        click.echo(json.dumps(found, indent=2))
    else:
        click.echo(yaml.safe_dump(found, sort_keys=False), nl=False)


@main.group()
def discord() -> None:
    """Set up the Discord bot."""


@discord.command("invite-url")
@click.option(
    "--client-id",
    help="The application's ID (Developer Portal, General Information); "
    "read from SIGNOFF_DISCORD_BOT_TOKEN when not given.",
)
@click.option("--guild-id", help="Preselect this server in Discord's dialog.")
def discord_invite_url(client_id: str | None, guild_id: str | None) -> None:
    """Print the URL that adds the bot to a server, with exactly the permissions it uses."""
    from adapters.discord.invite import client_id_from_token, invite_url

    if client_id is None:
        token = load_settings().discord_bot_token
        client_id = client_id_from_token(token.get_secret_value()) if token else None
        if client_id is None:
            why = "is not a bot token" if token else "is not set"
            fail(f"give --client-id: SIGNOFF_DISCORD_BOT_TOKEN {why}", 2)
    try:
        click.echo(invite_url(client_id, guild_id=guild_id))
    except ValueError as exc:
        fail(str(exc), 2)


@main.group()
def report() -> None:
    """Reports for managers."""


@report.command("weekly")
@click.option("--week", help="An ISO week, e.g. 2026-W47 (default: the last complete week).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "html"]),
    default="table",
    show_default=True,
)
@click.option("--output", type=click.Path(dir_okay=False, writable=True), help="Write here.")
def report_weekly(week: str | None, fmt: str, output: str | None) -> None:
    """The weekly summary: override rates, flags, calibration (as the Monday post)."""
    from rich.console import Console

    from bot.analytics import render
    from bot.analytics.report import Week, schedule_zone, weekly
    from bot.clock import SystemClock
    from bot.store import db as store

    settings = load_settings()
    try:
        policy = load_policy(settings.policy)
    except PolicyError as exc:
        fail("\n".join(exc.problems), 2)
    zone = schedule_zone(policy)
    now = SystemClock().now()
    try:
        chosen = Week.parse(week, zone) if week else Week.last_complete(now, zone)
    except ValueError as exc:
        fail(str(exc), 2)

    async def build() -> Any:
        engine = store.create_engine(settings.database_url)
        try:
            current, head = await store.revision_state(engine)
            if current != head:
                raise ConfigError(
                    f"the database at {_redact(settings.database_url)} is at revision "
                    f"{current or 'none'}, not {head}: run `signoff db upgrade`"
                )
            return await weekly(engine, policy, chosen, now)
        finally:
            await engine.dispose()

    try:
        found = asyncio.run(build())
    except SignoffError as exc:
        fail(exc.message, 2)
    except Exception as exc:
        fail(f"cannot read {_redact(settings.database_url)}: {type(exc).__name__}: {exc}", 1)
    if fmt == "json":
        text = json.dumps(found.as_dict(), indent=2) + "\n"
    elif fmt == "html":
        text = render.page(found, render.charts(found))
    else:
        text = ""
    if output is not None:
        try:
            with open(output, "w", encoding="utf-8") as out:
                if fmt == "table":
                    render.print_tables(found, Console(file=out, width=120, color_system=None))
                else:
                    out.write(text)
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror or exc}", 2)
        click.echo(f"wrote the {found.week} report to {output}", err=True)
    elif fmt == "table":
        render.print_tables(found, Console())
    else:
        click.echo(text, nl=False)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the database's schema up to date (SIGNOFF_DATABASE_URL)."""
    from bot.store import db as store

    settings = load_settings()

    async def run() -> tuple[str | None, str | None]:
        engine = store.create_engine(settings.database_url)
        try:
            before, head = await store.revision_state(engine)
            await store.upgrade(engine)
            return before, head
        finally:
            await engine.dispose()

    try:
        before, head = asyncio.run(run())
    except SignoffError as exc:
        fail(exc.message, 2)
    except Exception as exc:
        fail(f"cannot upgrade {_redact(settings.database_url)}: {type(exc).__name__}: {exc}", 1)
    if before == head:
        click.echo(f"database is up to date (revision {head})")
    else:
        click.echo(f"database upgraded from {before or 'empty'} to {head}")


@main.group()
def web() -> None:
    """The web inbox at /inbox/."""


@web.command("login-link")
@click.argument("email")
def web_login_link(email: str) -> None:
    """Print a one-time sign-in link for EMAIL (good for 15 minutes, once)."""
    from adapters.web.sessions import Sessions, normal_email
    from bot.clock import SystemClock
    from bot.policy import load_policy
    from bot.store import db as store

    settings = load_settings()
    try:
        address = normal_email(email)
    except ValueError as exc:
        fail(str(exc), 2)
    try:
        policy = load_policy(settings.policy)
    except SignoffError as exc:
        fail(exc.message, 2)

    async def run() -> str:
        engine = store.create_engine(settings.database_url)
        kept = store.Store(engine)
        try:
            current, head = await store.revision_state(engine)
            if current is None:
                await store.upgrade(engine)
            elif current != head:
                raise ConfigError(
                    f"the database is at revision {current} and this Signoff expects {head}: "
                    "run `signoff db upgrade` (after a backup)"
                )
            kept.start()
            return await Sessions(kept, settings.web_session_hours).new_link(
                address, SystemClock().now()
            )
        finally:
            await kept.close()

    try:
        token = asyncio.run(run())
    except SignoffError as exc:
        fail(exc.message, 2)
    except Exception as exc:
        fail(f"cannot reach {_redact(settings.database_url)}: {type(exc).__name__}: {exc}", 1)
    groups = policy.policy.groups
    deciders = set()
    for lane in policy.policy.lanes.values():
        for entry in lane.approver_entries("web"):
            deciders.update(groups.get(entry[6:], []) if entry.startswith("group:") else [entry])
    click.echo(f"{settings.base_url()}/inbox/login?token={token}")
    click.echo(f"for {address}: good for 15 minutes, once", err=True)
    if address not in deciders:
        click.echo(
            f"note: {address} is no web approver of any lane in {policy.path}: they can "
            "sign in and read cases, but decide none (add them to a lane's `web:` "
            "approvers or a group)",
            err=True,
        )


def _register_export() -> None:
    from bot.analytics.export import export_group

    main.add_command(export_group)


_register_export()
