"""Discord's documented limits, as data: each with the page that documents it and the error
Discord answers when a request breaks it.

`tests/discordkit.py` reads every bound from `LIMITS`, so the Discord-compatible test
server (tests/discord_api.py) refuses exactly what this table says Discord refuses, with
`400 {"code": 50035, "message": "Invalid Form Body", "errors": {...}}` and, in the
`errors` tree, the code and message Discord uses (`Limit.error`). Where two sources
disagree the stricter bound is kept, and `note` says so.

Docs pages are from discord/discord-api-docs @ c98d64bc (published under
https://discord.com/developers/docs/). The error codes and messages are the ones
Discord answers, as quoted in the issue threads named in `ERRORS_SEEN`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

DOCS = "https://discord.com/developers/docs"
MESSAGE = f"{DOCS}/resources/message"
CREATE = f"{MESSAGE}#create-message-jsonform-params"
EMBED = f"{MESSAGE}#embed-object-embed-limits"
MENTIONS = f"{MESSAGE}#allowed-mentions-object"
ATTACHMENT = f"{MESSAGE}#attachment-object-attachment-structure"
COMPONENTS = f"{DOCS}/components/reference"
RESPOND = f"{DOCS}/interactions/receiving-and-responding"
MODAL = f"{RESPOND}#interaction-response-object-modal"
UPLOADS = f"{DOCS}/reference#uploading-files"
CHANGELOG_LABEL = f"{DOCS}/change-log#new-modal-components"

# Where Discord's answers were seen (the code and message of each kind of error).
ERRORS_SEEN = {
    "BASE_TYPE_MAX_LENGTH": "https://github.com/HKUDS/nanobot/issues/369",
    "BASE_TYPE_BAD_LENGTH": "https://github.com/TFNS/CTFNote/issues/408",
    "BASE_TYPE_REQUIRED": "https://github.com/discord/discord-api-docs/issues/1313",
    "MAX_EMBED_SIZE_EXCEEDED": "https://github.com/NelsonDane/auto-rsa/pull/451",
    "NUMBER_TYPE_MAX": "https://github.com/pymc-labs/daimon/pull/57",
    "NONCE_TYPE_TOO_LONG": "https://github.com/discord/discord-api-docs/pull/1158",
    "COMPONENT_CUSTOM_ID_DUPLICATED": "https://github.com/discord/discord-api-docs/issues/3673",
    "SELECT_COMPONENT_OPTION_VALUE_DUPLICATED": "https://github.com/Would-You-Bot/client/issues/304",
    "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE": "https://github.com/Mephisto5558/Teufelsbot/issues/287",
}

Kind = Literal["length", "count", "number", "total", "nonce", "bytes", "forbidden"]


@dataclass(frozen=True)
class Limit:
    """One documented bound. `least`/`most` are inclusive; `path` is an example of where
    it applies, written as Discord's `errors` tree nests it (list indexes as keys)."""

    name: str
    kind: Kind
    most: int
    url: str
    path: str
    least: int = 0  # only where the docs give a range ("1-100"); required is separate
    note: str = ""

    def error(self, got: Any = None) -> dict[str, str]:
        """The `{"code", "message"}` entry Discord puts under `_errors` for this limit."""
        if self.kind == "total":
            return {
                "code": "MAX_EMBED_SIZE_EXCEEDED",
                "message": f"Embed size exceeds maximum size of {self.most}",
            }
        if self.kind == "nonce":
            return {
                "code": "NONCE_TYPE_TOO_LONG",
                "message": f"Must be {self.most} or fewer characters long.",
            }
        if self.kind == "number":
            if isinstance(got, int) and got < self.least:
                return {
                    "code": "NUMBER_TYPE_MIN",
                    "message": f"int value should be greater than or equal to {self.least}.",
                }
            return {
                "code": "NUMBER_TYPE_MAX",
                "message": f"int value should be less than or equal to {self.most}.",
            }
        if self.kind == "forbidden":
            return {"code": "BASE_TYPE_INVALID", "message": "This field is not allowed here."}
        if self.least > 0:
            return {
                "code": "BASE_TYPE_BAD_LENGTH",
                "message": f"Must be between {self.least} and {self.most} in length.",
            }
        return {
            "code": "BASE_TYPE_MAX_LENGTH",
            "message": f"Must be {self.most} or fewer in length.",
        }

    def errors_tree(self, got: Any = None) -> dict[str, Any]:
        """The whole `errors` object Discord answers when only this limit is broken at
        `path` (e.g. {"embeds": {"0": {"title": {"_errors": [...]}}}})."""
        return nest(self.path, [self.error(got)])


