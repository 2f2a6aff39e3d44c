"""`signoff-client mcp` against a real server, driven by the MCP SDK's own stdio client:
the server runs as `python -m signoff_client mcp`, as an MCP host would start it."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent
from serverkit import REVIEWER, SECRET, Reviewer, Server, free_port

from signoff_client import AsyncSignoff
from signoff_client.mcp import build_server

COMMAND = [sys.executable, "-m", "signoff_client", "mcp"]
#: the test policy sends confidence under 0.90 to the review lane (alice, on the web)
UNSURE = 0.5


@contextlib.asynccontextmanager
async def connected(server: Server, tmp_path: Path) -> AsyncIterator[ClientSession]:
    """A session with `signoff-client mcp`, started over stdio as a host starts it."""
    params = StdioServerParameters(
        command=COMMAND[0],
        args=COMMAND[1:],
        env={"SIGNOFF_URL": server.url, "SIGNOFF_SECRET": SECRET, "SIGNOFF_SOURCE": "default"},
    )
    with (tmp_path / "mcp-stderr.log").open("w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, read_timeout_seconds=60) as session,
        ):
            await session.initialize()
            yield session


async def decide_when_open(
    client: AsyncSignoff, reviewer: Reviewer, title: str, action: str, **form: Any
) -> str:
    """Find the open case called `title` (the tool call is blocked on it meanwhile), have
    the reviewer decide it in the web inbox half a second later; its id."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [c for c in (await client.cases(status="pending")).items if c.title == title]
        if found:
            reviewer.decide_later(found[0].id, 0.5, action, **form)
            return found[0].id
        await asyncio.sleep(0.1)
    raise AssertionError(f"no open case called {title!r} showed up")


def unique(title: str) -> str:
    return f"{title} ({uuid.uuid4().hex[:8]})"


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    assert result.is_error, result.structured_content
    assert result.structured_content is None
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def newest(client: AsyncSignoff) -> str | None:
    page = await client.cases(limit=1)
    return page.items[0].id if page.items else None


async def test_lists_both_tools_with_their_schemas(server: Server, tmp_path: Path) -> None:
    async with connected(server, tmp_path) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(tools) == {"request_approval", "get_case"}
    approval = tools["request_approval"].input_schema
    assert approval["type"] == "object"
    assert approval["required"] == ["title", "question"]
    props = approval["properties"]
    assert {
        "title",
        "question",
        "kind",
        "tool",
        "args",
        "editable",
        "recommendation_action",
        "confidence",
        "rationale",
        "timeout_seconds",
    } == set(props)
    assert "ctx" not in props
    assert props["title"]["maxLength"] == 300
    assert props["question"]["maxLength"] == 3000
    assert props["kind"]["default"] == "agent_tool_call"
    assert props["timeout_seconds"]["default"] == 600
    assert props["recommendation_action"]["enum"] == ["approve", "reject"]
    out = tools["request_approval"].output_schema
    assert out is not None
    assert {"case_id", "action", "approved", "args", "reason", "reviewer", "timed_out"} <= set(
        out["properties"]
    )
    assert tools["request_approval"].description
    assert "approved" in (tools["request_approval"].description or "")
    case = tools["get_case"].input_schema
    assert case["required"] == ["case_id"]
    assert tools["get_case"].output_schema is not None


async def test_an_approval_by_the_reviewer(
    server: Server, tmp_path: Path, asignoff: AsyncSignoff, reviewer: Reviewer
) -> None:
    title = unique("Post the release notes")
    async with connected(server, tmp_path) as session:
        finder = asyncio.create_task(
            decide_when_open(
                asignoff, reviewer, title, "approve", reason_code="agree_with_ai", reason="go"
            )
        )
        started = time.monotonic()
        result = await session.call_tool(
            "request_approval",
            {
                "title": title,
                "question": "May the agent post them?",
                "tool": "post_notes",
                "args": {"channel": "#releases", "draft": False},
                "confidence": UNSURE,
                "rationale": "reviewed by the release bot",
            },
        )
        case_id = await finder
        answer = structured(result)
        assert time.monotonic() - started >= 0.5  # it blocked until alice decided
        assert answer == {
            "case_id": case_id,
            "action": "approve",
            "approved": True,
            "args": {"channel": "#releases", "draft": False},
            "reason_code": "agree_with_ai",
            "reason": "go",
            "reviewer": f"web:{REVIEWER}",
            "decided_by": "human",
            "timed_out": False,
        }
        read = structured(await session.call_tool("get_case", {"case_id": case_id}))
    assert read["status"] == "approved"
    assert read["lane"] == "review"
    assert read["kind"] == "agent_tool_call"
    assert read["decided"] is True
    assert read["decision"]["action"] == "approve"
    assert read["decision"]["reviewer"] == f"web:{REVIEWER}"
    sent = (await asignoff.get(case_id)).model_extra or {}
    assert sent["case"]["proposal"] == {
        "name": "post_notes",
        "args": {"channel": "#releases", "draft": False},
        "editable": [],
    }
    assert sent["case"]["recommendation"]["confidence"] == UNSURE
    assert f"case {case_id} submitted" in (tmp_path / "mcp-stderr.log").read_text()  # logs: stderr


