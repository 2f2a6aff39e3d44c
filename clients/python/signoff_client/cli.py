"""`signoff-client`: the client kit's command line (`signoff-client mcp`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="signoff-client", description="The workflow's side of Signoff."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    commands.add_parser(
        "mcp",
        help="run an MCP server over stdio (tools request_approval and get_case)",
        description=(
            "An MCP server over stdio for agents: request_approval asks a person and "
            "waits for the decision, get_case reads a case. Connects with SIGNOFF_URL, "
            "SIGNOFF_SECRET (or SIGNOFF_TOKEN) and SIGNOFF_SOURCE."
        ),
    )
    found = parser.parse_args(argv)
    if found.command == "mcp":
        try:
            from signoff_client import mcp
        except ImportError as exc:
            print(
                f"signoff-client mcp needs the MCP SDK ({exc}): pip install 'signoff-client[mcp]'",
                file=sys.stderr,
            )
            return 2
        return mcp.serve()
    parser.error(f"unknown command {found.command!r}")  # pragma: no cover - argparse refuses it


if __name__ == "__main__":
    sys.exit(main())
