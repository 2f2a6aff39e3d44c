"""signoff_client.langgraph on the real langgraph / langchain: a create_agent agent
with a fake chat model from langchain_core (no LLM), a real server, a reviewer in its
web inbox, and real signed callbacks over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain.tools import ToolRuntime
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from serverkit import SECRET, Recorder, Reviewer, a_case, receiver

from signoff_client import AsyncSignoff, CallbackError, Rejected, ReplayedCallback, Signoff
from signoff_client.langgraph import (
    Resumer,
    cases_for_interrupt,
    gate_tool,
    hitl_decision,
    resume_command,
)

PATH = "/hooks/langgraph?team=7"


class ToolCallingModel(GenericFakeChatModel):
    """GenericFakeChatModel answers from its list; create_agent binds tools to the model,
    which the fake one does not implement: binding changes nothing here."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ToolCallingModel:  # type: ignore[override]
        return self


def calls(*tool_calls: tuple[str, dict[str, Any]]) -> ToolCallingModel:
    """A model that asks for `tool_calls` in its first turn and then says it is done."""
    first = AIMessage(
        content="",
        tool_calls=[
            {"name": name, "args": args, "id": f"call-{n}", "type": "tool_call"}
            for n, (name, args) in enumerate(tool_calls)
        ],
    )
    return ToolCallingModel(messages=iter([first, AIMessage(content="done")]))


@pytest.fixture
def ran() -> list[tuple[str, Any]]:
    return []


@pytest.fixture
def refund(ran: list[tuple[str, Any]]) -> BaseTool:
    @tool
    def refund(order: str, amount: int) -> str:
        """Refund a customer's order."""
        ran.append(("refund", {"order": order, "amount": amount}))
        return f"refunded {amount} on {order}"

    return refund


@pytest.fixture
def notify(ran: list[tuple[str, Any]]) -> BaseTool:
    @tool
    def notify(to: str, text: str) -> str:
        """Send a customer a message."""
        ran.append(("notify", {"to": to, "text": text}))
        return f"sent to {to}"

    return notify


def tool_messages(state: dict[str, Any]) -> list[ToolMessage]:
    return [m for m in state["messages"] if isinstance(m, ToolMessage)]


def _open(signoff: Signoff) -> set[str]:
    return {case.id for case in signoff.cases(status="pending").items}


def decide_next(signoff: Signoff, reviewer: Reviewer, action: str, **form: Any) -> list[str]:
    """In a thread: decide the next case that shows up open; its id lands in the list."""
    seen = _open(signoff)
    found: list[str] = []

    def run() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            fresh = sorted(_open(signoff) - seen)
            if fresh:
                found.append(fresh[0])
                reviewer.decide(fresh[0], action, **form)
                return
            time.sleep(0.1)

    threading.Thread(target=run, daemon=True).start()
    return found


def sent_case(signoff: Signoff, case_id: str) -> dict[str, Any]:
    """The case body as the workflow submitted it."""
    extra = signoff.get(case_id).model_extra or {}
    body: dict[str, Any] = extra["case"]
    return body


# -- (a) gate_tool: the call blocks until decided ------------------------------------


def test_a_gated_tool_keeps_the_tools_name_and_schema(signoff: Signoff, refund: BaseTool) -> None:
    gated = gate_tool(refund, signoff, kind="tool_call")
    assert gated.name == "refund"
    assert gated.description == refund.description
    assert gated.tool_call_schema.model_json_schema() == refund.tool_call_schema.model_json_schema()  # type: ignore[union-attr]
    assert gated.args == refund.args


def test_gated_approve_runs_the_tool_with_the_models_args(
    signoff: Signoff, reviewer: Reviewer, refund: BaseTool, ran: list[tuple[str, Any]]
) -> None:
    gated = gate_tool(refund, signoff, kind="tool_call", editable=["amount"], timeout=30)
    agent = create_agent(calls(("refund", {"order": "A-17", "amount": 400})), tools=[gated])
    decided = decide_next(signoff, reviewer, "approve", reason="fine")
    state = agent.invoke({"messages": [{"role": "user", "content": "refund A-17"}]})
    assert ran == [("refund", {"order": "A-17", "amount": 400})]
    [message] = tool_messages(state)
    assert message.content == "refunded 400 on A-17"
    assert message.status == "success"
    assert state["messages"][-1].content == "done"
    body = sent_case(signoff, decided[0])
    assert body["proposal"] == {
        "name": "refund",
        "args": {"order": "A-17", "amount": 400},
        "editable": ["amount"],
    }
    assert body["summary"] == "Refund a customer's order."
    assert body["actions"] == ["approve", "reject", "modify"]


