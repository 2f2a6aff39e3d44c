"""Loading a policy file (with errors that name the line and field) and routing cases.

`load_policy` checks a file against `policies.schema.Policy`; `route` finds the first
rule whose conditions all hold; `explain` says, rule by rule, why each did or did not.
The policy's version is the SHA-256 of the file's bytes, so two files that differ in
any way are two versions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bot.errors import PolicyError
from bot.schemas import CaseIn
from bot.validation import explain as explain_error
from policies import DEFAULT_POLICY
from policies.schema import Condition, Lane, Policy, Rule

MAX_POLICY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    version: str
    path: str

    def lane(self, name: str) -> Lane | None:
        return self.policy.lanes.get(name)


@dataclass(frozen=True)
class Routing:
    lane: str
    rule_index: int
    rule_label: str
    audit_sample: float


@dataclass(frozen=True)
class RuleVerdict:
    index: int
    label: str
    lane: str
    matched: bool
    reasons: list[str]


def policy_version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def load_policy(path: str | Path | None = None) -> LoadedPolicy:
    """Read and check a policy file; raise PolicyError naming the line and field."""
    file = Path(path) if path else DEFAULT_POLICY
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{file}: cannot read the policy file: {exc.strerror}") from exc
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError(f"{file}: the policy file is larger than 1 MiB")
    return parse_policy(data, str(file))


def parse_policy(data: bytes, name: str = "<policy>") -> LoadedPolicy:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{name}: the policy file is not UTF-8") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{name}:{_yaml_problem(exc)}") from exc
    if node is None:
        raise PolicyError(f"{name}:1: the policy file is empty")
    duplicates = list(_duplicate_keys(node, ()))
    if duplicates:
        problems = [f"{name}:{line}: {_dotted(loc)}: key appears twice" for loc, line in duplicates]
        raise PolicyError("\n".join(problems), problems)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # e.g. a `!!python/...` tag, an unhashable key
        raise PolicyError(f"{name}:{_yaml_problem(exc)}") from exc
    except ValueError as exc:  # e.g. a timestamp like 2026-13-45
        raise PolicyError(f"{name}:{node.start_mark.line + 1}: cannot read a value: {exc}") from exc
    if not isinstance(raw, dict):
        raise PolicyError(
            f"{name}:{node.start_mark.line + 1}: the policy file must be a mapping "
            "(lanes, kinds, rules, ...)"
        )
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            # a bad mapping key is told at its mapping, on the key's own line
            line = _line_of(node, tuple(p for p in error["loc"] if p != "[key]"))
            loc, message = explain_error(error, Policy)
            where = _dotted(loc) or "(top level)"
            problems.append(f"{name}:{line}: {where}: {message}")
        raise PolicyError("\n".join(problems), problems) from exc
    return LoadedPolicy(policy=policy, version=policy_version(data), path=name)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """`LINE: column C: problem`, to follow `file:`."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"{mark.line + 1}: column {mark.column + 1}: {problem}"
    return f"1: {problem}"


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":  # pydantic's mark for a bad mapping key: `lanes.On-Call[key]`
            out += part
        else:
            out += ("." if out else "") + str(part)
    return out


