"""Discord's message and modal limits, checked by hand (independently of discord.py, so that
what our adapter or discord.py's builders miss is caught): the test Discord server runs every
message, edit, follow-up and interaction callback through `check_message` / `check_modal`.

Limits from discord/discord-api-docs @ c98d64bc, as listed in tests/fixtures/discord/README.md.
Each problem reads `<path>: <what>`, where the path is the JSON path with `.` between keys
and list indexes (`embeds.0.fields.3.value`), as Discord's own `errors` object nests them.
"""

from __future__ import annotations

from typing import Any

IS_COMPONENTS_V2 = 1 << 15
BUTTON_STYLES = {1, 2, 3, 4, 5}
LINK = 5
SELECTS = {3, 5, 6, 7, 8}  # string, user, role, mentionable, channel
MENTION_TYPES = {"roles", "users", "everyone"}
ALLOWED_MENTION_KEYS = {"parse", "roles", "users", "replied_user"}
V2_TYPES = {1, 9, 10, 11, 12, 13, 14, 17}  # row, section, text, thumbnail, gallery, file, ...
MODAL_TOP_LEVEL = {1, 10, 18}  # legacy action row, text display, label


class Checker:
    """Collects `<path>: <what>` for every limit a payload breaks."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.custom_ids: dict[str, str] = {}  # custom_id -> the path that used it first

    def bad(self, path: str, what: str) -> None:
        self.errors.append(f"{path}: {what}")

    def string(
        self, path: str, value: Any, limit: int, required: bool = False, least: int = 0
    ) -> None:
        if value is None:
            if required:
                self.bad(path, "is required")
        elif not isinstance(value, str):
            self.bad(path, f"must be a string, got {type(value).__name__}")
        elif required and not value.strip() and least > 0:
            self.bad(path, "must not be empty")
        elif len(value) < least:
            self.bad(path, f"must be at least {least} characters, got {len(value)}")
        elif len(value) > limit:
            self.bad(path, f"must be at most {limit} characters, got {len(value)}")

    def integer(self, path: str, value: Any, low: int, high: int, required: bool = False) -> None:
        if value is None:
            if required:
                self.bad(path, "is required")
        elif not isinstance(value, int) or isinstance(value, bool):
            self.bad(path, f"must be an integer, got {type(value).__name__}")
        elif not low <= value <= high:
            self.bad(path, f"must be between {low} and {high}, got {value}")

    def items(self, path: str, value: Any, most: int, least: int = 0) -> list[Any]:
        if value is None:
            value = []
        if not isinstance(value, list):
            self.bad(path, f"must be a list, got {type(value).__name__}")
            return []
        if len(value) > most:
            self.bad(path, f"must have at most {most} items, got {len(value)}")
        if len(value) < least:
            self.bad(path, f"must have at least {least} items, got {len(value)}")
        return value

    def custom_id(self, path: str, value: Any) -> None:
        self.string(path, value, 100, required=True, least=1)
        if isinstance(value, str) and value:
            if value in self.custom_ids:
                self.bad(path, f"duplicates the custom_id at {self.custom_ids[value]}: {value!r}")
            else:
                self.custom_ids[value] = path

    # -- messages -------------------------------------------------------------------------

    def embed(self, path: str, embed: Any) -> int:
        """Check one embed; return how many characters count toward the 6000 total."""
        if not isinstance(embed, dict):
            self.bad(path, "must be an object")
            return 0
        total = 0
        for key, limit in (("title", 256), ("description", 4096)):
            self.string(f"{path}.{key}", embed.get(key), limit)
            total += len(embed.get(key) or "")
        for key, limit in (("url", 2048),):
            self.string(f"{path}.{key}", embed.get(key), limit)
        if "colour" in embed:
            self.bad(f"{path}.colour", "is not a field (Discord spells it color)")
        color = embed.get("color")
        self.integer(f"{path}.color", color, 0, 0xFFFFFF)
        for i, item in enumerate(self.items(f"{path}.fields", embed.get("fields"), 25)):
            where = f"{path}.fields.{i}"
            if not isinstance(item, dict):
                self.bad(where, "must be an object")
                continue
            self.string(f"{where}.name", item.get("name"), 256, required=True, least=1)
            self.string(f"{where}.value", item.get("value"), 1024, required=True, least=1)
            if "inline" in item and not isinstance(item["inline"], bool):
                self.bad(f"{where}.inline", "must be a boolean")
            total += len(item.get("name") or "") + len(item.get("value") or "")
        for key, sub, limit in (("footer", "text", 2048), ("author", "name", 256)):
            part = embed.get(key)
            if part is None:
                continue
            if not isinstance(part, dict):
                self.bad(f"{path}.{key}", "must be an object")
                continue
            self.string(f"{path}.{key}.{sub}", part.get(sub), limit, required=True, least=1)
            total += len(part.get(sub) or "")
        return total

    def button(self, path: str, button: dict[str, Any]) -> None:
        style = button.get("style")
        self.integer(f"{path}.style", style, min(BUTTON_STYLES), max(BUTTON_STYLES), True)
        self.string(f"{path}.label", button.get("label"), 80)
        if not button.get("label") and not button.get("emoji"):
            self.bad(path, "a button needs a label or an emoji")
        if style == LINK:
            self.string(f"{path}.url", button.get("url"), 512, required=True, least=1)
            if button.get("custom_id") is not None:
                self.bad(f"{path}.custom_id", "a link button cannot have a custom_id")
        else:
            self.custom_id(f"{path}.custom_id", button.get("custom_id"))
            if button.get("url") is not None:
                self.bad(f"{path}.url", "only a link button (style 5) has a url")

    def select(self, path: str, select: dict[str, Any]) -> None:
        self.custom_id(f"{path}.custom_id", select.get("custom_id"))
        self.string(f"{path}.placeholder", select.get("placeholder"), 150)
        count: int | None = None
        if select.get("type") == 3:
            options = self.items(f"{path}.options", select.get("options"), 25, least=1)
            count = len(options)
            values: set[str] = set()
            defaults = 0
            for i, option in enumerate(options):
                where = f"{path}.options.{i}"
                if not isinstance(option, dict):
                    self.bad(where, "must be an object")
                    continue
                self.string(f"{where}.label", option.get("label"), 100, required=True, least=1)
                self.string(f"{where}.value", option.get("value"), 100, required=True, least=1)
                self.string(f"{where}.description", option.get("description"), 100)
                value = option.get("value")
                if isinstance(value, str):
                    if value in values:
                        self.bad(f"{where}.value", f"duplicates another option's value {value!r}")
                    values.add(value)
                defaults += bool(option.get("default"))
            if defaults > (select.get("max_values") or 1):
                self.bad(f"{path}.options", f"{defaults} default options exceed max_values")
        low, high = select.get("min_values"), select.get("max_values")
        self.integer(f"{path}.min_values", low, 0, 25)
        self.integer(f"{path}.max_values", high, 1, 25)
        low_n = low if isinstance(low, int) else 1
        high_n = high if isinstance(high, int) else 1
        if low_n > high_n:
            self.bad(f"{path}.min_values", f"must not exceed max_values ({low_n} > {high_n})")
        if count is not None and high_n > count:
            self.bad(f"{path}.max_values", f"must not exceed the {count} options, got {high_n}")

    def action_row(self, path: str, row: Any) -> None:
        if not isinstance(row, dict) or row.get("type") != 1:
            self.bad(f"{path}.type", "a top-level component must be an action row (type 1)")
            return
        children = self.items(f"{path}.components", row.get("components"), 5, least=1)
        kinds = [c.get("type") if isinstance(c, dict) else None for c in children]
        if any(k in SELECTS for k in kinds) and len(children) != 1:
            self.bad(f"{path}.components", "a row with a select must hold exactly that select")
        for i, child in enumerate(children):
            where = f"{path}.components.{i}"
            kind = kinds[i]
            if kind == 2:
                self.button(where, child)
            elif kind in SELECTS:
                self.select(where, child)
            else:
                self.bad(f"{where}.type", f"a message row holds buttons or a select, not {kind!r}")

    def v2_component(self, path: str, component: Any) -> int:
        """A Components V2 tree: return how many components it holds (rows included)."""
        if not isinstance(component, dict):
            self.bad(path, "must be an object")
            return 0
        kind = component.get("type")
        if kind == 1:
            self.action_row(path, component)
            return 1 + len(component.get("components") or [])
        if kind not in V2_TYPES:
            self.bad(f"{path}.type", f"unknown component type {kind!r}")
            return 1
        if kind == 10:
            self.string(f"{path}.content", component.get("content"), 4000, required=True, least=1)
        count = 1
        for key in ("components",):
            for i, child in enumerate(component.get(key) or []):
                count += self.v2_component(f"{path}.{key}.{i}", child)
        if isinstance(component.get("accessory"), dict):
            accessory = component["accessory"]
            if accessory.get("type") == 2:
                self.button(f"{path}.accessory", accessory)
            count += 1
        return count

    def allowed_mentions(self, path: str, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            self.bad(path, "must be an object")
            return
        if extra := set(value) - ALLOWED_MENTION_KEYS:
            self.bad(path, f"unknown keys {sorted(extra)}")
        parse = self.items(f"{path}.parse", value.get("parse"), 3)
        for i, kind in enumerate(parse):
            if kind not in MENTION_TYPES:
                self.bad(
                    f"{path}.parse.{i}", f"must be one of {sorted(MENTION_TYPES)}, got {kind!r}"
                )
        for key in ("roles", "users"):
            ids = self.items(f"{path}.{key}", value.get(key), 100)
            if ids and key in parse:
                self.bad(path, f'parse "{key}" and a {key} list are mutually exclusive')
            for i, snowflake in enumerate(ids):
                if not str(snowflake).isdigit():
                    self.bad(f"{path}.{key}.{i}", f"must be a snowflake, got {snowflake!r}")
        if "replied_user" in value and not isinstance(value["replied_user"], bool):
            self.bad(f"{path}.replied_user", "must be a boolean")

    def message(self, payload: Any) -> None:
        if not isinstance(payload, dict):
            self.bad("(body)", "must be a JSON object")
            return
        flags = payload.get("flags") or 0
        if not isinstance(flags, int):
            self.bad("flags", "must be an integer")
            flags = 0
        v2 = bool(flags & IS_COMPONENTS_V2)
        self.string("content", payload.get("content"), 2000)
        embeds = self.items("embeds", payload.get("embeds"), 10)
        total = sum(self.embed(f"embeds.{i}", embed) for i, embed in enumerate(embeds))
        if total > 6000:
            self.bad("embeds", f"must total at most 6000 characters, got {total}")
        components = payload.get("components")
        if v2:
            if payload.get("content") or embeds:
                self.bad("flags", "with IS_COMPONENTS_V2, content and embeds must be empty")
            rows = self.items("components", components, 40)
            count = sum(self.v2_component(f"components.{i}", c) for i, c in enumerate(rows))
            if count > 40:
                self.bad("components", f"must hold at most 40 components in all, got {count}")
        else:
            rows = self.items("components", components, 5)
            for i, row in enumerate(rows):
                self.action_row(f"components.{i}", row)
        self.allowed_mentions("allowed_mentions", payload.get("allowed_mentions"))

    # -- modals ---------------------------------------------------------------------------

    def text_input(self, path: str, item: dict[str, Any], label_limit: int | None) -> None:
        self.custom_id(f"{path}.custom_id", item.get("custom_id"))
        style = item.get("style")
        if style not in (1, 2):
            self.bad(f"{path}.style", f"must be 1 (short) or 2 (paragraph), got {style!r}")
        if label_limit is not None:  # a legacy text input carries its own label
            self.string(f"{path}.label", item.get("label"), label_limit, required=True, least=1)
        elif item.get("label") is not None:
            self.string(f"{path}.label", item.get("label"), 45)
        low, high = item.get("min_length"), item.get("max_length")
        self.integer(f"{path}.min_length", low, 0, 4000)
        self.integer(f"{path}.max_length", high, 1, 4000)
        if isinstance(low, int) and isinstance(high, int) and low > high:
            self.bad(f"{path}.min_length", f"must not exceed max_length ({low} > {high})")
        value = item.get("value")
        self.string(f"{path}.value", value, 4000)
        if isinstance(value, str) and isinstance(high, int) and len(value) > high:
            self.bad(f"{path}.value", f"is longer than max_length {high}")
        self.string(f"{path}.placeholder", item.get("placeholder"), 100)
        if "required" in item and not isinstance(item["required"], bool):
            self.bad(f"{path}.required", "must be a boolean")

    def modal_component(self, path: str, component: Any) -> None:
        if not isinstance(component, dict):
            self.bad(path, "must be an object")
            return
        kind = component.get("type")
        if kind == 18:
            self.string(f"{path}.label", component.get("label"), 45, required=True, least=1)
            self.string(f"{path}.description", component.get("description"), 100)
            inner = component.get("component")
            where = f"{path}.component"
            if not isinstance(inner, dict):
                self.bad(where, "a label must wrap one component")
            elif inner.get("type") == 4:
                self.text_input(where, inner, None)
            elif inner.get("type") in SELECTS:
                self.select(where, inner)
            else:
                what = f"a label wraps a text input or a select, not {inner.get('type')!r}"
                self.bad(f"{where}.type", what)
        elif kind == 1:
            children = self.items(f"{path}.components", component.get("components"), 1, least=1)
            for i, child in enumerate(children):
                where = f"{path}.components.{i}"
                if isinstance(child, dict) and child.get("type") == 4:
                    self.text_input(where, child, 45)
                else:
                    self.bad(f"{where}.type", "a modal's action row holds one text input")
        elif kind == 10:
            self.string(f"{path}.content", component.get("content"), 4000, required=True, least=1)
        else:
            self.bad(f"{path}.type", f"must be one of {sorted(MODAL_TOP_LEVEL)}, got {kind!r}")

    def modal(self, data: Any) -> None:
        if not isinstance(data, dict):
            self.bad("(data)", "must be a JSON object")
            return
        self.custom_id("custom_id", data.get("custom_id"))
        self.string("title", data.get("title"), 45, required=True, least=1)
        components = self.items("components", data.get("components"), 5, least=1)
        for i, component in enumerate(components):
            self.modal_component(f"components.{i}", component)


def check_message(payload: Any) -> list[str]:
    """Problems with a message create/edit, follow-up or callback `data` (empty when fine)."""
    checker = Checker()
    checker.message(payload)
    return checker.errors


def check_modal(data: Any) -> list[str]:
    """Problems with a modal (the `data` of a type 9 interaction callback)."""
    checker = Checker()
    checker.modal(data)
    return checker.errors


def errors_object(problems: list[str]) -> dict[str, Any]:
    """Nest `path: what` problems the way Discord's 50035 `errors` object does, so that
    discord.py's HTTPException lists them as `In <path>: <what>`."""
    out: dict[str, Any] = {}
    for problem in problems:
        path, _, what = problem.partition(": ")
        node = out
        for key in path.split("."):
            node = node.setdefault(key, {})
        node.setdefault("_errors", []).append({"code": "BASE_TYPE_INVALID", "message": what})
    return out
