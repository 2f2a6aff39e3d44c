"""@require_approval against a real server: a call becomes a case with a proposal."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from serverkit import Reviewer

from signoff_client import AsyncSignoff, Rejected, Signoff

RECOMMEND = {"action": "approve", "confidence": 0.8}


def decide_when_open(signoff: Signoff, reviewer: Reviewer, action: str, **form: Any) -> list[str]:
    """Decide, in a thread, the next case that shows up open; its id lands in the list."""
    seen = set(_open(signoff))
    found: list[str] = []

    def run() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            fresh = [c for c in _open(signoff) if c not in seen]
            if fresh:
                found.append(fresh[0])
                reviewer.decide(fresh[0], action, **form)
                return
            time.sleep(0.1)

    threading.Thread(target=run, daemon=True).start()
    return found


def _open(signoff: Signoff) -> list[str]:
    return [case.id for case in signoff.cases(status="pending").items]


def test_approve_runs_the_call_with_its_arguments(signoff: Signoff, reviewer: Reviewer) -> None:
    ran: list[tuple[str, int]] = []

    @signoff.require_approval(kind="tool_call", recommendation=RECOMMEND, timeout=30)
    def send_invoice(customer: str, amount: int = 100) -> str:
        """Send an invoice to a customer.

        The agent drafted it from the order."""
        ran.append((customer, amount))
        return "sent"

    decided = decide_when_open(signoff, reviewer, "approve", reason="ok")
    assert send_invoice("acme", amount=250) == "sent"
    assert ran == [("acme", 250)]
    case = signoff.get(decided[0])
    assert case.title == "Send an invoice to a customer."
    sent = case.model_extra or {}
    body = sent["case"]
    assert body["proposal"] == {
        "name": "send_invoice",
        "args": {"customer": "acme", "amount": 250},
        "editable": [],
    }
    assert body["summary"] == "The agent drafted it from the order."
    assert body["question"] == "May the workflow run send_invoice as proposed?"


def test_reject_raises_rejected_with_the_reason(signoff: Signoff, reviewer: Reviewer) -> None:
    ran: list[str] = []

    @signoff.require_approval(
        kind="tool_call",
        title=lambda to, text: f"Email {to}",
        recommendation=RECOMMEND,
        timeout=30,
    )
    def send_email(to: str, text: str) -> None:
        ran.append(to)

    decide_when_open(signoff, reviewer, "reject", reason_code="not_authorized", reason="no spam")
    with pytest.raises(Rejected) as rejected:
        send_email("bob@example.com", "hello")
    assert ran == []
    assert rejected.value.reason == "no spam"
    assert rejected.value.decision.reason_code == "not_authorized"
    assert rejected.value.decision.reviewer == "web:alice@example.com"
    assert "no spam" in str(rejected.value)
    assert signoff.get(rejected.value.case_id).title == "Email bob@example.com"


def test_modify_runs_the_call_with_the_reviewers_arguments(
    signoff: Signoff, reviewer: Reviewer
) -> None:
    ran: list[tuple[str, int]] = []

    @signoff.require_approval(
        kind="tool_call", recommendation=RECOMMEND, editable=["amount"], timeout=30
    )
    def refund(order: str, amount: int) -> None:
        ran.append((order, amount))

    decide_when_open(signoff, reviewer, "modify", reason="too much", args={"amount": "40"})
    refund("A-17", 400)
    assert ran == [("A-17", 40)]


def test_a_timeout_rejects_and_withdraws_the_case(signoff: Signoff) -> None:
    @signoff.require_approval(kind="tool_call", recommendation=RECOMMEND, timeout=1)
    def delete_everything() -> None:
        raise AssertionError("ran without approval")

    with pytest.raises(Rejected) as rejected:
        delete_everything()
    assert rejected.value.decision.timed_out
    assert rejected.value.decision.decided_by == "timeout"
    assert signoff.get(rejected.value.case_id).status == "cancelled"


def test_the_auto_lane_runs_the_call_at_once(signoff: Signoff) -> None:
    @signoff.require_approval(
        kind="tool_call", recommendation={"action": "approve", "confidence": 0.99}, timeout=5
    )
    def lookup(query: str) -> str:
        return query.upper()

    assert lookup("x") == "X"


async def test_an_async_function_with_the_sync_client(signoff: Signoff, reviewer: Reviewer) -> None:
    @signoff.require_approval(kind="tool_call", recommendation=RECOMMEND, timeout=30)
    async def publish(post: str) -> str:
        await asyncio.sleep(0)
        return f"published {post}"

    decide_when_open(signoff, reviewer, "approve", reason="fine")
    assert await publish("hello") == "published hello"


async def test_the_async_client(
    signoff: Signoff, asignoff: AsyncSignoff, reviewer: Reviewer
) -> None:
    @asignoff.require_approval(kind="tool_call", recommendation=RECOMMEND, timeout=30)
    async def transfer(amount: float) -> float:
        return amount

    decide_when_open(signoff, reviewer, "reject", reason_code="other", reason="not today")
    with pytest.raises(Rejected, match="not today"):
        await transfer(12.5)

    with pytest.raises(TypeError, match="async functions"):

        @asignoff.require_approval(kind="tool_call")
        def plain() -> None:
            pass