async def test_a_modify_returns_the_edited_args(
    server: Server, tmp_path: Path, asignoff: AsyncSignoff, reviewer: Reviewer
) -> None:
    title = unique("Refund order A-17")
    async with connected(server, tmp_path) as session:
        finder = asyncio.create_task(
            decide_when_open(
                asignoff, reviewer, title, "modify", reason="too much", args={"amount": "40"}
            )
        )
        result = await session.call_tool(
            "request_approval",
            {
                "title": title,
                "question": "Refund 400 EUR?",
                "kind": "tool_call",
                "tool": "refund",
                "args": {"order": "A-17", "amount": 400},
                "editable": ["amount"],
                "confidence": UNSURE,
            },
        )
        await finder
    answer = structured(result)
    assert answer["action"] == "modify"
    assert answer["approved"] is True
    assert answer["args"] == {"order": "A-17", "amount": 40}
    assert answer["reason"] == "too much"


async def test_a_rejection_is_not_approved_and_says_why(
    server: Server, tmp_path: Path, asignoff: AsyncSignoff, reviewer: Reviewer
) -> None:
    title = unique("Email every customer")
    async with connected(server, tmp_path) as session:
        finder = asyncio.create_task(
            decide_when_open(
                asignoff,
                reviewer,
                title,
                "reject",
                reason_code="not_authorized",
                reason="the customers opted out",
            )
        )
        result = await session.call_tool(
            "request_approval",
            {"title": title, "question": "Send it?", "kind": "tool_call", "confidence": UNSURE},
        )
        case_id = await finder
        read = structured(await session.call_tool("get_case", {"case_id": case_id}))
    answer = structured(result)
    assert answer["action"] == "reject"
    assert answer["approved"] is False
    assert answer["reason_code"] == "not_authorized"
    assert answer["reason"] == "the customers opted out"
    assert answer["args"] == {}
    assert answer["timed_out"] is False
    assert read["status"] == "rejected"
    assert read["decision"]["approved"] is False


async def test_a_timeout_is_a_reject_marked_timed_out(
    server: Server, tmp_path: Path, asignoff: AsyncSignoff
) -> None:
    title = unique("Delete the staging database")
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with connected(server, tmp_path) as session:
        started = time.monotonic()
        result = await session.call_tool(
            "request_approval",
            {
                "title": title,
                "question": "Drop it?",
                "kind": "tool_call",
                "tool": "drop_database",
                "args": {"name": "staging"},
                "confidence": UNSURE,
                "timeout_seconds": 1.5,
            },
            progress_callback=on_progress,
        )
        waited = time.monotonic() - started
        answer = structured(result)
        read = structured(await session.call_tool("get_case", {"case_id": answer["case_id"]}))
    assert 1.4 <= waited < 10
    assert answer["action"] == "reject"
    assert answer["approved"] is False
    assert answer["timed_out"] is True
    assert answer["decided_by"] == "timeout"
    assert answer["args"] == {"name": "staging"}
    # the wait reports progress at once (and every 10 s), naming the case it waits on
    assert progress[0] == (
        0.0,
        1.5,
        f"case {answer['case_id']} is waiting for a decision (lane review)",
    )
    # withdrawn, so that nobody approves what the agent no longer waits for
    assert read["status"] == "cancelled"
    assert (await asignoff.get(answer["case_id"])).status == "cancelled"


async def test_the_auto_lane_answers_at_once_and_get_case_reads_it(
    server: Server, tmp_path: Path
) -> None:
    async with connected(server, tmp_path) as session:
        answer = structured(
            await session.call_tool(
                "request_approval",
                {
                    "title": unique("Look up the weather"),
                    "question": "May the agent look it up?",
                    "kind": "tool_call",
                    "confidence": 0.99,
                },
                read_timeout_seconds=10,
            )
        )
        read = structured(await session.call_tool("get_case", {"case_id": answer["case_id"]}))
        missing = await session.call_tool("get_case", {"case_id": "esc_does_not_exist"})
    assert (answer["action"], answer["decided_by"], answer["timed_out"]) == (
        "approve",
        "policy",
        False,
    )
    assert read["case_id"] == answer["case_id"]
    assert read["status"] == "auto_decided"
    assert read["lane"] == "auto"
    assert read["decided"] is True
    assert read["decision"]["decided_by"] == "policy"
    assert "Signoff refused: no case with id 'esc_does_not_exist'" in error_text(missing)


