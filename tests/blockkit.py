"""Slack's Block Kit limits, checked by hand (independently of slack_sdk's models, so
that what our builder misses is caught): the test Slack server runs every message and
modal through `message_verdict` / `view_verdict` and answers as Slack would, and
property tests call `check_message` / `check_view` directly.

Every number comes from the table in `tests/slack_limits.py`, with its source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tests.slack_limits import BLOCKS_ERROR, LIMITS, TOO_MUCH_TEXT, VIEW_ERROR

BLOCK_TYPES = {"section", "header", "context", "actions", "divider", "input", "image"}
BLOCK_TYPES |= {"rich_text", "markdown"}
INPUT_ONLY = {"plain_text_input", "email_text_input", "url_text_input", "number_input"}
INPUT_ONLY |= {"rich_text_input", "file_input"}
SELECTS = {"static_select", "multi_static_select", "external_select", "multi_external_select"}
SELECTS |= {"users_select", "multi_users_select", "conversations_select", "channels_select"}
SELECTS |= {"multi_conversations_select", "multi_channels_select"}
ELEMENTS = {"button", "overflow", "datepicker", "timepicker", "datetimepicker", "image"}
ELEMENTS |= {"radio_buttons", "checkboxes"} | INPUT_ONLY | SELECTS


# kind -> text-object fields: name -> (the limit in tests/slack_limits.py, plain_text
# only, required)
TEXTS: dict[str, dict[str, tuple[str, bool, bool]]] = {
    "header": {"text": ("header.text", True, True)},
    "section": {"text": ("section.text", False, False)},
    "input": {"label": ("input.label", True, True), "hint": ("input.hint", True, False)},
    "image": {"title": ("image.title", True, False)},
    "element": {"placeholder": ("element.placeholder", True, False)},
    "button": {"text": ("button.text", True, True)},
    "option": {"text": ("option.text", True, True)}
    | {"description": ("option.description", True, False)},
    "rich_option": {"text": ("option.text", False, True)}
    | {"description": ("option.description", False, False)},
    "confirm": {"title": ("confirm.title", True, True), "text": ("confirm.text", False, True)}
    | {"confirm": ("confirm.confirm", True, True), "deny": ("confirm.deny", True, True)},
    "modal": {"title": ("modal.title", True, True), "submit": ("modal.submit", True, False)}
    | {"close": ("modal.close", True, False)},
}
# kind -> string fields: name -> (the limit, required)
STRINGS: dict[str, dict[str, tuple[str, bool]]] = {
    "block": {"block_id": ("block.block_id", False)},
    "element": {"action_id": ("element.action_id", False)},
    "button": {"value": ("button.value", False), "url": ("button.url", False)}
    | {"accessibility_label": ("button.accessibility_label", False)},
    "image": {"image_url": ("image.image_url", False), "alt_text": ("image.alt_text", True)},
    "option": {"value": ("option.value", True), "url": ("option.url", False)},
    "markdown": {"text": ("markdown.text", True)},
    "view": {"private_metadata": ("view.private_metadata", False)}
    | {"callback_id": ("view.callback_id", False), "external_id": ("view.external_id", False)},
}
STRINGS["rich_option"] = STRINGS["option"]
MOST_OPTIONS = {kind: f"{kind}.options.items" for kind in ("overflow", "radio_buttons")}
MOST_OPTIONS |= {"checkboxes": "checkboxes.options.items"}
OPTIONED = {"static_select", "multi_static_select"} | set(MOST_OPTIONS)


def pointer(path: str) -> str:
    """A checker path (`blocks[0].text.text`) as the JSON pointer Slack names in its
    errors (`/blocks/0/text/text`)."""
    return "/" + re.sub(r"\[(\d+)\]", r".\1", path).replace(".", "/")


def block_text(value: Any) -> int:
    """How many characters of text a message's blocks hold altogether (every `text`
    string, as Slack's msg_blocks_too_long counts them)."""
    if isinstance(value, list):
        return sum(block_text(item) for item in value)
    if isinstance(value, dict):
        return sum(
            len(item) if key == "text" and isinstance(item, str) else block_text(item)
            for key, item in value.items()
        )
    return 0