def test_gated_modify_runs_the_tool_with_the_reviewers_args(
    signoff: Signoff, reviewer: Reviewer, refund: BaseTool, ran: list[tuple[str, Any]]
) -> None:
    gated = gate_tool(refund, signoff, kind="tool_call", timeout=30)
    agent = create_agent(calls(("refund", {"order": "A-17", "amount": 400})), tools=[gated])
    decide_next(signoff, reviewer, "modify", reason="too much", args={"amount": "40"})
    state = agent.invoke({"messages": [{"role": "user", "content": "refund A-17"}]})
    assert ran == [("refund", {"order": "A-17", "amount": 40})]
    assert tool_messages(state)[0].content == "refunded 40 on A-17"


def test_gated_reject_does_not_run_the_tool_and_tells_the_agent_why(
    signoff: Signoff, reviewer: Reviewer, refund: BaseTool, ran: list[tuple[str, Any]]
) -> None:
    gated = gate_tool(refund, signoff, kind="tool_call", timeout=30)
    agent = create_agent(calls(("refund", {"order": "A-17", "amount": 400})), tools=[gated])
    decided = decide_next(
        signoff, reviewer, "reject", reason_code="not_authorized", reason="not this customer"
    )
    state = agent.invoke({"messages": [{"role": "user", "content": "refund A-17"}]})
    assert ran == []
    [message] = tool_messages(state)
    assert message.status == "error"
    assert "not this customer" in str(message.content)
    assert message.tool_call_id == "call-0"
    assert message.artifact["signoff_case"] == decided[0]
    assert state["messages"][-1].content == "done"


def test_gated_reject_raises_when_asked_to(
    signoff: Signoff, reviewer: Reviewer, refund: BaseTool, ran: list[tuple[str, Any]]
) -> None:
    gated = gate_tool(refund, signoff, kind="tool_call", timeout=30, on_reject="raise")
    decide_next(signoff, reviewer, "reject", reason_code="other", reason="no")
    with pytest.raises(Rejected, match="no"):
        gated.invoke({"order": "A-1", "amount": 1})
    assert ran == []


def test_a_gated_tool_that_nobody_decides_is_rejected_and_withdrawn(
    signoff: Signoff, refund: BaseTool, ran: list[tuple[str, Any]]
) -> None:
    gated = gate_tool(refund, signoff, kind="tool_call", timeout=1)
    call = {
        "name": "refund",
        "args": {"order": "A-1", "amount": 1},
        "id": "c1",
        "type": "tool_call",
    }
    answer = gated.invoke(call)
    assert ran == []
    assert isinstance(answer, ToolMessage)
    assert "nobody decided in time" in str(answer.content)
    assert answer.artifact["decision"]["timed_out"] is True
    assert signoff.get(answer.artifact["signoff_case"]).status == "cancelled"


def test_an_uneditable_gated_tool_offers_no_modify(
    signoff: Signoff, reviewer: Reviewer, refund: BaseTool
) -> None:
    gated = gate_tool(refund, signoff, kind="tool_call", timeout=30, editable=())
    decided = decide_next(signoff, reviewer, "approve")
    assert gated.invoke({"order": "A-2", "amount": 2}) == "refunded 2 on A-2"
    assert sent_case(signoff, decided[0])["actions"] == ["approve", "reject"]


async def test_a_gated_tool_with_the_async_client(
    signoff: Signoff,
    asignoff: AsyncSignoff,
    reviewer: Reviewer,
    refund: BaseTool,
    ran: list[tuple[str, Any]],
) -> None:
    gated = gate_tool(refund, asignoff, kind="tool_call", timeout=30)
    agent = create_agent(calls(("refund", {"order": "B-2", "amount": 9})), tools=[gated])
    decide_next(signoff, reviewer, "modify", reason="less", args={"amount": "5"})
    state = await agent.ainvoke({"messages": [{"role": "user", "content": "refund B-2"}]})
    assert ran == [("refund", {"order": "B-2", "amount": 5})]
    assert tool_messages(state)[0].content == "refunded 5 on B-2"
    with pytest.raises(TypeError, match="ainvoke"):
        gated.invoke({"order": "B-2", "amount": 9})


