"""Reviewers' clicks and modal submissions, from discord.py's gateway.

Discord wants every interaction answered within 3 seconds. A button click is answered
with the modal itself (after one cached check: is the case open, may this person act
on it), or with an ephemeral message saying why not. Acknowledge, Claim and Release
are answered at once (a deferred update) and done after. A modal submission is the
decision: if the decision service has not finished within 2 seconds, the answer is
deferred and the result follows, so the 3 seconds always hold.

Buttons are `CardButton`s (embeds.py): a `DynamicItem` whose `custom_id` carries the
case and the action, so every card ever posted keeps working after a restart. Modals
are never kept in memory either: a submission is read from the interaction's data
(`signoff:form:<verb>:<case>`), so one posted before a restart still counts. A
submission the service refuses (no reasoning on an override, say) is answered with
the reason and a "Try again" button that reopens the form with the words already
typed.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import discord

from adapters.discord import embeds
from adapters.discord.adapter import NOBODY, DiscordAdapter
from adapters.lifecycle import Bound
from bot.errors import AlreadyDecided, DecisionRefused, NotFound
from bot.protocols import Reviewer

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

ANSWER_WITHIN = 2.0  # seconds of work before an answer is deferred (Discord allows 3)
DRAFT_TTL = 900.0
MAX_DRAFTS = 10_000
DONE_WORDS = {
    "approve": "approved this case",
    "reject": "rejected this case",
    "modify": "approved this case with your changes",
}
UNKNOWN = "Signoff does not know this button or form; use the buttons on the case's card."
Interaction = discord.Interaction[discord.Client]


def reviewer_of(interaction: Interaction) -> Reviewer:
    return Reviewer("discord", str(interaction.user.id), interaction.user.name)


def submitted(data: Any) -> dict[str, str]:
    """A modal submission's values by `custom_id`: text inputs and selects, in Labels
    (type 18) or in legacy action rows (type 1)."""
    values: dict[str, str] = {}

    def walk(components: Any) -> None:
        for item in components if isinstance(components, list) else []:
            if not isinstance(item, dict):
                continue
            kind = item.get("type")
            if kind == 18:
                walk([item.get("component")])
            elif kind == 1:
                walk(item.get("components"))
            elif kind in (3, 4) and isinstance(item.get("custom_id"), str):
                chosen = item.get("values") if kind == 3 else [item.get("value")]
                first = chosen[0] if isinstance(chosen, list) and chosen else None
                values[item["custom_id"]] = str(first) if first is not None else ""

    walk((data or {}).get("components") if isinstance(data, dict) else None)
    return values


class Interactions(Bound):
    """The handlers a `SignoffClient` calls, bound to the decision service."""

    def __init__(self, adapter: DiscordAdapter) -> None:
        super().__init__()
        self.adapter = adapter
        self._drafts: dict[tuple[str, str, str], tuple[float, str]] = {}

    # -- answers ------------------------------------------------------------------------

    async def _tell(
        self, interaction: Interaction, text: str, view: discord.ui.View | None = None
    ) -> None:
        """An ephemeral answer (`text` is Signoff's own, already escaped where needed)."""
        extra: dict[str, Any] = {"view": view} if view is not None else {}
        try:
            if interaction.response.is_done():
                await interaction.followup.send(
                    text, ephemeral=True, allowed_mentions=NOBODY, **extra
                )
            else:
                await interaction.response.send_message(
                    text, ephemeral=True, allowed_mentions=NOBODY, **extra
                )
        except (discord.DiscordException, OSError) as exc:
            log.warning("could not answer %s: %s (%s)", interaction.user.id, text, exc)

    async def _refused(self, interaction: Interaction, exc: Exception) -> None:
        if isinstance(exc, AlreadyDecided):
            by = f" by {embeds.who(exc.winner)}" if exc.winner else ""
            await self._tell(interaction, f"This case was already {exc.case_status}{by}.")
        elif isinstance(exc, DecisionRefused):
            await self._tell(interaction, embeds.fit(exc.message, 1900)[0])
        elif isinstance(exc, NotFound):
            await self._tell(interaction, "Signoff has no such case any more.")
        elif isinstance(exc, TimeoutError):
            await self._tell(interaction, "Signoff is busy; click again in a moment.")
        else:
            log.error("interaction by %s failed", interaction.user.id, exc_info=exc)
            await self._tell(interaction, "Signoff could not handle that; try again.")

    # -- clicks -------------------------------------------------------------------------

    async def click(self, interaction: Interaction, verb: str, case_id: str) -> None:
        self._track()
        self.adapter.saw(interaction.user)
        reviewer = reviewer_of(interaction)
        try:
            if verb == "full_context":
                async with asyncio.timeout(ANSWER_WITHIN):
                    card = await self.service.card(case_id)
                text = embeds.full_context(card).encode()
                await interaction.response.send_message(
                    f"The whole case `{case_id}`, nothing cut:",
                    file=discord.File(io.BytesIO(text), filename=f"case-{case_id}.md"),
                    ephemeral=True,
                    allowed_mentions=NOBODY,
                )
                return
            if verb in ("acknowledge", "claim", "release"):
                await interaction.response.defer()  # the card itself shows the change
                operation = {
                    "acknowledge": self.service.acknowledge,
                    "claim": self.service.claim,
                    "release": self.service.release,
                }[verb]
                await operation(case_id, reviewer)
                return
            async with asyncio.timeout(ANSWER_WITHIN):  # no extra task, unlike wait_for
                card = await self.service.precheck(case_id, reviewer, verb)
            draft = self._draft(reviewer, case_id, verb)
            if verb == "modify":
                edit = embeds.edit_modal(card, draft)
                if edit is None:
                    await self._tell(
                        interaction,
                        "This proposal is too large to edit in a Discord form: edit it in "
                        f"the web inbox, at /inbox/cases/{case_id}.",
                    )
                    return
                modal = edit
            elif verb == "request_info":
                modal = embeds.info_modal(card, draft)
            else:
                modal = embeds.decision_modal(card, verb, draft)
            await interaction.response.send_modal(modal)
        except Exception as exc:  # every click gets an answer, whatever failed
            await self._refused(interaction, exc)

    async def unknown_button(self, interaction: Interaction) -> None:
        """A Signoff button no `CardButton` takes (from another version of Signoff, or
        forged): answered, so that the reviewer is not left with "interaction failed"."""
        data: dict[str, Any] = dict(interaction.data) if interaction.data else {}
        custom_id = str(data.get("custom_id", ""))
        if custom_id.startswith("signoff:") and not embeds.BUTTON_ID.fullmatch(custom_id):
            await self._tell(interaction, UNKNOWN)

    # -- submissions --------------------------------------------------------------------

    async def submit(self, interaction: Interaction) -> None:
        data: dict[str, Any] = dict(interaction.data) if interaction.data else {}
        custom_id = str(data.get("custom_id", ""))
        match = embeds.FORM_ID.fullmatch(custom_id)
        if match is None:
            if custom_id.startswith("signoff:"):
                await self._tell(interaction, UNKNOWN)
            return  # not Signoff's
        self._track()
        self.adapter.saw(interaction.user)
        verb, case_id = match["verb"], match["case"]
        values = submitted(data)
        reviewer = reviewer_of(interaction)
        words = values.get(embeds.QUESTION_INPUT if verb == "request_info" else embeds.REASON_INPUT)
        try:
            args = None
            if verb == "modify":
                try:
                    args = embeds.edited_args(values)
                except ValueError as exc:
                    raise DecisionRefused("args_not_json", str(exc)) from exc
            work: Awaitable[Any] = (
                self.service.request_info(case_id, reviewer, words or "")
                if verb == "request_info"
                else self.service.decide(
                    case_id,
                    reviewer,
                    verb,
                    values.get(embeds.CODE_INPUT) or None,
                    words or None,
                    args=args,
                )
            )
            await self._within(interaction, work)
        except AlreadyDecided as exc:
            self._forget(reviewer, case_id, verb)
            await self._refused(interaction, exc)
        except DecisionRefused as exc:
            # Keep what they typed, and let them reopen the form with it.
            if words:
                self._keep(reviewer, case_id, verb, words)
            again = discord.ui.View(timeout=None)
            again.add_item(
                embeds.CardButton(verb, case_id, "Try again", discord.ButtonStyle.primary)
            )
            again.stop()
            await self._tell(
                interaction, f"Not recorded: {embeds.fit(exc.message, 1800)[0]}", again
            )
        except Exception as exc:  # every submission gets an answer
            await self._refused(interaction, exc)
        else:
            self._forget(reviewer, case_id, verb)
            done = (
                "Your question went to the workflow; the card waits for its answer."
                if verb == "request_info"
                else f"Recorded: you {DONE_WORDS[verb]}."
            )
            await self._tell(interaction, done)

    async def _within(self, interaction: Interaction, work: Awaitable[Any]) -> Any:
        """Run `work`; if it takes longer than Discord's answer allows, defer first."""
        task = asyncio.ensure_future(work)
        finished, _ = await asyncio.wait({task}, timeout=ANSWER_WITHIN)
        if not finished:
            await interaction.response.defer(ephemeral=True, thinking=True)
        return await task

    # -- drafts -------------------------------------------------------------------------

    def _keep(self, reviewer: Reviewer, case_id: str, verb: str, text: str) -> None:
        if len(self._drafts) >= MAX_DRAFTS:
            self._drafts.clear()
        self._drafts[(reviewer.user_id, case_id, verb)] = (time.monotonic() + DRAFT_TTL, text)

    def _draft(self, reviewer: Reviewer, case_id: str, verb: str) -> str | None:
        found = self._drafts.get((reviewer.user_id, case_id, verb))
        return found[1] if found and found[0] > time.monotonic() else None

    def _forget(self, reviewer: Reviewer, case_id: str, verb: str) -> None:
        self._drafts.pop((reviewer.user_id, case_id, verb), None)

    # -- background work ----------------------------------------------------------------

    def _track(self) -> None:
        """Keep hold of the task handling this interaction (discord.py made it), so that
        a stop lets it finish."""
        task = asyncio.current_task()
        if task is not None:
            self.hold(task)