class Checker:
    """Collects `<path>: <what>` for every Block Kit limit a payload breaks, and the
    same problems as Slack words them (`[ERROR] <what> [json-pointer:<where>]`)."""

    def __init__(self, prefix: str = "") -> None:
        self.errors: list[str] = []
        self.messages: list[str] = []
        self.prefix = prefix  # `/view` for a view: Slack's pointers start there

    def bad(self, path: str, what: str, slack: str | None = None) -> None:
        self.errors.append(f"{path}: {what}")
        where = pointer(path.removeprefix("view.").removeprefix("view"))
        self.messages.append(f"[ERROR] {slack or what} [json-pointer:{self.prefix}{where}]")

    def length(self, path: str, value: Any, limit: str, required: bool = False) -> None:
        most = LIMITS[limit].most
        if value is None or value == "":
            if required:
                self.bad(path, "must be a non-empty string", "must be more than 0 characters")
        elif not isinstance(value, str):
            self.bad(path, "must be a string", "expected string")
        elif len(value) > most:
            self.bad(
                path,
                f"must be at most {most} characters, got {len(value)}",
                f"must be less than {most + 1} characters",
            )

    def text(self, path: str, obj: Any, limit: str, plain: bool = False) -> None:
        if not isinstance(obj, dict):
            self.bad(path, "is required" if obj is None else "must be a text object")
            return
        kind = obj.get("type")
        if kind not in ("plain_text", "mrkdwn"):
            self.bad(f"{path}.type", f"must be plain_text or mrkdwn, got {kind!r}")
        elif plain and kind != "plain_text":
            self.bad(f"{path}.type", "must be plain_text")
        self.length(f"{path}.text", obj.get("text"), limit, required=True)

    def spec(self, path: str, obj: dict[str, Any], kind: str) -> None:
        for name, (limit, plain, required) in TEXTS.get(kind, {}).items():
            if required or name in obj:
                self.text(f"{path}.{name}", obj.get(name), limit, plain)
        for name, (limit, required) in STRINGS.get(kind, {}).items():
            self.length(f"{path}.{name}", obj.get(name), limit, required)

    def unique(self, path: str, value: Any, seen: set[str]) -> None:
        if isinstance(value, str) and value in seen:
            self.bad(path, f"duplicate {value!r}")
        elif isinstance(value, str):
            seen.add(value)

    def items(self, path: str, value: Any, limit: str, least: int | None = None) -> list[Any]:
        if not isinstance(value, list):
            self.bad(path, "must be an array", "expected array")
            return []
        found = LIMITS[limit]
        low = found.least if least is None else least
        if not low <= len(value) <= found.most:
            over = len(value) > found.most
            bound = f"no more than {found.most}" if over else f"at least {low}"
            self.bad(
                path,
                f"must have {low} to {found.most} items, got {len(value)}",
                f"must provide {bound} items",
            )
        return value

    def number(self, path: str, value: Any, limit: str) -> int | None:
        found = LIMITS[limit]
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.bad(path, "must be an integer", "expected integer")
            return None
        if not found.least <= value <= found.most:
            self.bad(
                path,
                f"must be between {found.least} and {found.most}, got {value}",
                f"must be between {found.least} and {found.most}",
            )
        return value

    def blocks(self, path: str, blocks: Any, limit: str) -> None:
        block_ids: set[str] = set()
        for i, block in enumerate(self.items(path, blocks, limit, least=0)):
            at = f"{path}[{i}]"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind not in BLOCK_TYPES:
                self.bad(f"{at}.type", f"unknown block type {kind!r}")
                continue
            self.spec(at, block, "block")
            self.spec(at, block, kind)
            self.unique(f"{at}.block_id", block.get("block_id"), block_ids)
            if kind == "section":
                if "text" not in block and "fields" not in block:
                    self.bad(at, "needs text or fields")
                for j, item in enumerate(
                    self.items(f"{at}.fields", block.get("fields", []), "section.fields.items")
                ):
                    self.text(f"{at}.fields[{j}]", item, "section.fields")
                if "accessory" in block:
                    self.element(f"{at}.accessory", block["accessory"], set(), INPUT_ONLY)
            elif kind in ("context", "actions"):
                action_ids: set[str] = set()
                elements = self.items(
                    f"{at}.elements", block.get("elements"), f"{kind}.elements.items"
                )
                for j, item in enumerate(elements):
                    if kind == "actions":
                        self.element(
                            f"{at}.elements[{j}]", item, action_ids, INPUT_ONLY | {"image"}
                        )
                    elif isinstance(item, dict) and item.get("type") == "image":
                        self.spec(f"{at}.elements[{j}]", item, "image")
                    else:
                        self.text(f"{at}.elements[{j}]", item, "context.elements")
            elif kind == "input":
                forbidden = {"button", "overflow", "image"}
                self.element(f"{at}.element", block.get("element"), set(), forbidden)
            elif kind == "rich_text" and not isinstance(block.get("elements"), list):
                self.bad(f"{at}.elements", "must be an array", "expected array")

    def element(self, path: str, el: Any, action_ids: set[str], forbidden: set[str]) -> None:
        kind = el.get("type") if isinstance(el, dict) else None
        if kind not in ELEMENTS or kind in forbidden:
            self.bad(f"{path}.type", f"element type {kind!r} is not allowed here")
            return
        self.spec(path, el, kind)
        if kind == "image":
            return
        self.spec(path, el, "element")
        self.unique(f"{path}.action_id", el.get("action_id"), action_ids)
        if "confirm" in el:
            confirm = el["confirm"]
            self.spec(f"{path}.confirm", confirm if isinstance(confirm, dict) else {}, "confirm")
        if el.get("style") not in (None, "primary", "danger"):
            self.bad(f"{path}.style", f"must be primary or danger, got {el['style']!r}")
        if kind in OPTIONED:
            self.options(path, el, kind)
        if kind == "plain_text_input":
            self.text_input(path, el)

    def text_input(self, path: str, el: dict[str, Any]) -> None:
        """`max_length` 1-3000 (Slack answers views.open with invalid_arguments above
        it), `min_length` 0-3000 and not above `max_length`, `initial_value` within
        `max_length`."""
        most = self.number(
            f"{path}.max_length", el.get("max_length"), "plain_text_input.max_length"
        )
        least = self.number(
            f"{path}.min_length", el.get("min_length"), "plain_text_input.min_length"
        )
        if most is not None and least is not None and least > most:
            self.bad(f"{path}.min_length", f"must not be above max_length ({most}), got {least}")
        initial = el.get("initial_value")
        if initial is not None and not isinstance(initial, str):
            self.bad(f"{path}.initial_value", "must be a string", "expected string")
        elif initial is not None and most is not None and len(initial) > most:
            self.bad(
                f"{path}.initial_value",
                f"must be at most {most} characters (max_length), got {len(initial)}",
                f"must be less than {most + 1} characters",
            )

    def options(self, path: str, el: dict[str, Any], kind: str) -> None:
        values: set[Any] = set()
        grouped = "option_groups" in el
        groups = (
            self.items(
                f"{path}.option_groups", el["option_groups"], "static_select.option_groups.items"
            )
            if grouped
            else [el]
        )
        option = (
            "option"
            if kind in ("overflow", "static_select", "multi_static_select")
            else "rich_option"
        )
        count = MOST_OPTIONS.get(
            kind, "option_group.options.items" if grouped else "static_select.options.items"
        )
        for g, group in enumerate(groups):
            at = f"{path}.option_groups[{g}]" if grouped else path
            if grouped:
                self.text(f"{at}.label", group.get("label"), "option_group.label", plain=True)
            for j, opt in enumerate(self.items(f"{at}.options", group.get("options"), count)):
                self.spec(f"{at}.options[{j}]", opt if isinstance(opt, dict) else {}, option)
                values.add(opt.get("value") if isinstance(opt, dict) else None)
        chosen = [el["initial_option"]] if "initial_option" in el else el.get("initial_options", [])
        for opt in chosen:
            if not isinstance(opt, dict) or opt.get("value") not in values:
                self.bad(f"{path}.initial_option", "must be one of the element's options")

    def view(self, view: Any) -> None:
        if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
            self.bad("view.type", "must be modal or home")
            return
        self.spec("view", view, "view")
        if view["type"] == "modal":
            self.spec("view", view, "modal")
            blocks: list[Any] = view["blocks"] if isinstance(view.get("blocks"), list) else []
            kinds = [b.get("type") for b in blocks if isinstance(b, dict)]
            if "submit" not in view and "input" in kinds:
                self.bad("view.submit", "is required when the view has input blocks")
        self.blocks("view.blocks", view.get("blocks"), "modal.blocks.items")


