"""`require_approval`: a function's call becomes a case with a `proposal` (the
function's name, the call's arguments as JSON, the ones a reviewer may edit); approve
runs the call, modify runs it with the reviewer's arguments, reject raises Rejected.
Both clients wrap functions with the same plan (see `_core`)."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_jsonable_python

from signoff_client import _core
from signoff_client._core import Config, OnTimeout, Plan
from signoff_client.errors import Rejected, SignoffError
from signoff_client.models import Decision

#: parameters that are the object a method is bound to, never part of a proposal
BOUND = ("self", "cls")
#: a title or question given as text, or computed per call from the call's arguments
PerCall = str | Callable[..., str] | None


@dataclass(frozen=True)
class Spec:
    kind: str
    title: PerCall
    question: PerCall
    recommendation: Mapping[str, Any] | Callable[..., Mapping[str, Any]] | None
    editable: Collection[str] | None
    timeout: float
    on_timeout: OnTimeout
    fields: Mapping[str, Any]


#: without a recommendation the call is still what the AI wants, but nobody said how
#: sure it is: confidence 0 sends it to the most careful lane a policy has
UNSURE = {"action": "approve", "confidence": 0.0, "rationale": "no confidence was given"}


def _humane(name: str) -> str:
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else name


def _per_call(given: Any, bound: inspect.BoundArguments) -> Any:
    return given(*bound.args, **bound.kwargs) if callable(given) else given


def bind(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    return bound


def proposed_args(bound: inspect.BoundArguments) -> dict[str, Any]:
    """The call's arguments as JSON values, by parameter name (`*args` as a list,
    `**kwargs` as an object)."""
    found = {}
    for name, value in bound.arguments.items():
        if name in BOUND:
            continue
        try:
            found[name] = to_jsonable_python(value)
        except Exception as exc:  # pydantic's error names the type it could not write
            raise SignoffError(
                None, f"argument {name!r} cannot be written as JSON for the proposal: {exc}"
            ) from exc
    return found


def case_for(spec: Spec, fn: Callable[..., Any], bound: inspect.BoundArguments) -> dict[str, Any]:
    """The case body for one call of `fn`."""
    name = fn.__name__
    doc = inspect.getdoc(fn) or ""
    first, _, rest = doc.partition("\n")
    args = proposed_args(bound)
    title = _per_call(spec.title, bound) or first.strip() or _humane(name)
    question = _per_call(spec.question, bound) or f"May the workflow run {name} as proposed?"
    recommendation = _per_call(spec.recommendation, bound) or UNSURE
    body: dict[str, Any] = {
        "kind": spec.kind,
        "title": title,
        "question": question,
        "recommendation": dict(recommendation),
        **spec.fields,
        "proposal": {"name": name, "args": args, "editable": list(spec.editable or ())},
    }
    if rest.strip() and "summary" not in spec.fields:
        body["summary"] = rest.strip()
    return body


def flow(cfg: Config, spec: Spec, body: Mapping[str, Any]) -> Plan[Decision]:
    """Submit, wait, and settle: the decision if approved; Rejected otherwise. A case
    the workflow stopped waiting for is cancelled, so that nobody approves a call that
    will never run."""
    case = yield from _core.submit(cfg, body)
    if case.terminal:
        decision = _core.settled(case)
    else:
        decision = yield from _core.wait(cfg, case.id, spec.timeout, spec.on_timeout)
    if decision.timed_out:
        # decided meanwhile, or unreachable: the timeout's answer stands either way
        with contextlib.suppress(SignoffError):
            yield from _core.cancel(cfg, case.id, "the workflow stopped waiting for a decision")
    if not decision.approved:
        raise Rejected(case.id, decision)
    return decision


def call_args(
    bound: inspect.BoundArguments, decision: Decision
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments to run the call with: a modify's edited ones in place of those it
    changed (an argument it left as it was keeps its original Python value)."""
    if decision.action != "modify" or decision.args is None:
        return bound.args, bound.kwargs
    edited = inspect.BoundArguments(bound.signature, bound.arguments.copy())
    original = proposed_args(bound)
    for name, value in decision.args.items():
        if name in edited.arguments and name not in BOUND and original.get(name) != value:
            edited.arguments[name] = value
    return edited.args, edited.kwargs
