"""The OAuth2 URL that adds Signoff's bot to a Discord server, with exactly the
permissions it uses.

| permission | bit | for |
| --- | --- | --- |
| View Channels | 1 << 10 | seeing the lanes' channels |
| Send Messages | 1 << 11 | cards, pages, summaries |
| Embed Links | 1 << 14 | the card is an embed |
| Attach Files | 1 << 15 | charts in the weekly summary |
| Read Message History | 1 << 16 | a page replies to its card |
| Create Public Threads | 1 << 35 | a thread per case |
| Send Messages in Threads | 1 << 38 | reminders, questions and the decision record |

The scope is `bot` alone: buttons and modals need no `applications.commands`. No
privileged intent is needed. A page pings the on-call role: make that role
mentionable (Server Settings, Roles, "Allow anyone to @mention this role"), since
Signoff does not ask for Mention Everyone.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import urlencode

PERMISSIONS = {
    "View Channels": 1 << 10,
    "Send Messages": 1 << 11,
    "Embed Links": 1 << 14,
    "Attach Files": 1 << 15,
    "Read Message History": 1 << 16,
    "Create Public Threads": 1 << 35,
    "Send Messages in Threads": 1 << 38,
}
AUTHORIZE = "https://discord.com/oauth2/authorize"


def permissions() -> int:
    total = 0
    for bit in PERMISSIONS.values():
        total |= bit
    return total


def client_id_from_token(token: str) -> str | None:
    """The bot's user ID, which a bot token's first part encodes (for a bot, the same
    as its application's ID)."""
    first = token.strip().split(".", 1)[0]
    try:
        decoded = base64.b64decode(first + "=" * (-len(first) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return decoded if decoded.isdigit() and 17 <= len(decoded) <= 20 else None


def invite_url(client_id: str, *, guild_id: str | None = None) -> str:
    if not (client_id.isdigit() and 17 <= len(client_id) <= 20):
        raise ValueError(
            f"{client_id!r} is not a Discord application ID (17 to 20 digits; the "
            "Developer Portal shows it on the application's General Information page)"
        )
    query = {"client_id": client_id, "scope": "bot", "permissions": str(permissions())}
    if guild_id is not None:
        if not (guild_id.isdigit() and 17 <= len(guild_id) <= 20):
            raise ValueError(f"{guild_id!r} is not a Discord server ID (17 to 20 digits)")
        query |= {"guild_id": guild_id, "disable_guild_select": "true"}
    return f"{AUTHORIZE}?{urlencode(query)}"