async def test_an_open_case_reads_as_pending(
    server: Server, tmp_path: Path, asignoff: AsyncSignoff
) -> None:
    case = await asignoff.submit(
        kind="tool_call",
        title=unique("Rotate the keys"),
        question="Now?",
        recommendation={"action": "approve", "confidence": UNSURE},
    )
    async with connected(server, tmp_path) as session:
        read = structured(await session.call_tool("get_case", {"case_id": case.id}))
    assert read["status"] == "pending"
    assert read["lane"] == "review"
    assert read["decided"] is False
    assert read["decision"] is None
    assert read["due_at"]
    await asignoff.cancel(case.id)


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"title": "", "question": "Q?"}, "title"),
        ({"title": "   ", "question": "Q?"}, "title must not be empty"),
        ({"title": "x" * 301, "question": "Q?"}, "title"),
        ({"title": "T", "question": "q" * 3001}, "question"),
        ({"title": "T", "question": "Q?", "confidence": 1.5}, "confidence"),
        ({"title": "T", "question": "Q?", "kind": "Not A Kind"}, "kind"),
        ({"title": "T", "question": "Q?", "timeout_seconds": 0}, "timeout_seconds"),
        ({"title": "T", "question": "Q?", "args": {"a": 1}}, "give `tool` too"),
        (
            {"title": "T", "question": "Q?", "tool": "t", "args": {"a": 1}, "editable": ["b"]},
            "editable names arguments that args does not have: b",
        ),
    ],
)
async def test_bad_input_is_a_tool_error_and_submits_nothing(
    server: Server,
    tmp_path: Path,
    asignoff: AsyncSignoff,
    arguments: dict[str, Any],
    says: str,
) -> None:
    before = await newest(asignoff)
    async with connected(server, tmp_path) as session:
        result = await session.call_tool("request_approval", arguments, read_timeout_seconds=10)
    assert says in error_text(result)
    assert await newest(asignoff) == before


async def test_a_refusal_by_the_server_is_a_tool_error_with_its_message(
    server: Server, tmp_path: Path, asignoff: AsyncSignoff
) -> None:
    before = await newest(asignoff)
    async with connected(server, tmp_path) as session:
        result = await session.call_tool(
            "request_approval",
            {
                "title": "T",
                "question": "Q?",
                "tool": "t",
                "args": {"not a name!": 1},
                "confidence": UNSURE,
            },
            read_timeout_seconds=10,
        )
    text = error_text(result)
    assert "Signoff refused: " in text
    assert "proposal" in text
    assert await newest(asignoff) == before


async def test_a_call_the_client_abandons_withdraws_its_case(
    server: Server, tmp_path: Path, asignoff: AsyncSignoff
) -> None:
    title = unique("Ship the order")
    async with connected(server, tmp_path) as session:
        with pytest.raises(MCPError):
            await session.call_tool(
                "request_approval",
                {"title": title, "question": "Ship?", "kind": "tool_call", "confidence": UNSURE},
                read_timeout_seconds=2,
            )
        deadline = time.monotonic() + 15
        while True:
            found = [c for c in (await asignoff.cases(kind="tool_call")).items if c.title == title]
            if found and found[0].status == "cancelled":
                break
            assert time.monotonic() < deadline, f"not withdrawn: {found}"
            await asyncio.sleep(0.2)


async def test_a_refusal_while_waiting_is_a_tool_error_and_withdraws_the_case() -> None:
    """In process, against a stand-in server that takes the case, then refuses to show it."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.method == "POST" and request.url.path == "/v1/escalations":
            return httpx.Response(201, json={"id": "c1", "status": "pending", "lane": "review"})
        if request.method == "GET":
            return httpx.Response(403, json={"error": "forbidden", "message": "not your case"})
        return httpx.Response(200, json={"id": "c1", "status": "cancelled"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    async with (
        http,
        AsyncSignoff("http://signoff.test", secret=SECRET, retries=0, http=http) as client,
        Client(build_server(client)) as session,
    ):
        result = await session.call_tool("request_approval", {"title": "T", "question": "Q?"})
    assert "Signoff refused: not your case" in error_text(result)
    assert seen == [
        "POST /v1/escalations",
        "GET /v1/escalations/c1",
        "POST /v1/escalations/c1/cancel",
    ]


async def test_an_unreachable_server_is_a_tool_error() -> None:
    async with (
        AsyncSignoff(f"http://127.0.0.1:{free_port()}", secret=SECRET, retries=0) as client,
        Client(build_server(client)) as session,
    ):
        result = await session.call_tool("request_approval", {"title": "T", "question": "Q?"})
    assert "Signoff could not answer: cannot reach http://127.0.0.1:" in error_text(result)


def test_without_settings_it_says_so_on_stderr_only(tmp_path: Path) -> None:
    done = subprocess.run(
        COMMAND,
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert "SIGNOFF_URL" in done.stderr
