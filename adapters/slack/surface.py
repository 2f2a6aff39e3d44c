"""Slack, assembled: the adapter the outbox delivers through, the Bolt app that takes
reviewers' clicks (HTTP at `POST /slack/events`, or Socket Mode with an app token), and
the two Web API clients they use.

Deliveries go through a client with slack_sdk's retry handlers (a 429 waits its
`Retry-After` once, a 5xx is tried again), after which the outbox's own backoff takes
over. Clicks use a client that fails fast instead: a modal must open within the 3
seconds a `trigger_id` lives.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

import aiohttp
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adapters.lifecycle import end
from adapters.slack.adapter import SlackAdapter
from adapters.slack.interactions import Interactions
from bot.errors import ConfigError
from bot.protocols import Endpoint

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.service import Service

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


class SlackSurface(SlackAdapter):
    def __init__(
        self,
        token: str,
        *,
        signing_secret: str | None,
        app_token: str | None = None,
        api_url: str = "https://slack.com/api/",
        cache_ttl: float = 60.0,
    ) -> None:
        if not signing_secret and not app_token:
            raise ConfigError(
                "Slack needs SIGNOFF_SLACK_SIGNING_SECRET (clicks over HTTP at /slack/events) "
                "or SIGNOFF_SLACK_APP_TOKEN (Socket Mode) besides SIGNOFF_SLACK_BOT_TOKEN"
            )
        deliveries = AsyncWebClient(
            token=token,
            base_url=api_url,
            retry_handlers=[
                AsyncConnectionErrorRetryHandler(max_retry_count=1),
                AsyncRateLimitErrorRetryHandler(max_retry_count=1),
                AsyncServerErrorRetryHandler(max_retry_count=2),
            ],
        )
        super().__init__(deliveries, cache_ttl=cache_ttl)
        self.quick = AsyncWebClient(token=token, base_url=api_url, timeout=2, retry_handlers=[])
        self.app_token = app_token
        self.app = AsyncApp(
            client=self.quick,
            signing_secret=signing_secret or "",
            request_verification_enabled=bool(signing_secret),
            raise_error_for_unhandled_request=False,
            process_before_response=True,  # see interactions.py
        )
        self.interactions = Interactions(self.quick)
        self.interactions.register(self.app)
        self._http = AsyncSlackRequestHandler(self.app) if signing_secret else None
        self._verifier = SignatureVerifier(signing_secret) if signing_secret else None
        self._socket: AsyncSocketModeHandler | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._sessions: list[aiohttp.ClientSession] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackSurface:
        assert settings.slack_bot_token is not None
        secret = settings.slack_signing_secret
        app_token = settings.slack_app_token
        return cls(
            settings.slack_bot_token.get_secret_value(),
            signing_secret=secret.get_secret_value() if secret else None,
            app_token=app_token.get_secret_value() if app_token else None,
            api_url=settings.slack_api_url,
        )

    def routes(self) -> Mapping[str, Endpoint]:
        return {EVENTS_PATH: self._events} if self._http is not None else {}

    async def _events(self, request: Request) -> Response:
        if self._http is None or not self.interactions.bound:
            return JSONResponse({"error": "starting", "message": "Signoff is starting"}, 503)
        body = await request.body()
        try:
            if self._is_click(body, request):
                # A click's answer is an empty 200 whatever follows, so it goes at once
                # and Bolt handles the click after it (verifying it again, as it does
                # every request).
                self.interactions.later(self._http.handle(request))
                return Response(status_code=200)
            return await self._http.handle(request)
        except ValueError:  # not UTF-8, or a form Bolt cannot parse (Slack sends neither)
            log.warning("Slack: a request to %s could not be parsed", EVENTS_PATH)
            return JSONResponse(
                {"error": "bad_request", "message": "not a Slack interaction payload"}, 400
            )

    def _is_click(self, body: bytes, request: Request) -> bool:
        """A correctly signed `block_actions` payload (checked with slack_sdk's verifier,
        the one Bolt's own middleware uses). Anything else goes to Bolt as it is."""
        assert self._verifier is not None
        stamp = request.headers.get("x-slack-request-timestamp", "")
        signature = request.headers.get("x-slack-signature", "")
        if not stamp.isdigit() or not signature:
            return False
        valid = self._verifier.is_valid(body=body, timestamp=stamp, signature=signature)
        if not valid or not body.startswith(b"payload="):
            return False
        try:
            payload = json.loads(unquote_plus(body[len(b"payload=") :].decode()))
        except (UnicodeDecodeError, ValueError):
            return False
        return isinstance(payload, dict) and payload.get("type") == "block_actions"

    async def start(self, service: Service) -> None:
        for client in (self.client, self.quick):
            # One connection pool per client for the life of the process, instead of
            # slack_sdk's default of a new session per call.
            session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=client.timeout))
            client.session = session
            self._sessions.append(session)
        self.interactions.bind(service)
        if self.app_token:
            await self._check_app_token(self.app_token)
            self._socket = AsyncSocketModeHandler(self.app, self.app_token, web_client=self.quick)
            # slack_sdk's client retries for as long as Slack is unreachable: connect in
            # the background, so a Slack outage does not hold up the start.
            self._connecting = asyncio.create_task(self._socket.connect_async())  # type: ignore[no-untyped-call]
            log.info("Slack: connecting Socket Mode")
        else:
            log.info("Slack: taking interactivity at %s", EVENTS_PATH)

    async def _check_app_token(self, app_token: str) -> None:
        """Fail the start on an app token Slack refuses; only warn when Slack is away."""
        try:
            await self.quick.apps_connections_open(app_token=app_token)
        except SlackApiError as exc:
            status = exc.response.status_code
            if status == 429 or status >= 500:
                log.warning("Slack: apps.connections.open answered HTTP %s; retrying", status)
                return
            error = exc.response.get("error", f"HTTP {status}")
            raise ConfigError(
                f"Slack refused SIGNOFF_SLACK_APP_TOKEN ({error}): it must be an app-level "
                "token (xapp-...) with the connections:write scope"
            ) from exc
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("Slack: cannot reach Slack yet (%s); Socket Mode keeps trying", exc)

    async def stop(self) -> None:
        await end(self._connecting)
        self._connecting = None
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[no-untyped-call]
            self._socket = None
        await self.interactions.drain()
        self.interactions.unbind()
        for session in self._sessions:
            await session.close()
        self._sessions.clear()
        self.client.session = None
        self.quick.session = None
