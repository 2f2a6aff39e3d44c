"""Build the platform-neutral `CardView` of a case from what the store holds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from bot.calendar import WorkingTime
from bot.durations import parse_duration
from bot.policy import LoadedPolicy, explain
from bot.protocols import CardView, Fact, Link, Outcome, ProposalView
from bot.schemas import CaseIn
from policies.schema import Lane


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def why_routed(row: Mapping[str, Any], body: Mapping[str, Any], policy: LoadedPolicy) -> list[str]:
    """Why the matched rule matched, in words (`confidence 0.82 is below 0.90`), when
    the running policy is the one that routed the case; otherwise nothing."""
    if row.get("policy_version") != policy.version:
        return []
    try:
        case = CaseIn.model_validate(body)
    except ValidationError:
        return []
    last = explain(policy, case)[-1]
    return [r for r in last.reasons if r != "no conditions"] if last.matched else []


AT_RISK = 0.2  # the last fifth of the SLA


def _sla_state(due: datetime, now: datetime, case_sla: Any, lane: Lane | None) -> str:
    """`overdue` past the due time, `at_risk` in the SLA's last fifth (of working
    time, when the lane keeps business hours), else `on_time`."""
    if due <= now:
        return "overdue"
    left = WorkingTime(lane.hours if lane else None).between(now, due)
    total = parse_duration(case_sla) if case_sla else (lane.sla if lane else None)
    return "at_risk" if total and left <= total * AT_RISK else "on_time"


def build_card(
    row: Mapping[str, Any],
    body: Mapping[str, Any],
    decision_rows: Sequence[Mapping[str, Any]],
    policy: LoadedPolicy,
    *,
    audit: bool = False,
    info_question: str | None = None,
    with_why: bool = True,
    now: datetime | None = None,
) -> CardView:
    rec = body["recommendation"]
    alternatives = rec.get("alternatives") or []
    scored = [a for a in alternatives if a.get("confidence") is not None]
    runner = (
        max(scored, key=lambda a: a["confidence"])
        if scored
        else (alternatives[0] if alternatives else None)
    )
    risk = body.get("risk") or {}
    facts = [
        Fact(f"risk.{key}", _text(risk[key]))
        for key in ("amount", "currency", "level", "reversible", "customer_tier")
        if risk.get(key) is not None
    ]
    facts += [Fact(str(k), _text(v)) for k, v in (body.get("facts") or {}).items()]
    outcomes = [
        Outcome(
            d["action"],
            d["decided_by"],
            d["reviewer"],
            d["reason_code"],
            d["reason"],
            d["at"],
            orjson.loads(d["args"]) if d.get("args") else None,
        )
        for d in decision_rows
    ]
    final = next((o for o, d in zip(outcomes, decision_rows, strict=True) if d["final"]), None)
    lane = policy.lane(str(row["lane"]))
    status = str(row["status"])
    decided = status not in ("pending", "info_requested")
    sla_state = None
    if not decided and now is not None and row["due_at"] is not None:
        sla_state = _sla_state(row["due_at"], now, body.get("sla"), lane)
    return CardView(
        case_id=str(row["id"]),
        lane=str(row["lane"]),
        kind=str(row["kind"]),
        status=status,
        title=str(body["title"]),
        question=str(body["question"]),
        summary=str(body.get("summary") or ""),
        recommended_action=str(rec["action"]),
        confidence=float(rec["confidence"]),
        rationale=str(rec.get("rationale") or ""),
        runner_up=runner["action"] if runner else None,
        runner_up_confidence=runner.get("confidence") if runner else None,
        hide_recommendation=bool(row["blind_review"]) and not decided,
        rule=str(row["rule"]),
        why=why_routed(row, body, policy) if with_why else [],
        sla_state=sla_state,
        flags=list(body.get("flags") or []),
        facts=facts,
        evidence=[
            Link(e["label"], e.get("url"), e.get("excerpt") or "")
            for e in body.get("evidence") or []
        ],
        policy_refs=[Link(p["label"], p.get("url")) for p in body.get("policy_refs") or []],
        history=[h["text"] for h in body.get("history") or []],
        due_at=row["due_at"],
        actions=[] if decided or audit else list(body.get("actions") or []),
        reason_codes=policy.policy.reason_codes(str(row["kind"])),
        audit=audit,
        acknowledged_by=row["acknowledged_by"],
        claimed_by=row.get("claimed_by") if not decided else None,
        needs_ack=bool(lane and lane.ack_within) and row["acknowledged_at"] is None and not decided,
        outcome=final,
        votes=[o for o in outcomes if final is None or o is not final],
        info_question=info_question if status == "info_requested" else None,
        proposal=_proposal(body.get("proposal")),
    )


def _proposal(found: Any) -> ProposalView | None:
    if not isinstance(found, Mapping):
        return None
    args = dict(found.get("args") or {})
    return ProposalView(str(found["name"]), args, list(found.get("editable") or args))
