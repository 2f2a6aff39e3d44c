"""`signoff-client mcp`: an MCP server over stdio (the official `mcp` SDK, 2.x) through
which an agent asks a person before it acts.

Tools:

- `request_approval` submits a case (with a `proposal` when `tool` is given), waits
  for the decision by long-polling, and returns what was decided: action, approved,
  args (the reviewer's edit for a modify), reason, reviewer. When `timeout_seconds`
  pass first the answer is the safe default, a reject marked `timed_out`, and the
  case is withdrawn (cancelled), as it is when the MCP client abandons the call.
- `get_case` reads a case: status, lane, the decision if there is one.

The connection comes from SIGNOFF_URL, SIGNOFF_SECRET (or SIGNOFF_TOKEN), as for
`AsyncSignoff`, and SIGNOFF_SOURCE (default `default`). stdout carries the protocol
only; logs go to stderr.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field
from typing_extensions import TypedDict  # pydantic needs it for nested ones below 3.12

from signoff_client._core import VERSION
from signoff_client.aio import AsyncSignoff
from signoff_client.errors import SignoffError
from signoff_client.models import Case, Decision

log = logging.getLogger("signoff_client.mcp")

#: the server's bounds (bot/schemas.py, CaseIn and Proposal)
MAX_TITLE, MAX_QUESTION, MAX_RATIONALE = 300, 3000, 10_000
MAX_TOOL_NAME, MAX_ARGS = 200, 50
#: how long one request_approval may wait: a day (the lane's SLA may end it sooner)
MAX_WAIT = 86_400.0
#: while waiting, a progress notification this often (for clients that asked for them)
HEARTBEAT = 10.0
KIND_HELP = "the case's kind, as the policy names it: 1-64 of a-z 0-9 _ . -"

INSTRUCTIONS = (
    "Signoff asks a person to approve what you are about to do. Call request_approval "
    "before an action that needs a human's approval and act only if `approved` is true, "
    "with the returned `args` (a reviewer may have edited them). A rejection or a "
    "timeout (`timed_out`) means: do not act."
)


class DecisionSummary(TypedDict):
    action: Literal["approve", "reject", "modify"]
    approved: bool
    args: dict[str, Any] | None
    reason_code: str | None
    reason: str | None
    reviewer: str | None
    decided_by: str


class ApprovalResult(TypedDict):
    case_id: str
    action: Literal["approve", "reject", "modify"]
    approved: bool
    args: dict[str, Any]
    reason_code: str | None
    reason: str | None
    reviewer: str | None
    decided_by: str
    timed_out: bool


class CaseSummary(TypedDict):
    case_id: str
    status: str
    lane: str | None
    kind: str | None
    title: str | None
    due_at: str | None
    decided: bool
    decision: DecisionSummary | None


def _text(name: str, value: str, limit: int) -> str:
    if not value.strip():
        raise ToolError(f"{name} must not be empty")
    if len(value) > limit:
        raise ToolError(f"{name} must be at most {limit} characters (got {len(value)})")
    if "\x00" in value:
        raise ToolError(f"{name} must not contain NUL characters")
    return value


def _refused(exc: SignoffError) -> ToolError:
    """The server's refusal (its message names the field at fault), or why it could not
    be asked, as a tool error the model can read and act on."""
    if exc.status is None:
        return ToolError(f"Signoff could not answer: {exc.message}")
    return ToolError(f"Signoff refused: {exc.message}")


def _summary(decision: Decision) -> DecisionSummary:
    return {
        "action": decision.action,
        "approved": decision.approved,
        "args": decision.args,
        "reason_code": decision.reason_code,
        "reason": decision.reason,
        "reviewer": decision.reviewer,
        "decided_by": decision.decided_by,
    }


def case_body(
    title: str,
    question: str,
    kind: str,
    tool: str | None,
    args: dict[str, Any] | None,
    editable: list[str] | None,
    recommendation_action: str,
    confidence: float | None,
    rationale: str | None,
) -> dict[str, Any]:
    """The case for one request_approval call, checked against the server's bounds."""
    body: dict[str, Any] = {
        "kind": kind,
        "title": _text("title", title, MAX_TITLE),
        "question": _text("question", question, MAX_QUESTION),
        "recommendation": {
            "action": recommendation_action,
            # without a confidence nobody said how sure the agent is: 0 sends the case
            # to the most careful lane the policy has (as require_approval does)
            "confidence": 0.0 if confidence is None else confidence,
            "rationale": rationale
            if rationale is not None
            else ("no confidence was given" if confidence is None else ""),
        },
        # a blocking tool call cannot answer a reviewer's question: approve or reject
        "actions": ["approve", "reject"],
    }
    if tool is None:
        if args is not None or editable is not None:
            raise ToolError("args and editable describe a tool call: give `tool` too")
        return body
    _text("tool", tool, MAX_TOOL_NAME)
    given = args or {}
    if len(given) > MAX_ARGS:
        raise ToolError(f"args may have at most {MAX_ARGS} entries (got {len(given)})")
    unknown = [name for name in editable or () if name not in given]
    if unknown:
        raise ToolError(f"editable names arguments that args does not have: {', '.join(unknown)}")
    body["proposal"] = {"name": tool, "args": given, "editable": list(editable or ())}
    body["actions"].append("modify")
    return body