def _line_of(node: yaml.Node, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the deepest key or item that `loc` reaches in the composed YAML.

    A key's own line, not its value's: `expert:` rather than the first line of its body.
    """
    current, line = node, node.start_mark.line
    for part in loc:
        child = None
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                if str(key.value) == str(part):
                    child, line = value, key.start_mark.line
                    break
        elif (
            isinstance(current, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(current.value)
        ):
            child = current.value[part]
            line = child.start_mark.line
        if child is None:
            break
        current = child
    return int(line) + 1


def _duplicate_keys(node: yaml.Node, loc: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], int]]:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            if name in seen:
                yield (*loc, name), int(key.start_mark.line) + 1
            seen.add(name)
            yield from _duplicate_keys(value, (*loc, name))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*loc, index))


def rule_label(rule: Rule, index: int) -> str:
    return rule.name or f"rule {index + 1}"


def _not(ok: bool) -> str:
    return "" if ok else "not "


def _checks(cond: Condition, case: CaseIn, why: bool = True) -> Iterator[tuple[bool, str]]:
    """(holds, why) for every condition set on a rule, in the file's order; the reasons
    are written only when `why` (routing needs just the verdicts)."""
    rec, risk = case.recommendation, case.risk
    if cond.kind is not None:
        yield (
            case.kind in cond.kind,
            (f"kind {case.kind!r} {'is' if case.kind in cond.kind else 'is not'} in {cond.kind}")
            if why
            else "",
        )
    if cond.source is not None:
        ok = case.source in cond.source
        yield ok, (f"source {case.source!r} {_not(ok)}in {cond.source}" if why else "")
    if cond.confidence_below is not None:
        ok = rec.confidence < cond.confidence_below
        yield (
            ok,
            (f"confidence {rec.confidence:.2f} is {_not(ok)}below {cond.confidence_below:.2f}")
            if why
            else "",
        )
    if cond.confidence_at_least is not None:
        ok = rec.confidence >= cond.confidence_at_least
        yield (
            ok,
            (
                f"confidence {rec.confidence:.2f} is {_not(ok)}at least "
                f"{cond.confidence_at_least:.2f}"
            )
            if why
            else "",
        )
    if cond.margin_below is not None:
        margin = rec.margin()
        if margin is None:
            yield False, ("no scored runner-up, so no margin to compare" if why else "")
        else:
            margin = round(margin, 9)  # 0.6 - 0.4 is 0.19999999999999996, not below 0.2
            ok = margin < cond.margin_below
            yield (
                ok,
                (
                    f"margin {margin:.2f} over the runner-up is {_not(ok)}below "
                    f"{cond.margin_below:.2f}"
                )
                if why
                else "",
            )
    if cond.amount_at_least is not None:
        ok = risk.amount is not None and risk.amount >= cond.amount_at_least
        yield (
            ok,
            (
                f"amount {risk.amount} is {'' if ok else 'not '}at least {cond.amount_at_least:g}"
                if why
                else ""
            ),
        )
    if cond.amount_below is not None:
        ok = risk.amount is not None and risk.amount < cond.amount_below
        yield (
            ok,
            (
                f"amount {risk.amount} is {'' if ok else 'not '}below {cond.amount_below:g}"
                if why
                else ""
            ),
        )
    if cond.currency is not None:
        ok = risk.currency in cond.currency
        yield ok, (f"currency {risk.currency} vs {cond.currency}" if why else "")
    if cond.reversible is not None:
        ok = risk.reversible is cond.reversible
        yield (
            ok,
            (
                f"reversible is {risk.reversible}, the rule asks for {cond.reversible}"
                if why
                else ""
            ),
        )
    if cond.risk_level is not None:
        ok = risk.level in cond.risk_level
        yield ok, (f"risk level {risk.level} vs {cond.risk_level}" if why else "")
    if cond.customer_tier is not None:
        ok = risk.customer_tier in cond.customer_tier
        yield ok, (f"customer tier {risk.customer_tier!r} vs {cond.customer_tier}" if why else "")
    if cond.compliance_any is not None:
        hit = sorted(set(cond.compliance_any) & set(risk.compliance))
        yield (
            bool(hit),
            (f"compliance tags {hit or 'none'} of {cond.compliance_any}" if why else ""),
        )
    if cond.flags_any is not None:
        hit = sorted(set(cond.flags_any) & set(case.flags))
        yield (
            bool(hit),
            (f"flags {hit} raised" if hit else f"none of the flags {cond.flags_any} raised")
            if why
            else "",
        )
    if cond.flags_all is not None:
        missing = sorted(set(cond.flags_all) - set(case.flags))
        yield (
            not missing,
            (f"flags {missing} not raised" if missing else f"all flags {cond.flags_all} raised")
            if why
            else "",
        )


def explain(loaded: LoadedPolicy, case: CaseIn) -> list[RuleVerdict]:
    """Every rule up to and including the first match, with the reasons for each verdict."""
    verdicts = []
    for index, rule in enumerate(loaded.policy.rules):
        checks = list(_checks(rule.when, case)) if rule.when else [(True, "no conditions")]
        matched = all(ok for ok, _ in checks)
        reasons = (
            [why for ok, why in checks if ok] if matched else [why for ok, why in checks if not ok]
        )
        verdicts.append(RuleVerdict(index, rule_label(rule, index), rule.lane, matched, reasons))
        if matched:
            break
    return verdicts


def route(loaded: LoadedPolicy, case: CaseIn) -> Routing:
    for index, rule in enumerate(loaded.policy.rules):
        if rule.when is None or all(ok for ok, _ in _checks(rule.when, case, why=False)):
            return Routing(rule.lane, index, rule_label(rule, index), rule.audit_sample)
    raise AssertionError("the schema guarantees a final catch-all rule")  # pragma: no cover
