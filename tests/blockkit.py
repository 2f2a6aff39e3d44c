"""Slack's Block Kit limits, checked by hand (independently of slack_sdk's models, so
that what our builder misses is caught): the test Slack server runs every message and
modal through `check_message` / `check_view`, and property tests call them directly.

Limits from docs.slack.dev (reference/block-kit), as listed in tests/fixtures/slack/.
"""

from __future__ import annotations

from typing import Any

BLOCK_TYPES = {"section", "header", "context", "actions", "divider", "input", "image"}
BLOCK_TYPES |= {"rich_text", "markdown"}
INPUT_ONLY = {"plain_text_input", "email_text_input", "url_text_input", "number_input"}
INPUT_ONLY |= {"rich_text_input", "file_input"}
SELECTS = {"static_select", "multi_static_select", "external_select", "multi_external_select"}
SELECTS |= {"users_select", "multi_users_select", "conversations_select", "channels_select"}
SELECTS |= {"multi_conversations_select", "multi_channels_select"}
ELEMENTS = {"button", "overflow", "datepicker", "timepicker", "datetimepicker", "image"}
ELEMENTS |= {"radio_buttons", "checkboxes"} | INPUT_ONLY | SELECTS


# kind -> text-object fields: name -> (limit, plain_text only, required)
TEXTS: dict[str, dict[str, tuple[int, bool, bool]]] = {
    "header": {"text": (150, True, True)},
    "section": {"text": (3000, False, False)},
    "input": {"label": (2000, True, True), "hint": (2000, True, False)},
    "image": {"title": (2000, True, False)},
    "element": {"placeholder": (150, True, False)},
    "button": {"text": (75, True, True)},
    "option": {"text": (75, True, True), "description": (75, True, False)},
    "rich_option": {"text": (75, False, True), "description": (75, False, False)},
    "confirm": {"title": (100, True, True), "text": (300, False, True)}
    | {"confirm": (30, True, True), "deny": (30, True, True)},
    "modal": {"title": (24, True, True), "submit": (24, True, False), "close": (24, True, False)},
}
# kind -> string fields: name -> (limit, required)
STRINGS: dict[str, dict[str, tuple[int, bool]]] = {
    "block": {"block_id": (255, False)},
    "element": {"action_id": (255, False)},
    "button": {"value": (2000, False), "url": (3000, False)},
    "image": {"image_url": (3000, False), "alt_text": (2000, True)},
    "option": {"value": (150, True), "url": (3000, False)},
    "markdown": {"text": (12000, True)},
    "view": {"private_metadata": (3000, False), "callback_id": (255, False)}
    | {"external_id": (255, False)},
}
STRINGS["rich_option"] = STRINGS["option"]
MOST_OPTIONS = {"overflow": 5, "radio_buttons": 10, "checkboxes": 10}
OPTIONED = {"static_select", "multi_static_select"} | set(MOST_OPTIONS)


class Checker:
    """Collects `<path>: <what>` for every Block Kit limit a payload breaks."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def bad(self, path: str, what: str) -> None:
        self.errors.append(f"{path}: {what}")

    def length(self, path: str, value: Any, limit: int, required: bool = False) -> None:
        if value is None or value == "":
            if required:
                self.bad(path, "must be a non-empty string")
        elif not isinstance(value, str):
            self.bad(path, "must be a string")
        elif len(value) > limit:
            self.bad(path, f"must be at most {limit} characters, got {len(value)}")

    def text(self, path: str, obj: Any, limit: int, plain: bool = False) -> None:
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

    def items(self, path: str, value: Any, most: int, least: int = 1) -> list[Any]:
        if not isinstance(value, list):
            self.bad(path, "must be an array")
            return []
        if not least <= len(value) <= most:
            self.bad(path, f"must have {least} to {most} items, got {len(value)}")
        return value

    def blocks(self, path: str, blocks: Any, most: int) -> None:
        block_ids: set[str] = set()
        for i, block in enumerate(self.items(path, blocks, most, least=0)):
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
                    self.items(f"{at}.fields", block.get("fields", []), 10, 0)
                ):
                    self.text(f"{at}.fields[{j}]", item, 2000)
                if "accessory" in block:
                    self.element(f"{at}.accessory", block["accessory"], set(), INPUT_ONLY)
            elif kind in ("context", "actions"):
                action_ids: set[str] = set()
                elements = self.items(
                    f"{at}.elements", block.get("elements"), {"context": 10}.get(kind, 25)
                )
                for j, item in enumerate(elements):
                    if kind == "actions":
                        self.element(
                            f"{at}.elements[{j}]", item, action_ids, INPUT_ONLY | {"image"}
                        )
                    elif isinstance(item, dict) and item.get("type") == "image":
                        self.spec(f"{at}.elements[{j}]", item, "image")
                    else:
                        self.text(f"{at}.elements[{j}]", item, 3000)
            elif kind == "input":
                forbidden = {"button", "overflow", "image"}
                self.element(f"{at}.element", block.get("element"), set(), forbidden)
            elif kind == "rich_text":
                self.items(f"{at}.elements", block.get("elements"), 10_000)

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

    def options(self, path: str, el: dict[str, Any], kind: str) -> None:
        values: set[Any] = set()
        grouped = "option_groups" in el
        groups = self.items(f"{path}.option_groups", el["option_groups"], 100) if grouped else [el]
        option = (
            "option"
            if kind in ("overflow", "static_select", "multi_static_select")
            else "rich_option"
        )
        for g, group in enumerate(groups):
            at = f"{path}.option_groups[{g}]" if grouped else path
            if grouped:
                self.text(f"{at}.label", group.get("label"), 75, plain=True)
            for j, opt in enumerate(
                self.items(f"{at}.options", group.get("options"), MOST_OPTIONS.get(kind, 100))
            ):
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
        self.blocks("view.blocks", view.get("blocks"), 100)


def check_message(params: dict[str, Any]) -> list[str]:
    """Block Kit and text checks for chat.postMessage/update/postEphemeral."""
    checker = Checker()
    if params.get("blocks") is not None:
        checker.blocks("blocks", params["blocks"], 50)
    checker.length("text", params.get("text"), 40000)
    return checker.errors


def check_view(view: Any) -> list[str]:
    checker = Checker()
    checker.view(view)
    return checker.errors
