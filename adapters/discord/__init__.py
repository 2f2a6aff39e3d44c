"""Discord: cards as embeds, clicks as persistent buttons and modals, on discord.py."""

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.surface import DiscordSurface, SignoffClient

__all__ = ["DiscordAdapter", "DiscordSurface", "SignoffClient"]
