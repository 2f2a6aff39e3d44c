"""Case IDs: time-ordered (so the newest sort last and cursors are cheap) and unguessable."""

from __future__ import annotations

import secrets
import time


def new_case_id() -> str:
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"