@dataclass(frozen=True)
class Verdict:
    """What Slack would answer: `error` (None: accepted), our readable `errors`, and
    Slack's own lines for `response_metadata.messages`."""

    error: str | None
    errors: list[str]
    messages: list[str]


def message_verdict(params: dict[str, Any]) -> Verdict:
    """Slack's answer to the blocks and text of chat.postMessage/update/postEphemeral.
    A `text` past 40,000 characters is not an error here (Slack cuts it and warns; the
    server does that)."""
    checker = Checker()
    if params.get("blocks") is not None:
        checker.blocks("blocks", params["blocks"], "message.blocks.items")
    if not isinstance(params.get("text"), str | None):
        checker.bad("text", "must be a string", "expected string")
    if checker.errors:
        return Verdict(BLOCKS_ERROR, checker.errors, checker.messages)
    most = LIMITS["message.blocks_text"].most
    held = block_text(params.get("blocks") or [])
    if held > most:
        what = f"blocks: hold {held} characters of text together, at most {most}"
        return Verdict(TOO_MUCH_TEXT, [what], [])
    return Verdict(None, [], [])


def check_message(params: dict[str, Any]) -> list[str]:
    """Every rule a message breaks, the total length of its `text` included."""
    verdict = message_verdict(params)
    text = params.get("text")
    most = LIMITS["message.text"].most
    if isinstance(text, str) and len(text) > most:
        return [*verdict.errors, f"text: must be at most {most} characters, got {len(text)}"]
    return verdict.errors


def view_verdict(view: Any) -> Verdict:
    checker = Checker(prefix="/view")
    checker.view(view)
    return Verdict(VIEW_ERROR if checker.errors else None, checker.errors, checker.messages)


def check_view(view: Any) -> list[str]:
    return view_verdict(view).errors