def build_server(client: AsyncSignoff, heartbeat: float = HEARTBEAT) -> MCPServer[Any]:
    """The MCP server, its tools calling Signoff through `client`."""
    server: MCPServer[Any] = MCPServer(
        "signoff", instructions=INSTRUCTIONS, version=VERSION, log_level="WARNING"
    )

    @server.tool(title="Ask a person to approve an action")
    async def request_approval(
        ctx: Context,
        title: Annotated[
            str,
            Field(
                min_length=1,
                max_length=MAX_TITLE,
                description="what the action is, in a line",
            ),
        ],
        question: Annotated[
            str,
            Field(
                min_length=1,
                max_length=MAX_QUESTION,
                description="what the reviewer should decide",
            ),
        ],
        kind: Annotated[
            str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", description=KIND_HELP)
        ] = "agent_tool_call",
        tool: Annotated[
            str | None, Field(description="the tool you want to call, if the action is one")
        ] = None,
        args: Annotated[
            dict[str, Any] | None,
            Field(description="the tool call's arguments (JSON values), by name; needs tool"),
        ] = None,
        editable: Annotated[
            list[str] | None,
            Field(description="the arguments a reviewer may edit (default: all of them)"),
        ] = None,
        recommendation_action: Annotated[
            Literal["approve", "reject"], Field(description="what you recommend")
        ] = "approve",
        confidence: Annotated[
            float | None,
            Field(ge=0, le=1, description="how sure you are, 0 to 1 (decides the lane)"),
        ] = None,
        rationale: Annotated[
            str | None, Field(max_length=MAX_RATIONALE, description="why you recommend it")
        ] = None,
        timeout_seconds: Annotated[
            float,
            Field(gt=0, le=MAX_WAIT, description="how long to wait; then the answer is reject"),
        ] = 600,
    ) -> ApprovalResult:
        """Ask a person to approve an action before you take it, and wait (block) until
        they decide or `timeout_seconds` pass. Act only if `approved` is true, and then
        with the returned `args` (for `action` "modify" the reviewer edited them). On a
        reject, or a timeout (`timed_out`, a reject by default), do not act; `reason`
        says why."""
        body = case_body(
            title,
            question,
            kind,
            tool,
            args,
            editable,
            recommendation_action,
            confidence,
            rationale,
        )
        try:
            case = await client.submit(body)
        except SignoffError as exc:
            raise _refused(exc) from exc
        log.info("case %s submitted (%s, lane %s)", case.id, case.status, case.lane)
        decision = await _wait(ctx, client, case, timeout_seconds, heartbeat)
        if decision.timed_out:
            await _withdraw(client, case.id, "the agent stopped waiting for a decision")
        return {
            "case_id": case.id,
            "action": decision.action,
            "approved": decision.approved,
            "args": decision.args
            if decision.action == "modify" and decision.args is not None
            else dict(args or {}),
            "reason_code": decision.reason_code,
            "reason": decision.reason,
            "reviewer": decision.reviewer,
            "decided_by": decision.decided_by,
            "timed_out": decision.timed_out,
        }

    @server.tool(title="Read a Signoff case")
    async def get_case(
        case_id: Annotated[
            str, Field(min_length=1, max_length=200, description="the case's id (case_id)")
        ],
    ) -> CaseSummary:
        """A case's status (pending, approved, rejected, expired, cancelled,
        auto_decided, ...), its lane and, once settled, its decision."""
        _text("case_id", case_id, 200)
        try:
            case = await client.get(case_id)
        except SignoffError as exc:
            raise _refused(exc) from exc
        decision = case.outcome()
        return {
            "case_id": case.id,
            "status": case.status,
            "lane": case.lane,
            "kind": case.kind,
            "title": case.title,
            "due_at": case.due_at.isoformat() if case.due_at else None,
            "decided": decision is not None,
            "decision": _summary(decision) if decision is not None else None,
        }

    return server


async def _wait(
    ctx: Context, client: AsyncSignoff, case: Case, seconds: float, heartbeat: float
) -> Decision:
    """The decision on `case`; progress notifications meanwhile. A call the MCP client
    abandons (cancelled, or the connection closed) withdraws the case."""
    settled = case.outcome()
    if settled is not None:  # the auto and block lanes decide at once
        return settled

    async def beat() -> None:
        waited = 0.0
        while True:
            message = f"case {case.id} is waiting for a decision (lane {case.lane})"
            try:
                await ctx.report_progress(waited, seconds, message)
            except Exception:  # progress is a courtesy: never let it end the wait
                log.debug("progress notification failed", exc_info=True)
            await anyio.sleep(heartbeat)
            waited = min(waited + heartbeat, seconds)

    done = False
    try:
        failure: SignoffError | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(beat)
            try:
                decision = await client.wait(case.id, timeout=seconds, on_timeout="reject")
            except SignoffError as exc:  # raised outside the group, not as an ExceptionGroup
                failure = exc
            group.cancel_scope.cancel()
        if failure is not None:
            raise _refused(failure) from failure
        done = True
        return decision
    finally:
        if not done:
            with anyio.CancelScope(shield=True):
                await _withdraw(client, case.id, "the agent abandoned the approval request")


async def _withdraw(client: AsyncSignoff, case_id: str, reason: str) -> None:
    """Cancel a case nobody waits for any more, so that nobody approves an action that
    will not happen; one decided meanwhile is left as it is."""
    with anyio.move_on_after(10):
        try:
            await client.cancel(case_id, reason)
        except SignoffError as exc:
            log.info("case %s not cancelled: %s", case_id, exc)
            return
        log.info("case %s cancelled: %s", case_id, reason)


def serve() -> int:
    """Run the server over stdio until the client closes it; 2 when misconfigured."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="signoff-client mcp: %(levelname)s %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    try:
        client = AsyncSignoff(source=os.environ.get("SIGNOFF_SOURCE") or "default")
    except SignoffError as exc:
        print(f"signoff-client mcp: {exc.message}", file=sys.stderr)
        return 2

    async def run() -> None:
        async with client:
            await build_server(client).run_stdio_async()

    anyio.run(run)
    return 0
