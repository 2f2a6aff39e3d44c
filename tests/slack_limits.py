"""Slack's platform limits as data: each one with the page that documents it and the
error Slack answers when a payload breaks it.

`tests/blockkit.py` reads every number from here, and the Slack-compatible test server
(`tests/slack_api.py`) runs each `chat.postMessage`, `chat.update`, `chat.postEphemeral`,
`views.open`, `views.update` and `views.push` through it, so every test that posts,
updates or opens a view is held to these rules.

Where two sources disagree, the stricter number is taken and both are named (see
`option.value` and `message.blocks_text`).

Errors, as Slack answers them:
- a message whose blocks break a rule: `invalid_blocks`, with one
  `[ERROR] <what> [json-pointer:/blocks/...]` line per problem in
  `response_metadata.messages` (and in `errors`);
- a view that breaks a rule: `invalid_arguments`, with the same lines under
  `/view/...` in `response_metadata.messages`;
- a message whose blocks hold too much text altogether: `msg_blocks_too_long`;
- a top-level `text` past 40,000 characters is not refused: Slack posts it cut to
  40,000 and warns (`message_truncated`). The stand-in does the same, and also records
  a violation, because a card that relies on Slack's cut loses its end without an
  ellipsis or a way to read the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

DOCS = "https://docs.slack.dev/reference/block-kit"
BLOCKS_ERROR = "invalid_blocks"
VIEW_ERROR = "invalid_arguments"
TOO_MUCH_TEXT = "msg_blocks_too_long"
TRUNCATED = "message_truncated"


@dataclass(frozen=True)
class Limit:
    name: str  # what is limited: `<object>.<field>`, or `<object>.<field>.items` for a count
    most: int  # the largest length or count Slack accepts
    url: str  # the page that documents it
    error: str  # what Slack answers when it is broken (in a message; views: `VIEW_ERROR`)
    least: int = 0  # the smallest accepted (1 = must not be empty)
    note: str = ""


def _limits(*items: Limit) -> dict[str, Limit]:
    return {item.name: item for item in items}


SECTION = f"{DOCS}/blocks/section-block"
HEADER = f"{DOCS}/blocks/header-block"
CONTEXT = f"{DOCS}/blocks/context-block"
ACTIONS = f"{DOCS}/blocks/actions-block"
INPUT = f"{DOCS}/blocks/input-block"
IMAGE = f"{DOCS}/blocks/image-block"
MARKDOWN = f"{DOCS}/blocks/markdown-block"
BLOCKS = f"{DOCS}/blocks"
TEXT = f"{DOCS}/composition-objects/text-object"
CONFIRM = f"{DOCS}/composition-objects/confirmation-dialog-object"
OPTION = f"{DOCS}/composition-objects/option-object"
OPTION_GROUP = f"{DOCS}/composition-objects/option-group-object"
BUTTON = f"{DOCS}/block-elements/button-element"
SELECT = f"{DOCS}/block-elements/select-menu-element"
OVERFLOW = f"{DOCS}/block-elements/overflow-menu-element"
TEXT_INPUT = f"{DOCS}/block-elements/plain-text-input-element"
MODAL = "https://docs.slack.dev/reference/views/modal-views"
POST = "https://docs.slack.dev/reference/methods/chat.postMessage"
TRUNCATING = "https://api.slack.com/changelog/2018-04-truncating-really-long-messages"
NODE_OPTION = (
    "https://docs.slack.dev/tools/node-slack-sdk/reference/types/interfaces/PlainTextOption"
)
INPUT_ISSUE = "https://github.com/slackapi/node-slack-sdk/issues/940"
BLOCKS_TOO_LONG = "https://github.com/slackapi/bolt-js/issues/2509"
BLOCKS_TOO_LONG_2 = "https://github.com/slackapi/bolt-js/issues/2867"

LIMITS = _limits(
    # messages and modals
    Limit("message.blocks.items", 50, BLOCKS, BLOCKS_ERROR),
    Limit("modal.blocks.items", 100, MODAL, VIEW_ERROR),
    Limit(
        "message.text",
        40_000,
        TRUNCATING,
        TRUNCATED,
        note="not refused: posted cut to 40,000 with a `message_truncated` warning",
    ),
    Limit(
        "message.blocks_text",
        12_000,
        MARKDOWN,
        TOO_MUCH_TEXT,
        note=(
            "the text of all a message's blocks together. Documented as 12,000 for "
            "markdown blocks; Slack answers msg_blocks_too_long near 12,000-13,300 "
            f"characters of section, header and divider text too ({BLOCKS_TOO_LONG}, "
            f"{BLOCKS_TOO_LONG_2}: a Slack engineer: 12,000 text characters with a "
            "buffer for block containers). Stricter of the two: 12,000 of any text"
        ),
    ),
    # text objects and blocks
    Limit("block.block_id", 255, BLOCKS, BLOCKS_ERROR),
    Limit("section.text", 3000, SECTION, BLOCKS_ERROR, least=1),
    Limit("section.fields.items", 10, SECTION, BLOCKS_ERROR),
    Limit("section.fields", 2000, SECTION, BLOCKS_ERROR, least=1),
    Limit("header.text", 150, HEADER, BLOCKS_ERROR, least=1),
    Limit("context.elements.items", 10, CONTEXT, BLOCKS_ERROR, least=1),
    Limit("context.elements", 3000, TEXT, BLOCKS_ERROR, least=1, note="a text object's limit"),
    Limit("actions.elements.items", 25, ACTIONS, BLOCKS_ERROR, least=1),
    Limit("input.label", 2000, INPUT, BLOCKS_ERROR, least=1),
    Limit("input.hint", 2000, INPUT, BLOCKS_ERROR, least=1),
    Limit("image.alt_text", 2000, IMAGE, BLOCKS_ERROR, least=1),
    Limit("image.image_url", 3000, IMAGE, BLOCKS_ERROR),
    Limit("image.title", 2000, IMAGE, BLOCKS_ERROR, least=1),
    Limit("markdown.text", 12_000, MARKDOWN, BLOCKS_ERROR, least=1),
    # elements
    Limit("element.action_id", 255, BUTTON, BLOCKS_ERROR),
    Limit("element.placeholder", 150, SELECT, BLOCKS_ERROR, least=1),
    Limit("button.text", 75, BUTTON, BLOCKS_ERROR, least=1),
    Limit("button.value", 2000, BUTTON, BLOCKS_ERROR),
    Limit("button.url", 3000, BUTTON, BLOCKS_ERROR),
    Limit("button.accessibility_label", 75, BUTTON, BLOCKS_ERROR),
    Limit("static_select.options.items", 100, SELECT, BLOCKS_ERROR, least=1),
    Limit("static_select.option_groups.items", 100, OPTION_GROUP, BLOCKS_ERROR, least=1),
    Limit("option_group.label", 75, OPTION_GROUP, BLOCKS_ERROR, least=1),
    Limit("option_group.options.items", 100, OPTION_GROUP, BLOCKS_ERROR, least=1),
    Limit("overflow.options.items", 5, OVERFLOW, BLOCKS_ERROR, least=2),
    Limit(
        "radio_buttons.options.items",
        10,
        f"{DOCS}/block-elements/radio-button-group-element",
        BLOCKS_ERROR,
        least=1,
    ),
    Limit(
        "checkboxes.options.items",
        10,
        f"{DOCS}/block-elements/checkboxes-element",
        BLOCKS_ERROR,
        least=1,
    ),
    Limit("option.text", 75, OPTION, BLOCKS_ERROR, least=1),
    Limit(
        "option.value",
        75,
        NODE_OPTION,
        BLOCKS_ERROR,
        least=1,
        note=f"{OPTION} says 150; Slack's own @slack/types say 75: the stricter is kept",
    ),
    Limit("option.description", 75, OPTION, BLOCKS_ERROR, least=1),
    Limit("option.url", 3000, OPTION, BLOCKS_ERROR),
    Limit("confirm.title", 100, CONFIRM, BLOCKS_ERROR, least=1),
    Limit("confirm.text", 300, CONFIRM, BLOCKS_ERROR, least=1),
    Limit("confirm.confirm", 30, CONFIRM, BLOCKS_ERROR, least=1),
    Limit("confirm.deny", 30, CONFIRM, BLOCKS_ERROR, least=1),
    Limit(
        "plain_text_input.max_length",
        3000,
        TEXT_INPUT,
        VIEW_ERROR,
        least=1,
        note=f"views.open answers invalid_arguments above 3000 ({INPUT_ISSUE})",
    ),
    Limit("plain_text_input.min_length", 3000, TEXT_INPUT, VIEW_ERROR),
    Limit(
        "plain_text_input.initial_value",
        3000,
        TEXT_INPUT,
        VIEW_ERROR,
        note="and within the element's own max_length",
    ),
    # modals
    Limit("modal.title", 24, MODAL, VIEW_ERROR, least=1),
    Limit("modal.submit", 24, MODAL, VIEW_ERROR, least=1),
    Limit("modal.close", 24, MODAL, VIEW_ERROR, least=1),
    Limit("view.private_metadata", 3000, MODAL, VIEW_ERROR),
    Limit("view.callback_id", 255, MODAL, VIEW_ERROR),
    Limit("view.external_id", 255, MODAL, VIEW_ERROR),
)


def most(name: str) -> int:
    return LIMITS[name].most
