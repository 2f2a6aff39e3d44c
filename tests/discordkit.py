"""Discord's message and modal limits, checked by hand (independently of discord.py, so that
what our adapter or discord.py's builders miss is caught): the test Discord server runs every
message, edit, follow-up, webhook message and interaction callback through
`message_problems` / `modal_problems` and answers 400 50035 "Invalid Form Body" with the
`errors` tree Discord would send (`errors_tree`).

Every bound comes from tests/discord_limits.py (`LIMITS`), where each carries the URL of
the page that documents it and the error code and message Discord answers. Lengths are
counted in code points, as Discord does (https://github.com/discord/discord-api-docs/issues/1315).

A problem reads `<path>: <what>` (`str(problem)`), where the path is the JSON path with `.`
between keys and list indexes (`embeds.0.fields.3.value`), as Discord's `errors` object
nests them; `code` and `message` are what Discord puts under `_errors` there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from tests.discord_limits import AUTO_ARCHIVE, LIMITS, Limit, most

IS_COMPONENTS_V2 = 1 << 15
BUTTON_STYLES = {1, 2, 3, 4, 5}
LINK = 5
SELECTS = {3, 5, 6, 7, 8}  # string, user, role, mentionable, channel
MENTION_TYPES = {"roles", "users", "everyone"}
ALLOWED_MENTION_KEYS = {"parse", "roles", "users", "replied_user"}
V2_TYPES = {1, 9, 10, 11, 12, 13, 14, 17}  # row, section, text, thumbnail, gallery, file, ...
MODAL_TOP_LEVEL = {1, 10, 18}  # legacy action row, text display, label

REQUIRED = {"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}


@dataclass(frozen=True)
class Problem:
    path: str
    what: str  # in our words, for test failures
    code: str = "BASE_TYPE_INVALID"  # Discord's
    message: str = "Invalid Form Body"  # Discord's

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"

    def under(self, prefix: str) -> Problem:
        return replace(self, path=f"{prefix}.{self.path}")


class Checker:
    """Collects a `Problem` for every limit a payload breaks."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.custom_ids: dict[str, str] = {}  # custom_id -> the path that used it first

    @property
    def errors(self) -> list[str]:
        return [str(p) for p in self.problems]

    def bad(self, path: str, what: str, error: dict[str, str] | None = None) -> None:
        error = error or {"code": "BASE_TYPE_INVALID", "message": what}
        self.problems.append(Problem(path, what, error["code"], error["message"]))

    def broke(self, path: str, limit: Limit, what: str, got: Any = None) -> None:
        self.bad(path, what, limit.error(got))

    def string(self, path: str, value: Any, name: str, required: bool = False) -> None:
        limit = LIMITS[name]
        least = limit.least
        if value is None:
            if required:
                self.bad(path, "is required", REQUIRED)
        elif not isinstance(value, str):
            error = {"code": "BASE_TYPE_STRING", "message": "Could not interpret value as string."}
            self.bad(path, f"must be a string, got {type(value).__name__}", error)
        elif (required or least > 0) and not value.strip():
            # Embed text is trimmed first (EMBED in discord_limits), so blank is missing;
            # elsewhere a blank required string is refused too (the stricter reading).
            self.bad(path, "must not be empty", REQUIRED if least == 0 else limit.error())
        elif len(value) < least:
            self.broke(path, limit, f"must be at least {least} characters, got {len(value)}")
        elif len(value) > limit.most:
            self.broke(path, limit, f"must be at most {limit.most} characters, got {len(value)}")

    def integer(self, path: str, value: Any, name: str, required: bool = False) -> None:
        limit = LIMITS[name]
        if value is None:
            if required:
                self.bad(path, "is required", REQUIRED)
        elif not isinstance(value, int) or isinstance(value, bool):
            error = {"code": "NUMBER_TYPE_COERCE", "message": "Value is not int."}
            self.bad(path, f"must be an integer, got {type(value).__name__}", error)
        elif not limit.least <= value <= limit.most:
            what = f"must be between {limit.least} and {limit.most}, got {value}"
            self.broke(path, limit, what, value)

    def items(self, path: str, value: Any, name: str, required: bool = False) -> list[Any]:
        limit = LIMITS[name]
        if value is None:
            if required and limit.least > 0:
                self.bad(path, "is required", REQUIRED)
            return []
        if not isinstance(value, list):
            error = {"code": "BASE_TYPE_ARRAY", "message": "Must be an array."}
            self.bad(path, f"must be a list, got {type(value).__name__}", error)
            return []
        if len(value) > limit.most:
            self.broke(path, limit, f"must have at most {limit.most} items, got {len(value)}")
        elif len(value) < limit.least:
            self.broke(path, limit, f"must have at least {limit.least} items, got {len(value)}")
        return value

    def forbidden(self, path: str, value: Any, name: str) -> None:
        if value is not None and value is not False:
            self.broke(path, LIMITS[name], "is not allowed here")

    def custom_id(self, path: str, value: Any, name: str = "custom_id") -> None:
        self.string(path, value, name, required=True)
        if isinstance(value, str) and value:
            if value in self.custom_ids:
                self.bad(
                    path,
                    f"duplicates the custom_id at {self.custom_ids[value]}: {value!r}",
                    {
                        "code": "COMPONENT_CUSTOM_ID_DUPLICATED",
                        "message": "Component custom id cannot be duplicated",
                    },
                )
            else:
                self.custom_ids[value] = path

    # -- messages -------------------------------------------------------------------------

    def embed(self, path: str, embed: Any) -> int:
        """Check one embed; return how many characters count toward the 6000 total."""
        if not isinstance(embed, dict):
            self.bad(path, "must be an object")
            return 0
        total = 0
        for key in ("title", "description"):
            self.string(f"{path}.{key}", embed.get(key), f"embed.{key}")
            total += len(embed.get(key) or "")
        self.string(f"{path}.url", embed.get("url"), "embed.url")
        if "colour" in embed:
            self.bad(f"{path}.colour", "is not a field (Discord spells it color)")
        self.integer(f"{path}.color", embed.get("color"), "embed.color")
        for i, item in enumerate(self.items(f"{path}.fields", embed.get("fields"), "embed.fields")):
            where = f"{path}.fields.{i}"
            if not isinstance(item, dict):
                self.bad(where, "must be an object")
                continue
            self.string(f"{where}.name", item.get("name"), "embed.field.name", required=True)
            self.string(f"{where}.value", item.get("value"), "embed.field.value", required=True)
            if "inline" in item and not isinstance(item["inline"], bool):
                self.bad(f"{where}.inline", "must be a boolean")
            total += len(item.get("name") or "") + len(item.get("value") or "")
        for key, sub in (("footer", "text"), ("author", "name")):
            part = embed.get(key)
            if part is None:
                continue
            if not isinstance(part, dict):
                self.bad(f"{path}.{key}", "must be an object")
                continue
            self.string(f"{path}.{key}.{sub}", part.get(sub), f"embed.{key}.{sub}", required=True)
            total += len(part.get(sub) or "")
        return total

    def button(self, path: str, button: dict[str, Any]) -> None:
        style = button.get("style")
        if style is None:
            self.bad(f"{path}.style", "is required", REQUIRED)
        elif style not in BUTTON_STYLES:
            self.bad(f"{path}.style", f"must be one of {sorted(BUTTON_STYLES)}, got {style!r}")
        self.string(f"{path}.label", button.get("label"), "button.label")
        if not button.get("label") and not button.get("emoji"):
            self.bad(path, "a button needs a label or an emoji")
        if style == LINK:
            self.string(f"{path}.url", button.get("url"), "button.url", required=True)
            if button.get("custom_id") is not None:
                self.bad(f"{path}.custom_id", "a link button cannot have a custom_id")
        else:
            self.custom_id(f"{path}.custom_id", button.get("custom_id"))
            if button.get("url") is not None:
                self.bad(f"{path}.url", "only a link button (style 5) has a url")

    def select(self, path: str, select: dict[str, Any], in_modal: bool = False) -> None:
        self.custom_id(f"{path}.custom_id", select.get("custom_id"))
        self.string(f"{path}.placeholder", select.get("placeholder"), "select.placeholder")
        if in_modal:
            self.forbidden(f"{path}.disabled", select.get("disabled"), "label.select.disabled")
        count: int | None = None
        if select.get("type") == 3:
            options = self.items(
                f"{path}.options", select.get("options"), "select.options", required=True
            )
            count = len(options)
            values: set[str] = set()
            defaults = 0
            for i, option in enumerate(options):
                where = f"{path}.options.{i}"
                if not isinstance(option, dict):
                    self.bad(where, "must be an object")
                    continue
                self.string(f"{where}.label", option.get("label"), "option.label", required=True)
                self.string(f"{where}.value", option.get("value"), "option.value", required=True)
                self.string(f"{where}.description", option.get("description"), "option.description")
                value = option.get("value")
                if isinstance(value, str):
                    if value in values:
                        self.bad(
                            where,
                            f"duplicates another option's value {value!r}",
                            {
                                "code": "SELECT_COMPONENT_OPTION_VALUE_DUPLICATED",
                                "message": "The specified option value is already used",
                            },
                        )
                    values.add(value)
                defaults += bool(option.get("default"))
            if defaults > (select.get("max_values") or 1):
                self.bad(f"{path}.options", f"{defaults} default options exceed max_values")
        low, high = select.get("min_values"), select.get("max_values")
        before = len(self.problems)
        self.integer(f"{path}.min_values", low, "select.min_values")
        self.integer(f"{path}.max_values", high, "select.max_values")
        if len(self.problems) > before:
            return  # out of range already: Discord reports that alone
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
        children = self.items(
            f"{path}.components", row.get("components"), "row.components", required=True
        )
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
            self.string(
                f"{path}.content", component.get("content"), "text_display.content", required=True
            )
        count = 1
        for i, child in enumerate(component.get("components") or []):
            count += self.v2_component(f"{path}.components.{i}", child)
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
        parse = self.items(f"{path}.parse", value.get("parse"), "allowed_mentions.parse")
        for i, kind in enumerate(parse):
            if kind not in MENTION_TYPES:
                self.bad(
                    f"{path}.parse.{i}", f"must be one of {sorted(MENTION_TYPES)}, got {kind!r}"
                )
        for key in ("roles", "users"):
            ids = self.items(f"{path}.{key}", value.get(key), f"allowed_mentions.{key}")
            if ids and key in parse:
                self.bad(
                    path,
                    f'parse "{key}" and a {key} list are mutually exclusive',
                    {
                        "code": "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                        "message": f'parse:["{key}"] and {key}: [ids...] are mutually exclusive.',
                    },
                )
            for i, snowflake in enumerate(ids):
                if not str(snowflake).isdigit():
                    error = {"code": "NUMBER_TYPE_COERCE", "message": "Value is not snowflake."}
                    self.bad(f"{path}.{key}.{i}", f"must be a snowflake, got {snowflake!r}", error)
        if "replied_user" in value and not isinstance(value["replied_user"], bool):
            self.bad(f"{path}.replied_user", "must be a boolean")

    def nonce(self, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            error = {
                "code": "NONCE_TYPE_INVALID_TYPE",
                "message": "This field must be a string or integer.",
            }
            self.bad("nonce", f"must be a string or an integer, got {type(value).__name__}", error)
        elif len(str(value)) > most("nonce"):
            what = f"must be at most {most('nonce')} characters, got {len(str(value))}"
            self.broke("nonce", LIMITS["nonce"], what)

    def attachments(self, value: Any) -> None:
        for i, item in enumerate(value if isinstance(value, list) else []):
            if isinstance(item, dict):
                self.string(
                    f"attachments.{i}.description",
                    item.get("description"),
                    "attachment.description",
                )

    def message(self, payload: Any) -> None:
        if not isinstance(payload, dict):
            self.bad("(body)", "must be a JSON object")
            return
        flags = payload.get("flags") or 0
        if not isinstance(flags, int):
            self.bad("flags", "must be an integer")
            flags = 0
        v2 = bool(flags & IS_COMPONENTS_V2)
        self.string("content", payload.get("content"), "content")
        self.nonce(payload.get("nonce"))
        self.items("sticker_ids", payload.get("sticker_ids"), "sticker_ids")
        self.attachments(payload.get("attachments"))
        embeds = self.items("embeds", payload.get("embeds"), "embeds")
        total = sum(self.embed(f"embeds.{i}", embed) for i, embed in enumerate(embeds))
        if total > most("embed.total"):
            what = f"must total at most {most('embed.total')} characters, got {total}"
            self.broke("embeds", LIMITS["embed.total"], what)
        components = payload.get("components")
        if v2:
            if payload.get("content") or embeds:
                self.bad("flags", "with IS_COMPONENTS_V2, content and embeds must be empty")
            rows = self.items("components", components, "components.v2.total")
            count = sum(self.v2_component(f"components.{i}", c) for i, c in enumerate(rows))
            if count > most("components.v2.total") and len(rows) <= most("components.v2.total"):
                cap = most("components.v2.total")
                what = f"must hold at most {cap} components in all, got {count}"
                self.broke("components", LIMITS["components.v2.total"], what)
        else:
            rows = self.items("components", components, "components.rows")
            for i, row in enumerate(rows):
                self.action_row(f"components.{i}", row)
        self.allowed_mentions("allowed_mentions", payload.get("allowed_mentions"))

    # -- modals ---------------------------------------------------------------------------

    def text_input(self, path: str, item: dict[str, Any], in_label: bool) -> None:
        self.custom_id(f"{path}.custom_id", item.get("custom_id"))
        style = item.get("style")
        if style not in (1, 2):
            self.bad(f"{path}.style", f"must be 1 (short) or 2 (paragraph), got {style!r}")
        if in_label:  # the Label carries the label now; a text input's own is refused
            self.forbidden(f"{path}.label", item.get("label"), "label.text_input.label")
        else:  # a legacy text input in an action row carries its own label
            self.string(f"{path}.label", item.get("label"), "text_input.label", required=True)
        low, high = item.get("min_length"), item.get("max_length")
        before = len(self.problems)
        self.integer(f"{path}.min_length", low, "text_input.min_length")
        self.integer(f"{path}.max_length", high, "text_input.max_length")
        in_range = len(self.problems) == before
        if in_range and isinstance(low, int) and isinstance(high, int) and low > high:
            self.bad(f"{path}.min_length", f"must not exceed max_length ({low} > {high})")
        value = item.get("value")
        self.string(f"{path}.value", value, "text_input.value")
        if isinstance(value, str) and isinstance(high, int) and len(value) > high:
            error = LIMITS["text_input.value"].error()
            error["message"] = f"Must be {high} or fewer in length."
            self.bad(f"{path}.value", f"is longer than max_length {high}", error)
        self.string(f"{path}.placeholder", item.get("placeholder"), "text_input.placeholder")
        if "required" in item and not isinstance(item["required"], bool):
            self.bad(f"{path}.required", "must be a boolean")

    def modal_component(self, path: str, component: Any) -> None:
        if not isinstance(component, dict):
            self.bad(path, "must be an object")
            return
        kind = component.get("type")
        if kind == 18:
            self.string(f"{path}.label", component.get("label"), "label.label", required=True)
            self.string(f"{path}.description", component.get("description"), "label.description")
            inner = component.get("component")
            where = f"{path}.component"
            if not isinstance(inner, dict):
                self.bad(where, "a label must wrap one component", REQUIRED)
            elif inner.get("type") == 4:
                self.text_input(where, inner, in_label=True)
            elif inner.get("type") in SELECTS:
                self.select(where, inner, in_modal=True)
            else:
                what = f"a label wraps a text input or a select, not {inner.get('type')!r}"
                self.bad(f"{where}.type", what)
        elif kind == 1:
            children = component.get("components")
            if not isinstance(children, list) or len(children) != 1:
                self.bad(f"{path}.components", "a modal's action row holds one text input")
                children = children if isinstance(children, list) else []
            for i, child in enumerate(children):
                where = f"{path}.components.{i}"
                if isinstance(child, dict) and child.get("type") == 4:
                    self.text_input(where, child, in_label=False)
                else:
                    self.bad(f"{where}.type", "a modal's action row holds one text input")
        elif kind == 10:
            self.string(
                f"{path}.content", component.get("content"), "text_display.content", required=True
            )
        else:
            self.bad(f"{path}.type", f"must be one of {sorted(MODAL_TOP_LEVEL)}, got {kind!r}")

    def modal(self, data: Any) -> None:
        if not isinstance(data, dict):
            self.bad("(data)", "must be a JSON object")
            return
        self.custom_id("custom_id", data.get("custom_id"), "modal.custom_id")
        self.string("title", data.get("title"), "modal.title", required=True)
        components = self.items(
            "components", data.get("components"), "modal.components", required=True
        )
        for i, component in enumerate(components):
            self.modal_component(f"components.{i}", component)


def message_problems(payload: Any) -> list[Problem]:
    """Problems with a message create/edit, follow-up, webhook message or callback `data`."""
    checker = Checker()
    checker.message(payload)
    return checker.problems


def modal_problems(data: Any) -> list[Problem]:
    """Problems with a modal (the `data` of a type 9 interaction callback)."""
    checker = Checker()
    checker.modal(data)
    return checker.problems


def thread_problems(body: Any) -> list[Problem]:
    """Problems with the body of Start Thread from Message."""
    checker = Checker()
    if not isinstance(body, dict):
        checker.bad("(body)", "must be a JSON object")
        return checker.problems
    checker.string("name", body.get("name"), "thread.name", required=True)
    duration = body.get("auto_archive_duration")
    if duration is not None and duration not in AUTO_ARCHIVE:
        checker.bad("auto_archive_duration", f"must be one of {sorted(AUTO_ARCHIVE)}")
    return checker.problems


def check_message(payload: Any) -> list[str]:
    """`message_problems` as `path: what` lines (empty when fine)."""
    return [str(p) for p in message_problems(payload)]


def check_modal(data: Any) -> list[str]:
    """`modal_problems` as `path: what` lines (empty when fine)."""
    return [str(p) for p in modal_problems(data)]


def errors_tree(problems: list[Problem]) -> dict[str, Any]:
    """Nest problems the way Discord's 50035 `errors` object does, with Discord's codes and
    messages, so that discord.py's HTTPException lists them as `In <path>: <message>`."""
    out: dict[str, Any] = {}
    for problem in problems:
        node = out
        for key in problem.path.split("."):
            node = node.setdefault(key, {})
        node.setdefault("_errors", []).append({"code": problem.code, "message": problem.message})
    return out


def errors_object(problems: list[str]) -> dict[str, Any]:
    """Nest `path: what` lines (checks made outside this module) the same way."""
    out: list[Problem] = []
    for line in problems:
        path, _, what = line.partition(": ")
        out.append(Problem(path, what, "BASE_TYPE_INVALID", what))
    return errors_tree(out)
