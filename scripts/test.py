"""Run the whole test suite, then the lint and type checks (`python -m scripts.test`)."""

from __future__ import annotations

import subprocess
import sys


def main() -> int:
    checks = [
        [sys.executable, "-m", "pytest", *sys.argv[1:]],
        [sys.executable, "-m", "ruff", "check", "."],
        [sys.executable, "-m", "ruff", "format", "--check", "."],
        [sys.executable, "-m", "mypy"],
    ]
    failed = []
    for command in checks:
        print("$", " ".join(command[2:]), flush=True)
        if subprocess.call(command) != 0:  # noqa: S603 - our own fixed commands
            failed.append(command[2])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
