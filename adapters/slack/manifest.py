"""The Slack app manifest: the app Signoff needs, with exactly the scopes it uses.

| scope | for |
| --- | --- |
| `chat:write` | cards, their updates, thread replies, ephemeral refusals, DMs |
| `im:write` | opening the DM that pages an on-call person (`conversations.open`) |
| `users:read` | `users.info`, to tell who clicked |
| `users:read.email` | the clicker's e-mail, to refuse approving one's own request |
| `usergroups:read` | `usergroups.users.list`, for approver and on-call groups |
| `files:write` | charts in the weekly summary (`files_upload_v2`) |
| `channels:history` | after a crash, finding a post already made in a public channel |
| `groups:history` | the same in a private channel |
| `im:history` | the same in a page's DM (`conversations.history` / `.replies`) |

`views.open` and `chat.getPermalink` need no scope of their own; neither does the
message metadata each post carries (https://docs.slack.dev/messaging/message-metadata);
reading it back does (https://docs.slack.dev/reference/methods/conversations.history).
Pages DM one person at a time, so `mpim:history` is not needed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

BOT_SCOPES = [
    "chat:write",
    "im:write",
    "users:read",
    "users:read.email",
    "usergroups:read",
    "files:write",
    "channels:history",
    "groups:history",
    "im:history",
]
EVENTS_PATH = "/slack/events"


def manifest(
    url: str | None, *, socket_mode: bool = False, name: str = "Signoff"
) -> dict[str, Any]:
    """The manifest. `url` is Signoff's public base URL (HTTP mode); Socket Mode needs none."""
    if not 1 <= len(name) <= 35:
        raise ValueError("a Slack app's name has 1 to 35 characters")
    if not socket_mode:
        if not url:
            raise ValueError("give Signoff's public base URL (--url https://...), or --socket-mode")
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.netloc:
            raise ValueError(f"Slack sends clicks only to an https:// URL, not {url!r}")
    settings: dict[str, Any] = {
        "interactivity": {"is_enabled": True},
        "org_deploy_enabled": False,
        "socket_mode_enabled": socket_mode,
        "token_rotation_enabled": False,
    }
    if not socket_mode and url:
        settings["interactivity"]["request_url"] = url.rstrip("/") + EVENTS_PATH
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": name,
            "description": "Human sign-off for AI workflows",
            "long_description": (
                "Signoff posts the cases an AI workflow cannot decide alone as cards with "
                "Approve, Reject and Request info buttons. Every decision needs a reason, "
                "only a lane's approvers can decide, and the workflow gets the outcome back."
            ),
            "background_color": "#1d3557",
        },
        "features": {"bot_user": {"display_name": name, "always_online": True}},
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": settings,
    }
