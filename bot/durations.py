"""Durations as policy authors write them: `90s`, `15m`, `4h`, `2d` (or plain seconds)."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PATTERN = re.compile(r"^\s*(\d{1,7})\s*([smhdw])\s*$")


def parse_duration(text: str | int) -> int:
    """Seconds in `text`; raises ValueError with an example when it is not a duration."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return text
    match = _PATTERN.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration: write it like 90s, 15m, 4h or 2d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