async def test_ainvoke_with_the_sync_client(
    signoff: Signoff, reviewer: Reviewer, refund: BaseTool, ran: list[tuple[str, Any]]
) -> None:
    gated = gate_tool(refund, signoff, kind="tool_call", timeout=30)
    decide_next(signoff, reviewer, "reject", reason_code="other", reason="later")
    answer = await gated.ainvoke({"order": "C-3", "amount": 3})
    assert ran == []
    assert "later" in answer


# -- (b) the durable path: interrupt, cases, signed callbacks, Command(resume=...) -----


@pytest.fixture
def hooks() -> Iterator[Recorder]:
    with receiver() as recorder:
        yield recorder


def hitl_agent(model: Any, tools: list[BaseTool], interrupt_on: dict[str, Any]) -> Any:
    return create_agent(
        model,
        tools=tools,
        middleware=[HumanInTheLoopMiddleware(interrupt_on=interrupt_on)],
        checkpointer=InMemorySaver(),
    )


def until_interrupt(agent: Any, thread_id: str) -> Any:
    config = {"configurable": {"thread_id": thread_id}}
    result = agent.invoke(
        {"messages": [{"role": "user", "content": "please"}]}, config, version="v2"
    )
    [interrupt] = result.interrupts
    return interrupt


def deliver(hooks: Recorder, resumer: Resumer, count: int) -> list[Any]:
    """The first `count` callbacks, as the workflow's endpoint hands them to `resumer`."""
    return [
        resumer.handle(got.method, hooks.url + got.path, got.headers, got.body)
        for got in hooks.wait_for(count)[:count]
    ]


def run_durably(
    signoff: Signoff,
    reviewer: Reviewer,
    hooks: Recorder,
    agent: Any,
    thread_id: str,
    decide: Callable[[list[Any]], None],
    count: int = 1,
) -> tuple[Any, list[Any], Any]:
    interrupt = until_interrupt(agent, thread_id)
    cases = cases_for_interrupt(signoff, interrupt, thread_id, hooks.url + PATH, kind="tool_call")
    assert len(cases) == count
    assert agent.get_state({"configurable": {"thread_id": thread_id}}).next  # paused
    decide(cases)
    resumer = Resumer(SECRET, seen=set())
    handled = deliver(hooks, resumer, count)
    assert handled[:-1] == [None] * (count - 1)
    resume = handled[-1]
    assert resume is not None
    assert resume.thread_id == thread_id
    assert resume.interrupt_id == interrupt.id
    assert resume.case_ids == tuple(c.id for c in cases)
    final = agent.invoke(resume.command, resume.config, version="v2")
    assert final.interrupts == ()
    return cases, final.value["messages"], resume


def test_durable_approve_resumes_and_runs_the_tool_as_proposed(
    signoff: Signoff,
    reviewer: Reviewer,
    hooks: Recorder,
    refund: BaseTool,
    ran: list[tuple[str, Any]],
) -> None:
    agent = hitl_agent(
        calls(("refund", {"order": "A-17", "amount": 400})), [refund], {"refund": True}
    )
    assert ran == []
    cases, messages, resume = run_durably(
        signoff,
        reviewer,
        hooks,
        agent,
        "thread-approve",
        lambda cases: reviewer.decide_later(cases[0].id, 0.2, "approve", reason="ok").join(10),
    )
    assert resume.command.resume == {"decisions": [{"type": "approve"}]}
    assert ran == [("refund", {"order": "A-17", "amount": 400})]
    [message] = [m for m in messages if isinstance(m, ToolMessage)]
    assert message.content == "refunded 400 on A-17"
    assert messages[-1].content == "done"
    body = sent_case(signoff, cases[0].id)
    assert body["proposal"] == {
        "name": "refund",
        "args": {"order": "A-17", "amount": 400},
        "editable": [],
    }
    assert body["actions"] == ["approve", "reject", "modify"]
    assert body["metadata"]["langgraph_thread_id"] == "thread-approve"
    assert body["metadata"]["langgraph_interrupt_id"] == resume.interrupt_id
    assert body["metadata"]["langgraph_action_index"] == 0
    assert "Tool: refund" in body["summary"]
    # the callback went to the URL given, the route added to its query
    assert hooks.seen[0].path.startswith(PATH + "&lg_thread=thread-approve")


