"""Pydantic's validation errors as sentences that say what is allowed.

pydantic says "String should match pattern '^[a-z0-9]...$'"; a person needs "must be 1
to 64 lower-case letters, digits or _ . - (got 'Bad Kind')". Each pattern's sentence is
written once, beside the type that enforces it (`rule`), and serves as the type's
description in the OpenAPI document too; every other kind of error (missing, too long,
out of range, wrong type, unknown field) has one sentence here, keyed by pydantic's
error `type`, filled from the limits the error carries. The case body (HTTP and
`signoff policy explain`), the policy file and the settings all speak through `sentence`.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import ErrorDetails

PATTERN_RULES: dict[str, str] = {}
SHOWN_CHARS = 40


def rule(pattern: str, allowed: str) -> str:
    """Register what `pattern` allows, in words that follow "must be"; returns the words."""
    PATTERN_RULES[pattern] = allowed
    return allowed


def shown(value: Any) -> str:
    """A value as JSON would spell it, short enough to quote back."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if len(value) > SHOWN_CHARS:
            return f"{len(value)} characters"
        return repr(value)
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _limit(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _count(n: Any, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _things(ctx: dict[str, Any]) -> tuple[str, str]:
    return ("entry", "entries") if ctx.get("field_type") == "Dictionary" else ("item", "items")


def _actual(ctx: dict[str, Any], value: Any) -> str:
    found = ctx.get("actual_length")
    if found is None and isinstance(value, dict | list | tuple):
        found = len(value)
    return f" (got {found})" if found is not None else ""


def sentence(error: ErrorDetails, *, quote: bool = True) -> str:
    """What is wrong with the value at `error["loc"]`, and what would be allowed.

    With `quote`, the sentence ends by quoting the value (shortened); settings, which
    may be secrets, are never quoted."""
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    value = error.get("input")
    got = f" (got {shown(value)})" if quote else ""
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "json_invalid":
        return f"is not valid JSON: {ctx.get('error', 'cannot parse it')}"
    if kind in ("model_type", "model_attributes_type", "dict_type", "mapping_type"):
        return f"must be a JSON object{got}"
    if kind in ("list_type", "tuple_type", "set_type"):
        return f"must be a list{got}"
    if kind in ("string_type", "string_sub_type"):
        return f"must be text{got}"
    if kind in ("int_type", "int_parsing", "int_from_float", "int_parsing_size"):
        return f"must be a whole number{got}"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number{got}"
    if kind == "finite_number":
        return f"must be a finite number{got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false{got}"
    if kind in ("literal_error", "enum"):
        return f"must be {ctx.get('expected', '')}{got}"
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return "must not be empty"
        return f"must be at least {_count(ctx.get('min_length'), 'character', 'characters')}"
    if kind == "string_too_long":
        size = f" (got {len(value)})" if isinstance(value, str) and quote else ""
        return f"must be at most {_count(ctx.get('max_length'), 'character', 'characters')}{size}"
    if kind == "too_short":
        one, many = _things(ctx)
        return f"must have at least {_count(ctx.get('min_length'), one, many)}" + (
            _actual(ctx, value) if quote else ""
        )
    if kind == "too_long":
        one, many = _things(ctx)
        return f"must have at most {_count(ctx.get('max_length'), one, many)}" + (
            _actual(ctx, value) if quote else ""
        )
    for bound, words in (
        ("ge", "at least"),
        ("gt", "more than"),
        ("le", "at most"),
        ("lt", "less than"),
    ):
        if bound in ctx and kind.startswith(("greater_than", "less_than")):
            return f"must be {words} {_limit(ctx[bound])}{got}"
    if kind == "string_pattern_mismatch":
        allowed = PATTERN_RULES.get(str(ctx.get("pattern")))
        if allowed is not None:
            return f"must be {allowed}{got}"
        return f"must match the pattern {ctx.get('pattern')}{got}"
    if kind in ("datetime_type", "datetime_parsing", "datetime_from_date_parsing"):
        return f"must be a date and time in ISO 8601, such as 2026-12-04T09:30:00Z{got}"
    if kind in ("date_type", "date_parsing", "date_from_datetime_parsing"):
        return f"must be a date in ISO 8601, such as 2026-12-24{got}"
    if kind == "value_error":
        return str(ctx.get("error") or error["msg"].removeprefix("Value error, "))
    return str(error["msg"])


def dotted(loc: Sequence[Any], *, brackets: bool = False) -> str:
    """`evidence.0.url` (or, with `brackets`, `rules[0].lane`, as YAML authors count)."""
    out = ""
    for part in loc:
        if brackets and isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [m for m in get_args(tp) if m is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _model_at(model: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = next(
                (f for name, f in tp.model_fields.items() if part in (name, f.alias)), None
            )
            if field is None:
                return None
            tp = field.annotation
        elif get_origin(tp) is list and isinstance(part, int):
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def explain(
    error: ErrorDetails, model: type[BaseModel] | None = None, *, quote: bool = True
) -> tuple[tuple[Any, ...], str]:
    """(where, sentence) for one error of validating `model`.

    An unknown field names the fields that are allowed there (and the likeliest one
    meant); a bad mapping key is reported at its mapping, about its key."""
    loc = tuple(error.get("loc", ()))
    message = sentence(error, quote=quote)
    if loc and loc[-1] == "[key]":
        key = str(loc[-2])
        label = repr(key) if len(key) <= SHOWN_CHARS else f"{key[:SHOWN_CHARS]!r}..."
        return loc[:-2], f"key {label}: {message.removesuffix(f' (got {shown(key)})')}"
    if error["type"] == "extra_forbidden" and model is not None and loc:
        found = _model_at(model, loc[:-1])
        if found is not None:
            names = field_names(found)
            close = difflib.get_close_matches(str(loc[-1]), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            message = f"unknown field{hint}; the fields here are {', '.join(names)}"
    return loc, message
