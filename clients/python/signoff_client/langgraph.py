"""LangGraph and LangChain: a person decides an agent's tool calls in Signoff.

Two ways, on the real `langgraph` / `langchain` packages (the `langgraph` extra):

* **Blocking**: `gate_tool(tool, signoff)` is the same tool (name, description, argument
  schema) whose every call first becomes a case with `proposal: {name, args}` and waits
  for its decision. Approve runs the tool as called; modify runs it with the reviewer's
  arguments; reject does not run it, and by default the agent gets the reviewer's
  reason as the tool's result (an error `ToolMessage`), so it can react. Simple, but
  the process waits, holding its thread, for as long as the person takes.

* **Durable**: the agent pauses with `interrupt()` under `HumanInTheLoopMiddleware`
  (batched mode, the default) and its checkpointer keeps the thread. The interrupt's
  `HITLRequest` becomes one case per action request (`cases_for_interrupt`), each with
  a callback URL that names the thread, the interrupt and the request's place in it.
  Signoff's signed callbacks go to `Resumer.handle`, which verifies each, and once all
  of the interrupt's cases are decided gives the `Command(resume={"decisions": [...]})`
  to resume the thread with: approve → `approve`, modify → `edit` (the edited args),
  reject → `reject` (the reviewer's reason as the message). Nothing waits meanwhile;
  the process may even restart between the interrupt and the callbacks.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Collection, Mapping, MutableMapping, MutableSet, Sequence
from dataclasses import dataclass
from threading import Lock
from typing import Any, Literal, cast
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.types import Command, Interrupt
from pydantic import PrivateAttr
from pydantic_core import to_jsonable_python

from signoff_client import _core, approval
from signoff_client._core import OnTimeout
from signoff_client.aio import AsyncSignoff
from signoff_client.callbacks import verify_callback
from signoff_client.client import Signoff
from signoff_client.errors import CallbackError, Rejected, SignoffError
from signoff_client.models import Case, Decision

__all__ = [
    "GatedTool",
    "Resume",
    "Resumer",
    "acases_for_interrupt",
    "cases_for_interrupt",
    "gate_tool",
    "hitl_decision",
    "resume_command",
]

#: a title or question: text, or made from the tool's name and its call's arguments
PerCall = str | Callable[[str, dict[str, Any]], str] | None
#: the query parameters `cases_for_interrupt` adds to the callback URL (signed with it)
THREAD, INTERRUPT, INDEX, COUNT, TOOL = (
    "lg_thread",
    "lg_interrupt",
    "lg_index",
    "lg_count",
    "lg_tool",
)
#: callbacks that settle a case (the others, `acknowledged` and `info_requested`, do not)
SETTLING = ("decision", "expired")


def _text(given: PerCall, default: str, name: str, args: dict[str, Any]) -> str:
    if callable(given):
        return given(name, args)
    return given or default


def _jsonable(name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    try:
        found = to_jsonable_python(dict(args))
    except Exception as exc:  # pydantic's error names the type it could not write
        raise SignoffError(
            None, f"the arguments of {name} cannot be written as JSON for the proposal: {exc}"
        ) from exc
    return cast(dict[str, Any], found)


def _case_body(
    *,
    kind: str,
    name: str,
    args: dict[str, Any],
    editable: Collection[str] | None,
    modify: bool,
    title: PerCall,
    question: PerCall,
    recommendation: Mapping[str, Any] | None,
    summary: str,
    fields: Mapping[str, Any],
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": kind,
        "title": _text(title, f"The agent wants to run {name}", name, args)[:300],
        "question": _text(question, f"May the agent run {name} with these arguments?", name, args),
        "recommendation": dict(recommendation or approval.UNSURE),
        # no request_info: nobody is there to answer a question; modify only when allowed
        "actions": ["approve", "reject", "modify"] if modify else ["approve", "reject"],
        **fields,
        "proposal": {"name": name, "args": args, "editable": list(editable or ())},
    }
    if summary and "summary" not in fields:
        body["summary"] = summary
    return body


# -- (a) the blocking gate ------------------------------------------------------------


def _visible(tool: BaseTool) -> set[str] | None:
    """The arguments the model writes (not the injected ones: runtime, state, ...)."""
    schema = tool.tool_call_schema
    if isinstance(schema, dict):
        props = schema.get("properties")
        return set(props) if isinstance(props, dict) else None
    fields = getattr(schema, "model_fields", None) or getattr(schema, "__fields__", None)
    return set(fields) if isinstance(fields, Mapping) else None


class GatedTool(BaseTool):
    """A tool whose calls wait for a person's decision in Signoff (see `gate_tool`)."""

    func: Callable[..., Any] | None = None
    coroutine: Callable[..., Any] | None = None

    _inner: BaseTool = PrivateAttr()
    _signoff: Signoff | AsyncSignoff = PrivateAttr()
    _kind: str = PrivateAttr()
    _editable: Collection[str] | None = PrivateAttr()
    _timeout: float = PrivateAttr()
    _on_timeout: OnTimeout = PrivateAttr()
    _on_reject: Literal["message", "raise"] = PrivateAttr()
    _title: PerCall = PrivateAttr()
    _question: PerCall = PrivateAttr()
    _recommendation: Mapping[str, Any] | None = PrivateAttr()
    _fields: Mapping[str, Any] = PrivateAttr()

    @property
    def inner(self) -> BaseTool:
        """The tool that runs once a call is approved."""
        return self._inner

    # -- what a call proposes, and what runs ------------------------------------------

    def _split(self, tool_input: str | dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The call's arguments: those the model wrote (the proposal), the injected rest."""
        if isinstance(tool_input, str):
            visible = sorted(_visible(self._inner) or ())
            if len(visible) != 1:
                raise TypeError(f"{self.name} takes its arguments as a dict, not as text")
            return {visible[0]: tool_input}, {}
        shown = _visible(self._inner)
        if shown is None:
            return dict(tool_input), {}
        proposed = {k: v for k, v in tool_input.items() if k in shown}
        return proposed, {k: v for k, v in tool_input.items() if k not in shown}

    def _body(self, args: dict[str, Any]) -> dict[str, Any]:
        return _case_body(
            kind=self._kind,
            name=self.name,
            args=_jsonable(self.name, args),
            editable=self._editable,
            modify=self._editable is None or bool(self._editable),
            title=self._title,
            question=self._question,
            recommendation=self._recommendation,
            summary=self._inner.description,
            fields=self._fields,
        )

    def _plan(self, args: dict[str, Any]) -> _core.Plan[Decision]:
        spec = approval.Spec(
            self._kind, None, None, None, self._editable, self._timeout, self._on_timeout, {}
        )
        return approval.flow(self._signoff._cfg, spec, self._body(args))

    def _refused(self, input: str | dict[str, Any], no: Rejected) -> Any:
        if self._on_reject == "raise":
            raise no
        decision = no.decision
        if decision.timed_out:
            why = "nobody decided in time"
        else:
            why = decision.reason or decision.reason_code or "no reason was given"
        content = f"A reviewer rejected the call of `{self.name}`, so it did not run. Reason: {why}"
        if isinstance(input, dict) and input.get("type") == "tool_call":
            return ToolMessage(
                content=content,
                name=self.name,
                tool_call_id=input["id"],
                status="error",
                artifact={"signoff_case": no.case_id, "decision": decision.model_dump(mode="json")},
            )
        return content

    @staticmethod
    def _approved_input(
        input: str | dict[str, Any], proposed: dict[str, Any], hidden: dict[str, Any], d: Decision
    ) -> str | dict[str, Any]:
        if d.action != "modify" or d.args is None:
            return input
        args = {**proposed, **d.args, **hidden}
        if isinstance(input, dict) and input.get("type") == "tool_call":
            return {**input, "args": args}
        return args

    @staticmethod
    def _args_of(input: str | dict[str, Any]) -> str | dict[str, Any]:
        if isinstance(input, dict) and input.get("type") == "tool_call":
            return cast(dict[str, Any], input["args"])
        return input

    # -- the Runnable -----------------------------------------------------------------

    def invoke(
        self,
        input: str | dict[str, Any] | Any,
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> Any:
        if isinstance(self._signoff, AsyncSignoff):
            raise TypeError(
                f"{self.name} is gated with AsyncSignoff: call it with ainvoke (or gate it "
                "with Signoff)"
            )
        proposed, hidden = self._split(self._args_of(input))
        try:
            decision = self._signoff._run(self._plan(proposed))
        except Rejected as no:
            return self._refused(input, no)
        again = self._approved_input(input, proposed, hidden, decision)
        return self._inner.invoke(again, config, **kwargs)

    async def ainvoke(
        self,
        input: str | dict[str, Any] | Any,
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> Any:
        proposed, hidden = self._split(self._args_of(input))
        plan = self._plan(proposed)
        try:
            if isinstance(self._signoff, AsyncSignoff):
                decision = await self._signoff._run(plan)
            else:
                decision = await asyncio.to_thread(self._signoff._run, plan)
        except Rejected as no:
            return self._refused(input, no)
        again = self._approved_input(input, proposed, hidden, decision)
        return await self._inner.ainvoke(again, config, **kwargs)

    # `tool.run(...)` / `tool.arun(...)` (not through invoke) also go through the gate
    def _run(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("run_manager", None)
        return self.invoke(kwargs)

    async def _arun(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("run_manager", None)
        return await self.ainvoke(kwargs)


def gate_tool(
    tool: BaseTool,
    signoff: Signoff | AsyncSignoff,
    *,
    kind: str = "agent_tool_call",
    editable: Collection[str] | None = None,
    timeout: float = 600.0,
    on_timeout: OnTimeout = "reject",
    on_reject: Literal["message", "raise"] = "message",
    title: PerCall = None,
    question: PerCall = None,
    recommendation: Mapping[str, Any] | None = None,
    **case_fields: Any,
) -> GatedTool:
    """`tool`, with the same name, description and argument schema, whose every call
    first becomes a case and blocks until it is decided (at most `timeout` seconds;
    then `on_timeout`, and the case is cancelled).

    The case has `proposal: {name: tool.name, args: <the model's arguments>, editable}`
    (`editable=None`: every argument may be edited; an empty collection: none, and the
    reviewer may only approve or reject), the tool's description as its `summary`, and
    `recommendation` (default: approve with confidence 0, the most careful lane).
    `title` and `question` may be text or functions of (name, args); any other case
    field (`risk`, `facts`, `flags`, ...) may be passed too. Injected arguments (the
    tool's runtime, state, store) are not proposed; they are passed through.

    Approve runs `tool` as called; modify runs it with the reviewer's arguments. On a
    reject (or a timeout) the tool does not run, and with `on_reject="message"` (the
    default) the call's result is an error `ToolMessage` carrying the reviewer's
    reason, which the agent reads like any tool result; `on_reject="raise"` raises
    `Rejected` instead. With `Signoff` both `invoke` and `ainvoke` work (`ainvoke` waits
    in a worker thread); with `AsyncSignoff` only `ainvoke`."""
    gated = GatedTool(
        name=tool.name,
        description=tool.description,
        # a tool without one takes its schema from its `_run`: keep that, not the gate's
        args_schema=tool.args_schema if tool.args_schema is not None else tool.get_input_schema(),
        return_direct=tool.return_direct,
        response_format=tool.response_format,
        tags=tool.tags,
        metadata=tool.metadata,
        func=getattr(tool, "func", None),
        coroutine=getattr(tool, "coroutine", None),
    )
    gated._inner = tool
    gated._signoff = signoff
    gated._kind = kind
    gated._editable = None if editable is None else list(editable)
    gated._timeout = timeout
    gated._on_timeout = on_timeout
    gated._on_reject = on_reject
    gated._title = title
    gated._question = question
    gated._recommendation = recommendation
    gated._fields = dict(case_fields)
    return gated


# -- (b) the durable path: interrupt → cases → callbacks → Command(resume=...) ------------


def _request(interrupt: Interrupt[Any] | Mapping[str, Any]) -> tuple[Mapping[str, Any], str | None]:
    if isinstance(interrupt, Interrupt):
        value, found = interrupt.value, interrupt.id
    else:
        value, found = interrupt, None
    if not isinstance(value, Mapping) or not isinstance(value.get("action_requests"), list):
        kind = value.get("type") if isinstance(value, Mapping) else type(value).__name__
        raise ValueError(
            "not a HumanInTheLoopMiddleware HITLRequest (action_requests, review_configs): "
            f"got {kind!r}; per_call mode's tool_approval interrupts are not supported"
        )
    return value, found


def _allowed(value: Mapping[str, Any], name: str) -> list[str]:
    for config in value.get("review_configs") or ():
        if config.get("action_name") == name:
            return list(config.get("allowed_decisions") or ())
    return ["approve", "edit", "reject"]


def _with_route(url: str, route: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(route)) if q)
    return urlunsplit(parts._replace(query=query))


def _bodies(
    interrupt: Interrupt[Any] | Mapping[str, Any],
    thread_id: str,
    callback_url: str,
    interrupt_id: str | None,
    kind: str,
    title: PerCall,
    question: PerCall,
    recommendation: Mapping[str, Any] | None,
    fields: Mapping[str, Any],
) -> list[tuple[dict[str, Any], str | None]]:
    value, found = _request(interrupt)
    interrupt_id = interrupt_id or found
    requests = list(value["action_requests"])
    made = []
    for index, action in enumerate(requests):
        name = str(action["name"])
        allowed = _allowed(value, name)
        missing = [d for d in ("approve", "reject") if d not in allowed]
        if missing:
            raise ValueError(
                f"{name}'s review config does not allow {' and '.join(missing)}, which every "
                "Signoff reviewer may choose: allow approve and reject (and edit, for modify)"
            )
        route = {THREAD: thread_id, INDEX: str(index), COUNT: str(len(requests)), TOOL: name}
        if interrupt_id:
            route[INTERRUPT] = interrupt_id
        metadata = {
            **dict(fields.get("metadata") or {}),
            "langgraph_thread_id": thread_id,
            "langgraph_interrupt_id": interrupt_id or "",
            "langgraph_action_index": index,
            "langgraph_action_count": len(requests),
        }
        body = _case_body(
            kind=kind,
            name=name,
            args=_jsonable(name, action.get("args") or {}),
            editable=None,
            modify="edit" in allowed,
            title=title,
            question=question,
            recommendation=recommendation,
            summary=str(action.get("description") or ""),
            fields={
                **fields,
                "metadata": metadata,
                "callback_url": _with_route(callback_url, route),
            },
        )
        key = None
        if interrupt_id:  # the same interrupt submitted again (after a crash) is one case
            digest = hashlib.sha256(f"{thread_id}\0{interrupt_id}\0{index}".encode()).hexdigest()
            key = f"langgraph-{digest[:40]}"
        made.append((body, key))
    return made


def cases_for_interrupt(
    signoff: Signoff,
    interrupt: Interrupt[Any] | Mapping[str, Any],
    thread_id: str,
    callback_url: str,
    *,
    interrupt_id: str | None = None,
    kind: str = "agent_tool_call",
    title: PerCall = None,
    question: PerCall = None,
    recommendation: Mapping[str, Any] | None = None,
    **case_fields: Any,
) -> list[Case]:
    """One case per action request of a `HumanInTheLoopMiddleware` interrupt (the
    `Interrupt` from `result.interrupts`, or its `HITLRequest` value), in their order.

    Each has `proposal: {name, args}` (every argument editable, and the `modify` action
    only if the request's review config allows `edit`), the request's description as
    its summary, `metadata` with `langgraph_thread_id`, `langgraph_interrupt_id`,
    `langgraph_action_index` and `langgraph_action_count`, and `callback_url` with
    the thread, the interrupt, the index, the count and the tool's name added to its
    query (`lg_*`: signed with the rest, so `Resumer` trusts them). A review config
    that does not allow both approve and reject raises ValueError, because a Signoff
    reviewer may always choose either. Given the interrupt's id (from an `Interrupt`,
    or `interrupt_id=`) each case has an idempotency key made from it, so that
    submitting the same interrupt again (after a crash) makes no second cases."""
    made = _bodies(
        interrupt,
        thread_id,
        callback_url,
        interrupt_id,
        kind,
        title,
        question,
        recommendation,
        case_fields,
    )
    return [signoff.submit(body, idempotency_key=key) for body, key in made]


async def acases_for_interrupt(
    signoff: AsyncSignoff,
    interrupt: Interrupt[Any] | Mapping[str, Any],
    thread_id: str,
    callback_url: str,
    *,
    interrupt_id: str | None = None,
    kind: str = "agent_tool_call",
    title: PerCall = None,
    question: PerCall = None,
    recommendation: Mapping[str, Any] | None = None,
    **case_fields: Any,
) -> list[Case]:
    """`cases_for_interrupt` with `AsyncSignoff`."""
    made = _bodies(
        interrupt,
        thread_id,
        callback_url,
        interrupt_id,
        kind,
        title,
        question,
        recommendation,
        case_fields,
    )
    return [await signoff.submit(body, idempotency_key=key) for body, key in made]


def hitl_decision(callback: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The middleware's decision for one verified Signoff callback (a `decision` or an
    `expired` one) on the action request for tool `name`: approve → `{"type":
    "approve"}`, modify → `{"type": "edit", "edited_action": {"name", "args"}}` (the
    reviewer's full arguments), reject → `{"type": "reject", "message": <reason>}`."""
    kind = callback.get("type")
    decision = callback.get("decision")
    if kind not in SETTLING or not isinstance(decision, Mapping):
        raise ValueError(f"a {kind!r} callback carries no decision")
    action = decision.get("action")
    if action == "approve":
        return {"type": "approve"}
    if action == "modify":
        args = decision.get("args")
        if not isinstance(args, Mapping):
            raise ValueError("a modify decision without its edited args")
        return {"type": "edit", "edited_action": {"name": name, "args": dict(args)}}
    if action == "reject":
        reason = decision.get("reason")
        if not reason and kind == "expired":
            reason = "Nobody decided in time, so the call was rejected by default."
        return {"type": "reject", "message": reason} if reason else {"type": "reject"}
    raise ValueError(f"unknown decision action {action!r}")


def resume_command(
    callbacks: Sequence[Mapping[str, Any]],
    actions: Interrupt[Any] | Mapping[str, Any] | Sequence[str],
) -> Command[Any]:
    """`Command(resume={"decisions": [...]})` from the verified callbacks of an
    interrupt's cases, one per action request and in their order; `actions` is the
    interrupt (or its HITLRequest), or the action requests' tool names."""
    if isinstance(actions, Interrupt | Mapping):
        value, _ = _request(actions)
        names = [str(a["name"]) for a in value["action_requests"]]
    else:
        names = [str(n) for n in actions]
    if len(callbacks) != len(names):
        raise ValueError(f"{len(callbacks)} callbacks for {len(names)} action requests")
    decisions = [hitl_decision(c, n) for c, n in zip(callbacks, names, strict=True)]
    return Command(resume={"decisions": decisions})


@dataclass(frozen=True)
class Resume:
    """All of an interrupt's cases are decided: resume `thread_id` with `command`."""

    thread_id: str
    interrupt_id: str | None
    command: Command[Any]
    case_ids: tuple[str, ...]

    @property
    def config(self) -> RunnableConfig:
        """The thread's config for `graph.invoke(resume.command, resume.config)`."""
        return {"configurable": {"thread_id": self.thread_id}}


class Resumer:
    """Collects Signoff's callbacks for `cases_for_interrupt`'s cases, per thread and
    interrupt, until all of an interrupt's cases are decided.

    `handle(method, url, headers, body)` verifies the callback (`verify_callback` with
    `secret`, `window` and `seen`; a replay raises ReplayedCallback, to be answered
    2xx, anything wrong CallbackError, to be answered 401) and returns a `Resume` once
    the interrupt's last case is decided, else None (also for callbacks that decide
    nothing, such as `acknowledged`). `store` keeps the decisions so far (a dict by
    default; any mapping that keeps what is assigned to it, shared between processes
    in production); an interrupt's entry is removed when its `Resume` is returned."""

    def __init__(
        self,
        secret: str,
        *,
        store: MutableMapping[str, dict[str, Any]] | None = None,
        seen: MutableSet[str] | None = None,
        window: int = 300,
    ) -> None:
        self._secret = secret
        self._store: MutableMapping[str, dict[str, Any]] = {} if store is None else store
        self._seen = seen
        self._window = window
        self._lock = Lock()

    def handle(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> Resume | None:
        event = verify_callback(
            self._secret, method, url, headers, body, window=self._window, seen=self._seen
        )
        query = parse_qs(urlsplit(url).query)

        def one(key: str) -> str | None:
            values = query.get(key)
            return values[-1] if values else None

        thread, name, index, count = one(THREAD), one(TOOL), one(INDEX), one(COUNT)
        if thread is None or name is None or index is None or count is None:
            raise CallbackError(
                "the callback URL has no lg_thread, lg_tool, lg_index and lg_count: not a "
                "case made by cases_for_interrupt"
            )
        if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
            raise CallbackError(f"lg_index {index!r} and lg_count {count!r} do not fit")
        if event.get("type") not in SETTLING:
            return None
        interrupt = one(INTERRUPT)
        case_id = str((event.get("escalation") or {}).get("id") or "")
        decided = {"case": case_id, "decision": hitl_decision(event, name)}
        key = f"{thread}\0{interrupt or ''}"
        with self._lock:
            entry = dict(self._store.get(key) or {})
            entry[index] = decided
            if len(entry) < int(count):
                self._store[key] = entry
                return None
            self._store.pop(key, None)
        ordered = [entry[str(i)] for i in range(int(count))]
        return Resume(
            thread_id=thread,
            interrupt_id=interrupt,
            command=Command(resume={"decisions": [d["decision"] for d in ordered]}),
            case_ids=tuple(d["case"] for d in ordered),
        )