def test_durable_modify_resumes_with_an_edit_of_the_args(
    signoff: Signoff,
    reviewer: Reviewer,
    hooks: Recorder,
    refund: BaseTool,
    ran: list[tuple[str, Any]],
) -> None:
    agent = hitl_agent(
        calls(("refund", {"order": "A-17", "amount": 400})), [refund], {"refund": True}
    )
    _, messages, resume = run_durably(
        signoff,
        reviewer,
        hooks,
        agent,
        "thread-modify",
        lambda cases: reviewer.decide(cases[0].id, "modify", reason="cap", args={"amount": "40"}),
    )
    assert resume.command.resume == {
        "decisions": [
            {
                "type": "edit",
                "edited_action": {"name": "refund", "args": {"order": "A-17", "amount": 40}},
            }
        ]
    }
    assert ran == [("refund", {"order": "A-17", "amount": 40})]
    [message] = [m for m in messages if isinstance(m, ToolMessage)]
    assert "refunded 40 on A-17" in str(message.content)


def test_durable_reject_resumes_without_the_tool_and_with_the_reason(
    signoff: Signoff,
    reviewer: Reviewer,
    hooks: Recorder,
    refund: BaseTool,
    ran: list[tuple[str, Any]],
) -> None:
    agent = hitl_agent(
        calls(("refund", {"order": "A-17", "amount": 400})), [refund], {"refund": True}
    )
    _, messages, resume = run_durably(
        signoff,
        reviewer,
        hooks,
        agent,
        "thread-reject",
        lambda cases: reviewer.decide(
            cases[0].id, "reject", reason_code="not_authorized", reason="fraud suspected"
        ),
    )
    assert resume.command.resume == {
        "decisions": [{"type": "reject", "message": "fraud suspected"}]
    }
    assert ran == []
    [message] = [m for m in messages if isinstance(m, ToolMessage)]
    assert "fraud suspected" in str(message.content)
    assert message.status == "error"
    assert messages[-1].content == "done"


def test_two_action_requests_resume_once_both_are_decided_in_order(
    signoff: Signoff,
    reviewer: Reviewer,
    hooks: Recorder,
    refund: BaseTool,
    notify: BaseTool,
    ran: list[tuple[str, Any]],
) -> None:
    agent = hitl_agent(
        calls(("refund", {"order": "A-9", "amount": 7}), ("notify", {"to": "bob", "text": "hi"})),
        [refund, notify],
        {"refund": True, "notify": {"allowed_decisions": ["approve", "reject"]}},
    )

    def decide(cases: list[Any]) -> None:
        # the second first: the resume still follows the action requests' order
        reviewer.decide(cases[1].id, "reject", reason_code="other", reason="no spam")
        hooks.wait_for(1)
        reviewer.decide(cases[0].id, "approve")

    cases, messages, resume = run_durably(
        signoff, reviewer, hooks, agent, "thread-two", decide, count=2
    )
    assert resume.command.resume == {
        "decisions": [{"type": "approve"}, {"type": "reject", "message": "no spam"}]
    }
    assert ran == [("refund", {"order": "A-9", "amount": 7})]
    results = {m.name: m for m in messages if isinstance(m, ToolMessage)}
    assert results["refund"].content == "refunded 7 on A-9"
    assert "no spam" in str(results["notify"].content)
    # notify's review config allows no edit: its case offers no modify
    assert sent_case(signoff, cases[1].id)["actions"] == ["approve", "reject"]
    assert sent_case(signoff, cases[1].id)["metadata"]["langgraph_action_count"] == 2


def test_the_same_interrupt_submitted_again_makes_no_new_cases(
    signoff: Signoff, hooks: Recorder, refund: BaseTool
) -> None:
    agent = hitl_agent(calls(("refund", {"order": "D", "amount": 1})), [refund], {"refund": True})
    interrupt = until_interrupt(agent, "thread-again")
    first = cases_for_interrupt(signoff, interrupt, "thread-again", hooks.url, kind="tool_call")
    again = cases_for_interrupt(signoff, interrupt, "thread-again", hooks.url, kind="tool_call")
    assert [c.id for c in again] == [c.id for c in first]
    signoff.cancel(first[0].id, "test over")