def nest(path: str, errors: list[dict[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {"_errors": errors}
    for key in reversed(path.split(".")):
        out = {key: out}
    return out


_TABLE = [
    # -- messages (create, edit, interaction callbacks, follow-ups, webhooks) ------------
    Limit("content", "length", 2000, CREATE, "content"),
    Limit("nonce", "nonce", 25, CREATE, "nonce"),
    Limit("embeds", "count", 10, CREATE, "embeds"),
    Limit("sticker_ids", "count", 3, CREATE, "sticker_ids"),
    Limit("embed.title", "length", 256, EMBED, "embeds.0.title"),
    Limit("embed.description", "length", 4096, EMBED, "embeds.0.description"),
    Limit("embed.fields", "count", 25, EMBED, "embeds.0.fields"),
    Limit("embed.field.name", "length", 256, EMBED, "embeds.0.fields.0.name"),
    Limit("embed.field.value", "length", 1024, EMBED, "embeds.0.fields.0.value"),
    Limit("embed.footer.text", "length", 2048, EMBED, "embeds.0.footer.text"),
    Limit("embed.author.name", "length", 256, EMBED, "embeds.0.author.name"),
    Limit(
        "embed.total",
        "total",
        6000,
        EMBED,
        "embeds",
        note="title, description, field names and values, footer text and author names "
        "of all embeds of the message together",
    ),
    Limit(
        "embed.url",
        "length",
        2048,
        "https://github.com/rinckodev/magicyan/blob/main/packages/discord/src/constants/embed.ts",
        "embeds.0.url",
        note="not in Discord's table; kept from a client library (stricter than none)",
    ),
    Limit(
        "embed.color",
        "number",
        0xFFFFFF,
        f"{MESSAGE}#embed-object-embed-structure",
        "embeds.0.color",
    ),
    Limit("allowed_mentions.users", "count", 100, MENTIONS, "allowed_mentions.users"),
    Limit("allowed_mentions.roles", "count", 100, MENTIONS, "allowed_mentions.roles"),
    Limit("allowed_mentions.parse", "count", 3, MENTIONS, "allowed_mentions.parse"),
    # -- attachments ---------------------------------------------------------------------
    Limit(
        "files",
        "count",
        10,
        "https://github.com/serenity-rs/serenity/issues/85",
        "files",
        note="Discord's docs give no count; 10 is what clients enforce and Discord accepts",
    ),
    Limit("file.size", "bytes", 10 * 1024 * 1024, UPLOADS, "files.0", note="the default"),
    Limit("request.size", "bytes", 25 * 1024 * 1024, f"{MESSAGE}#create-message", "(body)"),
    Limit("attachment.description", "length", 1024, ATTACHMENT, "attachments.0.description"),
    # -- message components --------------------------------------------------------------
    Limit(
        "components.rows",
        "count",
        5,
        f"{COMPONENTS}#legacy-message-component-behavior",
        "components",
    ),
    Limit(
        "row.components",
        "count",
        5,
        f"{COMPONENTS}#action-row-action-row-structure",
        "components.0.components",
        least=1,
        note="up to 5 buttons, or a single select",
    ),
    Limit("components.v2.total", "count", 40, f"{COMPONENTS}#what-is-a-component", "components"),
    Limit(
        "text_display.content",
        "length",
        4000,
        "https://github.com/discord-userdoccers/discord-userdoccers/pull/470",
        "components.0.content",
    ),
    Limit(
        "custom_id",
        "length",
        100,
        f"{COMPONENTS}#anatomy-of-a-component-custom-id",
        "components.0.components.0.custom_id",
        least=1,
    ),
    Limit(
        "button.label",
        "length",
        80,
        f"{COMPONENTS}#button-button-structure",
        "components.0.components.0.label",
    ),
    Limit(
        "button.url",
        "length",
        512,
        f"{COMPONENTS}#button-button-structure",
        "components.0.components.0.url",
    ),
    Limit(
        "select.options",
        "count",
        25,
        f"{COMPONENTS}#string-select-string-select-structure",
        "components.0.components.0.options",
        least=1,
    ),
    Limit(
        "select.placeholder",
        "length",
        150,
        f"{COMPONENTS}#string-select-string-select-structure",
        "components.0.components.0.placeholder",
    ),
    Limit(
        "select.min_values",
        "number",
        25,
        f"{COMPONENTS}#string-select-string-select-structure",
        "components.0.components.0.min_values",
    ),
    Limit(
        "select.max_values",
        "number",
        25,
        f"{COMPONENTS}#string-select-string-select-structure",
        "components.0.components.0.max_values",
        least=1,
    ),
    Limit(
        "option.label",
        "length",
        100,
        f"{COMPONENTS}#string-select-select-option-structure",
        "components.0.components.0.options.0.label",
    ),
    Limit(
        "option.value",
        "length",
        100,
        f"{COMPONENTS}#string-select-select-option-structure",
        "components.0.components.0.options.0.value",
    ),
    Limit(
        "option.description",
        "length",
        100,
        f"{COMPONENTS}#string-select-select-option-structure",
        "components.0.components.0.options.0.description",
    ),
    # -- modals (interaction callback type 9) --------------------------------------------
    Limit("modal.custom_id", "length", 100, MODAL, "data.custom_id", least=1),
    Limit("modal.title", "length", 45, MODAL, "data.title"),
    Limit(
        "modal.components",
        "count",
        5,
        MODAL,
        "data.components",
        least=1,
        note="top-level components: a Label (type 18) wraps one input and counts as one, "
        "so Labels leave the limit at 5 inputs",
    ),
    Limit(
        "label.label",
        "length",
        45,
        f"{COMPONENTS}#label-label-structure",
        "data.components.0.label",
    ),
    Limit(
        "label.description",
        "length",
        100,
        f"{COMPONENTS}#label-label-structure",
        "data.components.0.description",
    ),
    Limit(
        "label.text_input.label",
        "forbidden",
        0,
        CHANGELOG_LABEL,
        "data.components.0.component.label",
        note="a text input in a Label may not carry its own label; the error code is not "
        "documented",
    ),
    Limit(
        "label.select.disabled",
        "forbidden",
        0,
        CHANGELOG_LABEL,
        "data.components.0.component.disabled",
        note="a select in a modal may not be disabled; the error code is not documented",
    ),
    Limit(
        "text_input.label",
        "length",
        45,
        "https://github.com/discord/discord-api-docs/pull/4689",
        "data.components.0.components.0.label",
        note="the deprecated label of a text input in an action row",
    ),
    Limit(
        "text_input.min_length",
        "number",
        4000,
        f"{COMPONENTS}#text-input-text-input-structure",
        "data.components.0.component.min_length",
    ),
    Limit(
        "text_input.max_length",
        "number",
        4000,
        f"{COMPONENTS}#text-input-text-input-structure",
        "data.components.0.component.max_length",
        least=1,
    ),
    Limit(
        "text_input.value",
        "length",
        4000,
        f"{COMPONENTS}#text-input-text-input-structure",
        "data.components.0.component.value",
    ),
    Limit(
        "text_input.placeholder",
        "length",
        100,
        f"{COMPONENTS}#text-input-text-input-structure",
        "data.components.0.component.placeholder",
    ),
    # -- threads -------------------------------------------------------------------------
    Limit(
        "thread.name",
        "length",
        100,
        f"{DOCS}/resources/channel#start-thread-from-message",
        "name",
        least=1,
    ),
]

LIMITS: dict[str, Limit] = {limit.name: limit for limit in _TABLE}

# Rules that are not a bound on one field, with their sources.
TEXT_INPUT_VALUE_WITHIN = f"{COMPONENTS}#text-input-text-input-structure"  # value <= max_length
CUSTOM_ID_UNIQUE = f"{COMPONENTS}#anatomy-of-a-component-custom-id"
OPTION_VALUE_UNIQUE = ERRORS_SEEN["SELECT_COMPONENT_OPTION_VALUE_DUPLICATED"]
MENTIONS_EXCLUSIVE = MENTIONS  # parse "users" and a users list are mutually exclusive
COMPONENTS_V2_ALONE = f"{CREATE}"  # with IS_COMPONENTS_V2 there is no content nor embeds
ANSWER_WITHIN_SECONDS = 3  # f"{RESPOND}#responding-to-an-interaction"
TOKEN_VALID_SECONDS = 15 * 60  # same page: follow-ups and edits for 15 minutes
DEFERRED_FLAGS_ONLY = f"{RESPOND}#interaction-response-object-messages"
AUTO_ARCHIVE = {60, 1440, 4320, 10080}  # f"{DOCS}/resources/channel#start-thread-from-message"


def limit(name: str) -> Limit:
    return LIMITS[name]


def most(name: str) -> int:
    return LIMITS[name].most
