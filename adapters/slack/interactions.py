"""Reviewers' clicks and modal submissions, on a Bolt `AsyncApp`.

Slack wants every interaction acknowledged within 3 seconds, and a `trigger_id` is
good for 3 seconds too. So a click is acknowledged first, then checked (is the case
open, may this person act on it: the answers are cached lookups), then answered with
a modal, or with an ephemeral message saying why not. Bolt runs with
`process_before_response`, so the HTTP answer leaves when a listener returns (not
when Bolt next polls for the ack); a click's follow-up runs as a task after it.
A modal submission is the
decision itself: the decision service decides before the HTTP answer, so a missing
reason comes back as `response_action: errors` next to the field that needs it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.lifecycle import Bound
from adapters.slack import blocks
from bot.errors import AlreadyDecided, DecisionRefused, NotFound
from bot.protocols import Reviewer

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

CLICK = re.compile(
    r"^signoff_(approve|reject|modify|request_info|acknowledge|claim|release|full_context"
    r"|page_previous|page_next)$"
)
FIELD_OF = {
    "reason_code_required": blocks.CODE_BLOCK,
    "unknown_reason_code": blocks.CODE_BLOCK,
    "reason_required": blocks.REASON_BLOCK,
    "reason_too_long": blocks.REASON_BLOCK,
    "question_required": blocks.QUESTION_BLOCK,
}
#: the service's refusals of an edit's arguments: shown on the form's first argument
ARG_REFUSALS = (
    "args_required",
    "args_unchanged",
    "args_not_editable",
    "unknown_args",
    "args_too_large",
    "args_not_json",
)


def reviewer_of(body: dict[str, Any]) -> Reviewer:
    user = body.get("user") or {}
    name = user.get("username") or user.get("name")
    return Reviewer("slack", str(user.get("id", "")), str(name) if name else None)


def where(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """The channel and message a click came from."""
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
    return channel, ts


def submitted(view: dict[str, Any], block: str, action: str) -> str | None:
    value = ((view.get("state") or {}).get("values") or {}).get(block, {}).get(action) or {}
    if value.get("type") == "static_select":
        option = value.get("selected_option") or {}
        return option.get("value")
    text = value.get("value")
    return str(text) if text is not None else None


def refusal_view(exc: DecisionRefused, field: str | None) -> dict[str, Any]:
    """The HTTP answer to a submission the service refused."""
    if field is not None:
        return {"response_action": "errors", "errors": {field: exc.message}}
    return {"response_action": "update", "view": blocks.message_modal("Not recorded", exc.message)}


class Interactions(Bound):
    """The Bolt listeners, bound to the decision service."""

    def __init__(self, client: AsyncWebClient) -> None:
        super().__init__()
        self.client = client

    def register(self, app: AsyncApp) -> None:
        app.action(CLICK)(self.on_click)
        app.view(blocks.DECIDE_VIEW)(self.on_decide)
        app.view(blocks.INFO_VIEW)(self.on_info)
        app.view(blocks.EDIT_VIEW)(self.on_edit)

    async def _tell(self, body: dict[str, Any], text: str) -> None:
        """An ephemeral message to the person who clicked (`text` is escaped)."""
        await self._say(body, blocks.fit(text, 3000)[0])

    async def _say(self, body: dict[str, Any], mrkdwn: str) -> None:
        channel, _ = where(body)
        user = reviewer_of(body).user_id
        try:
            if channel:
                await self.client.chat_postEphemeral(channel=channel, user=user, text=mrkdwn)
        except SlackClientError:
            log.warning("could not tell %s in %s: %s", user, channel, mrkdwn)

    async def on_click(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()  # first, always: Slack gives 3 seconds
        # The HTTP answer goes as soon as this returns; the rest runs after it.
        self.later(self._after_click(body, action))

    def later(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` after the HTTP answer, keeping hold of it until it is done."""
        self.hold(asyncio.create_task(work))

    async def _after_click(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        match = CLICK.match(str(action.get("action_id", "")))
        verb = match.group(1) if match else ""
        case_id = str(action.get("value", ""))
        reviewer = reviewer_of(body)
        channel, ts = where(body)
        trigger = str(body.get("trigger_id", ""))
        try:
            if verb == "full_context":
                card = await self.service.card(case_id)
                await self.client.views_open(
                    trigger_id=trigger, view=blocks.full_context_modal(card)
                )
                return
            if verb in ("page_previous", "page_next"):
                await self._turn_page(body, case_id)
                return
            if verb == "acknowledge":
                await self.service.acknowledge(case_id, reviewer)
                return
            if verb in ("claim", "release"):
                change = self.service.claim if verb == "claim" else self.service.release
                await change(case_id, reviewer)
                return
            card = await self.service.precheck(case_id, reviewer, verb)
            meta = blocks.metadata(case_id, verb, channel, ts)
            if verb == "modify":
                edit = blocks.edit_modal(card, meta)
                if edit is None:
                    await self._tell(
                        body,
                        "This proposal is too large to edit in a Slack form: edit it in "
                        f"the web inbox, at /inbox/cases/{case_id}.",
                    )
                    return
                view = edit
            elif verb == "request_info":
                view = blocks.info_modal(card, meta)
            else:
                view = blocks.decision_modal(card, verb, meta)
            await self.client.views_open(trigger_id=trigger, view=view)
        except AlreadyDecided as exc:
            by = f" by {blocks.who(exc.winner)}" if exc.winner else ""
            await self._say(body, f"This case was already {exc.case_status}{by}.")
        except DecisionRefused as exc:
            await self._tell(body, exc.message)
        except NotFound:
            await self._tell(body, "Signoff has no such case any more.")
        except SlackClientError as exc:
            log.warning("click on %s by %s: Slack refused the modal: %s", case_id, reviewer, exc)
            await self._tell(body, "Slack did not open the form in time; click again.")
        except Exception:  # a bug here must not go unseen: the click already got its 200
            log.exception("click on %s by %s failed", case_id, reviewer)
            await self._tell(body, "Signoff could not handle that click; try again.")

    async def _turn_page(self, body: dict[str, Any], value: str) -> None:
        """Another page of the full context, in the modal the click came from (the view's
        hash makes Slack refuse the update if the modal changed meanwhile)."""
        case_id, page = blocks.parse_page(value)
        view = body.get("view") or {}
        card = await self.service.card(case_id)
        await self.client.views_update(
            view_id=str(view.get("id", "")),
            hash=view.get("hash"),
            view=blocks.full_context_modal(card, page),
        )

    async def on_decide(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        meta = _metadata(view)
        reason = submitted(view, blocks.REASON_BLOCK, blocks.REASON_ACTION)
        if reason is not None and len(reason) > blocks.REASON_MAX:
            await ack(**_too_long(blocks.REASON_BLOCK, "reasoning"))
            return
        await _answer(
            ack,
            self.service.decide(
                str(meta.get("case", "")),
                reviewer_of(body),
                str(meta.get("action", "")),
                submitted(view, blocks.CODE_BLOCK, blocks.CODE_ACTION),
                reason,
            ),
        )

    async def on_edit(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        """Approve with changes: each argument's field must hold JSON; the service
        checks the arguments against the proposal and writes nothing if it refuses."""
        meta = _metadata(view)
        reason = submitted(view, blocks.REASON_BLOCK, blocks.REASON_ACTION)
        if reason is not None and len(reason) > blocks.REASON_MAX:
            await ack(**_too_long(blocks.REASON_BLOCK, "reasoning"))
            return
        values = (view.get("state") or {}).get("values") or {}
        edits: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for block, fields in values.items():
            if not str(block).startswith(blocks.ARG_BLOCK_PREFIX):
                continue
            name = str(block).removeprefix(blocks.ARG_BLOCK_PREFIX)
            text = str((fields.get(blocks.ARG_ACTION) or {}).get("value") or "")
            try:
                edits[name] = json.loads(text)
            except ValueError:
                errors[block] = (
                    'This is not JSON: put text in double quotes ("like this"); '
                    "numbers, true, false and null as they are."
                )
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        first = next(iter(edits), None)
        fields = dict(FIELD_OF)
        if first is not None:  # keep the form (and what was typed) open, the error on it
            fields |= dict.fromkeys(ARG_REFUSALS, blocks.ARG_BLOCK_PREFIX + first)
        await _answer(
            ack,
            self.service.decide(
                str(meta.get("case", "")),
                reviewer_of(body),
                "modify",
                submitted(view, blocks.CODE_BLOCK, blocks.CODE_ACTION),
                reason,
                args=edits,
            ),
            fields,
        )

    async def on_info(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        meta = _metadata(view)
        question = submitted(view, blocks.QUESTION_BLOCK, blocks.QUESTION_ACTION) or ""
        if len(question) > blocks.REASON_MAX:
            await ack(**_too_long(blocks.QUESTION_BLOCK, "question"))
            return
        await _answer(
            ack, self.service.request_info(str(meta.get("case", "")), reviewer_of(body), question)
        )


def _too_long(field: str, what: str) -> dict[str, Any]:
    """Slack's form holds at most REASON_MAX characters; a submission with more did not
    come from it, and is refused before it reaches the service (whose own bound is
    looser, for Discord)."""
    refused = DecisionRefused(
        "reason_too_long", f"Keep the {what} under {blocks.REASON_MAX} characters."
    )
    return refusal_view(refused, field)


async def _answer(
    ack: AsyncAck, work: Awaitable[Any], fields: Mapping[str, str] = FIELD_OF
) -> None:
    """Run a submission's operation, then close the modal, or answer why not (next to
    the block `fields` names for the refusal's code, if any)."""
    try:
        await work
    except DecisionRefused as exc:
        await ack(**refusal_view(exc, fields.get(exc.code)))
        return
    except NotFound:
        await ack(**refusal_view(DecisionRefused("not_found", "No such case."), None))
        return
    await ack()


def _metadata(view: dict[str, Any]) -> dict[str, Any]:
    try:
        found = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