def test_a_review_config_without_reject_is_refused(signoff: Signoff) -> None:
    value = {
        "action_requests": [{"name": "refund", "args": {"amount": 1}}],
        "review_configs": [{"action_name": "refund", "allowed_decisions": ["approve", "edit"]}],
    }
    with pytest.raises(ValueError, match="does not allow reject"):
        cases_for_interrupt(signoff, value, "t", "http://127.0.0.1:1/cb")
    with pytest.raises(ValueError, match="not a HumanInTheLoopMiddleware HITLRequest"):
        cases_for_interrupt(signoff, {"type": "tool_approval"}, "t", "http://127.0.0.1:1/cb")


def test_the_resumer_refuses_forged_and_replayed_callbacks(
    signoff: Signoff, reviewer: Reviewer, hooks: Recorder
) -> None:
    value = {
        "action_requests": [{"name": "refund", "args": {"amount": 1}}],
        "review_configs": [],
    }
    [case] = cases_for_interrupt(
        signoff, value, "thread-forged", hooks.url + "/cb", kind="tool_call"
    )
    reviewer.decide(case.id, "approve")
    [got] = hooks.wait_for(1)
    url = hooks.url + got.path
    with pytest.raises(CallbackError, match="does not match"):
        Resumer("another-secret").handle("POST", url, got.headers, got.body)
    with pytest.raises(CallbackError, match="does not match"):
        Resumer(SECRET).handle(
            "POST", url.replace("lg_index=0", "lg_index=1"), got.headers, got.body
        )
    seen: set[str] = set()
    resumer = Resumer(SECRET, seen=seen)
    resume = resumer.handle("POST", url, got.headers, got.body)
    assert resume is not None
    assert resume.interrupt_id is None  # a bare HITLRequest: no interrupt id
    assert resume.command.resume == {"decisions": [{"type": "approve"}]}
    with pytest.raises(ReplayedCallback):
        resumer.handle("POST", url, got.headers, got.body)
    # a callback of a case that cases_for_interrupt did not make
    plain = signoff.submit(a_case(callback_url=hooks.url + "/plain"))
    reviewer.decide(plain.id, "approve")
    other = hooks.wait_for(2)[1]
    with pytest.raises(CallbackError, match="no lg_thread"):
        Resumer(SECRET).handle("POST", hooks.url + other.path, other.headers, other.body)


def test_resume_command_and_hitl_decision_by_hand() -> None:
    approve = {"type": "decision", "decision": {"action": "approve", "reason": "ok"}}
    edit = {"type": "decision", "decision": {"action": "modify", "args": {"amount": 4}}}
    expired = {"type": "expired", "decision": {"action": "reject", "reason": None}}
    command = resume_command([approve, edit, expired], ["a", "b", "c"])
    assert isinstance(command, Command)
    assert command.resume == {
        "decisions": [
            {"type": "approve"},
            {"type": "edit", "edited_action": {"name": "b", "args": {"amount": 4}}},
            {
                "type": "reject",
                "message": "Nobody decided in time, so the call was rejected by default.",
            },
        ]
    }
    assert hitl_decision({"type": "decision", "decision": {"action": "reject"}}, "x") == {
        "type": "reject"
    }
    with pytest.raises(ValueError, match="carries no decision"):
        hitl_decision({"type": "acknowledged", "decision": None}, "x")
    with pytest.raises(ValueError, match="2 callbacks for 1"):
        resume_command([approve, approve], ["a"])


def test_injected_args_are_not_proposed_and_still_reach_the_tool(
    signoff: Signoff, reviewer: Reviewer, ran: list[tuple[str, Any]]
) -> None:
    @tool
    def lookup(query: str, runtime: ToolRuntime) -> str:
        """Look a customer up."""
        ran.append(("lookup", {"query": query, "call": runtime.tool_call_id}))
        return query.upper()

    gated = gate_tool(lookup, signoff, kind="tool_call", timeout=30)
    agent = create_agent(calls(("lookup", {"query": "acme"})), tools=[gated])
    decided = decide_next(signoff, reviewer, "modify", reason="other one", args={"query": '"acne"'})
    state = agent.invoke({"messages": [{"role": "user", "content": "who is acme?"}]})
    assert ran == [("lookup", {"query": "acne", "call": "call-0"})]
    assert tool_messages(state)[0].content == "ACNE"
    assert sent_case(signoff, decided[0])["proposal"]["args"] == {"query": "acme"}
