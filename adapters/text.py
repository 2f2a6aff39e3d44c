"""Cutting workflow text to a platform's limits, shared by the adapters."""

from __future__ import annotations

from collections.abc import Callable

ELLIPSIS = "…"


def cut(text: str, limit: int, escape: Callable[[str], str]) -> tuple[str, bool]:
    """`escape(text)`, cut (on a character of `text`, so never inside an escape) to at
    most `limit` characters with an ellipsis; and whether anything was cut."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped, False
    low, high = 0, min(len(text), limit)
    while low < high:  # the longest prefix whose escaped form leaves room for the ellipsis
        mid = (low + high + 1) // 2
        if len(escape(text[:mid])) + len(ELLIPSIS) <= limit:
            low = mid
        else:
            high = mid - 1
    return escape(text[:low]) + ELLIPSIS, True


def plain(text: str, limit: int) -> str:
    """Text shown as it is (a platform's plain-text field), cut to `limit`."""
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS
