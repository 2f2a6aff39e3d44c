"""A Signoff connected to the Slack-compatible test server, and a reviewer's hands:
clicks and modal submissions sent to `/slack/events` as Slack sends them (real-shaped
payloads from `fixtures/slack/`, form-encoded, signed with the signing secret)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from bot.config import Settings
from bot.protocols import Clock
from bot.runtime import Runtime
from tests.conftest import SECRET, Api, http_server
from tests.slack_api import Message, SlackApi, slack_api

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures" / "slack"
SLACK_POLICY = HERE / "policies" / "slack.yaml"
SIGNING_SECRET = "test-slack-signing-secret"
BOT_TOKEN = "xoxb-test-token"

USERS = {
    "U0ALICE": {"name": "alice", "email": "alice@example.com"},
    "U0BOB": {"name": "bob", "email": "bob@example.com"},
    "U0CAROL": {"name": "carol", "email": "carol@example.com"},
    "U0DANA": {"name": "dana", "email": "Dana@Example.com"},
    "U0EVE": {"name": "eve", "email": "eve@example.com"},
    "U0OPS1": {"name": "ops1", "email": "ops1@example.com"},
    "U0OPS2": {"name": "ops2", "email": "ops2@example.com"},
    "U0OPS3": {"name": "ops3", "email": "ops3@example.com"},
}
GROUPS = {
    "S0REVIEWERS": ["U0CAROL", "U0DANA"],
    "S0EXPERTS": ["U0EVE"],
    "S0ONCALL": ["U0OPS1", "U0OPS2", "U0OPS3"],
}


def fixture(name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return found


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def slack_settings(url: str, api_url: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "policy": str(SLACK_POLICY),
        "webhook_secret": SECRET,
        "slack_bot_token": BOT_TOKEN,
        "slack_signing_secret": SIGNING_SECRET,
        "slack_api_url": api_url,
        "outbox_poll_interval": 0.2,
        "outbox_max_backoff": 0.5,
    }
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class Reviewers:
    """Reviewers' hands: clicks on cards and modal submissions, signed as Slack signs."""

    def __init__(self, client: httpx.AsyncClient, slack: SlackApi, secret: str) -> None:
        self.client = client
        self.slack = slack
        self.secret = secret
        self._triggers = 0

    async def send(
        self, payload: dict[str, Any], *, at: int | None = None, secret: str | None = None
    ) -> httpx.Response:
        body = ("payload=" + quote(json.dumps(payload))).encode()
        stamp = str(int(time.time()) if at is None else at)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": slack_signature(secret or self.secret, stamp, body),
        }
        return await self.client.post("/slack/events", content=body, headers=headers)

    def card(self, case_id: str) -> Message:
        """The card (top-level message) of a case, found by its buttons or its case line."""
        for messages in self.slack.messages.values():
            for message in messages:
                if (
                    message.thread_ts is None
                    and message.user is None
                    and case_id in json.dumps(message.blocks)
                ):
                    return message
        raise AssertionError(f"no card for case {case_id}")

    def click_payload(self, message: Message, action: str, user: str) -> dict[str, Any]:
        payload = fixture("block_actions.json")
        self._triggers += 1
        trigger = f"{self._triggers}.{int(time.time())}.trigger"
        button = next(
            (
                element
                for block in message.blocks or []
                if block.get("type") == "actions"
                for element in block["elements"]
                if element.get("action_id") == f"signoff_{action}"
            ),
            None,
        )
        assert button is not None, f"the card has no {action} button: {message.blocks}"
        payload["user"] = {"id": user, "username": USERS.get(user, {}).get("name", user)}
        payload["trigger_id"] = trigger
        payload["container"].update(channel_id=message.channel, message_ts=message.ts)
        payload["channel"] = {"id": message.channel}
        payload["message"].update(ts=message.ts, text=message.text, blocks=message.blocks)
        payload["response_url"] = "http://127.0.0.1:9/unused"
        payload["actions"] = [
            {
                "action_id": button["action_id"],
                "block_id": "signoff_actions",
                "text": button["text"],
                "value": button["value"],
                "style": button.get("style"),
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ]
        return payload

    async def click(self, message: Message, action: str, user: str) -> httpx.Response:
        return await self.send(self.click_payload(message, action, user))

    def opened_view(self, trigger: str | None = None) -> dict[str, Any]:
        """The last modal the bot opened (for `trigger`, if given), with its Slack id."""
        calls = [
            c
            for c in self.slack.of("views.open")
            if trigger is None or c.params.get("trigger_id") == trigger
        ]
        assert calls, "the bot opened no modal"
        call = calls[-1]
        view = dict(call.params["view"])
        view["id"] = call.response.get("view", {}).get("id", "V0")
        return view

    def submission(
        self,
        view: dict[str, Any],
        user: str,
        *,
        code: str | None = None,
        reason: str | None = None,
        question: str | None = None,
    ) -> dict[str, Any]:
        payload = fixture("view_submission.json")
        payload["user"] = {"id": user, "username": USERS.get(user, {}).get("name", user)}
        submitted = copy.deepcopy(payload["view"])
        submitted.update(
            id=view["id"],
            blocks=view["blocks"],
            callback_id=view["callback_id"],
            private_metadata=view["private_metadata"],
            title=view["title"],
        )
        values: dict[str, Any] = {}
        if code is not None or view["callback_id"] == "signoff_decide":
            values["reason_code"] = {
                "code": {
                    "type": "static_select",
                    "selected_option": (
                        {"text": {"type": "plain_text", "text": code}, "value": code}
                        if code
                        else None
                    ),
                }
            }
            values["reason"] = {"text": {"type": "plain_text_input", "value": reason}}
        if question is not None or view["callback_id"] == "signoff_info":
            values["question"] = {"text": {"type": "plain_text_input", "value": question}}
        submitted["state"] = {"values": values}
        payload["view"] = submitted
        return payload

    async def submit(self, view: dict[str, Any], user: str, **fields: Any) -> httpx.Response:
        return await self.send(self.submission(view, user, **fields))

    async def decide(
        self, message: Message, action: str, user: str, code: str, reason: str | None = None
    ) -> httpx.Response:
        """Click, wait for the modal, fill it in, submit."""
        before = len(self.slack.of("views.open"))
        clicked = await self.click(message, action, user)
        assert clicked.status_code == 200, clicked.text
        await self.slack.wait_for(lambda s: len(s.of("views.open")) > before)
        return await self.submit(self.opened_view(), user, code=code, reason=reason)


class SlackWorld:
    """Signoff serving HTTP with Slack connected to the test server."""

    def __init__(self, runtime: Runtime, api: Api, slack: SlackApi, reviewers: Reviewers) -> None:
        self.runtime = runtime
        self.api = api
        self.slack = slack
        self.reviewers = reviewers

    async def card_for(self, case_id: str) -> Message:
        await self.slack.wait_for(lambda s: _has_card(self.reviewers, case_id))
        return self.reviewers.card(case_id)


def _has_card(reviewers: Reviewers, case_id: str) -> bool:
    try:
        reviewers.card(case_id)
    except AssertionError:
        return False
    return True


@asynccontextmanager
async def slack_world(
    database_url: str, clock: Clock | None = None, **extra: Any
) -> AsyncIterator[SlackWorld]:
    async with slack_api(users=USERS, groups=GROUPS) as slack:
        runtime = Runtime(slack_settings(database_url, slack.url, **extra), clock=clock)
        await runtime.start()
        try:
            async with (
                http_server(runtime) as base,
                httpx.AsyncClient(base_url=base, timeout=30) as client,
            ):
                yield SlackWorld(
                    runtime,
                    Api(client, runtime),
                    slack,
                    Reviewers(client, slack, SIGNING_SECRET),
                )
        finally:
            await runtime.stop()
