"""Review surfaces: one subpackage per platform, each implementing `bot.protocols.Adapter`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.protocols import Adapter


def from_settings(settings: Settings) -> dict[str, Adapter]:
    """The platforms the settings connect (imported only when configured)."""
    found: dict[str, Adapter] = {}
    if settings.slack_bot_token is not None:
        from adapters.slack import SlackSurface

        found["slack"] = SlackSurface.from_settings(settings)
    if settings.discord_bot_token is not None:
        from adapters.discord import DiscordSurface

        found["discord"] = DiscordSurface.from_settings(settings)
    if settings.web:
        from adapters.web import WebSurface

        found["web"] = WebSurface.from_settings(settings)
    return found
