"""SelectOperator: which operator carries a message, and why.

Pure logic over rows (rules, prefixes) and a health snapshot: no IO, no clock of its
own (``now`` and the random draw are arguments), so a dry run is the same call as a
real one and changes nothing.

Order of decision:
1. the destination's longest matching prefix in ``destination_prefixes`` (its home
   operator is the fallback when no rule applies);
2. the rules that match (enabled, inside their active window, tenant / source /
   message type equal when the rule sets them, destination starting with the rule's
   prefix when it sets one), most specific prefix first, then ``priority`` ascending
   (lower runs first), then id;
3. within a rule, the lowest ``failover_order`` group that has a healthy operator,
   and a weighted draw among that group's healthy operators (weight 0 = never);
4. no rule yields a healthy operator: the home operator, if healthy.

Healthy means configured in this daemon, not paused, at least one bound session, and
no open circuit (``Circuits``: repeated submit failures open it for a cooldown).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

MESSAGE_TYPES = ("transactional", "promotional", "otp", "service")


@dataclass(frozen=True, slots=True)
class PrefixRow:
    prefix: str
    operator_id: str
    country_code: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class RuleOperator:
    operator_id: str
    weight: int = 100
    failover_order: int = 0


@dataclass(frozen=True, slots=True)
class RuleRow:
    id: int
    name: str
    priority: int = 100
    tenant_id: str | None = None
    prefix: str | None = None
    source: str | None = None
    message_type: str | None = None
    active_from: float | None = None  # epoch seconds
    active_until: float | None = None
    enabled: bool = True
    operators: tuple[RuleOperator, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["operators"] = [asdict(o) for o in self.operators]
        return out


@dataclass(frozen=True, slots=True)
class Health:
    configured: bool = True
    bound: bool = True
    paused: bool = False
    circuit_open: bool = False

    def problem(self) -> str | None:
        """Why this operator cannot take a message now (None: it can)."""
        if not self.configured:
            return "not configured in this daemon"
        if self.paused:
            return "paused"
        if not self.bound:
            return "no bound session"
        if self.circuit_open:
            return "circuit open"
        return None


UNKNOWN = Health(configured=False, bound=False)


@dataclass(frozen=True, slots=True)
class SelectRequest:
    destination: str
    tenant_id: str
    source: str | None = None
    message_type: str | None = None


@dataclass(slots=True)
class Candidate:
    operator_id: str
    rule_id: int | None
    failover_order: int | None
    weight: int | None
    taken: bool
    reason: str


@dataclass(slots=True)
class Decision:
    operator_id: str | None
    rule: RuleRow | None
    prefix: PrefixRow | None
    candidates: list[Candidate] = field(default_factory=list)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "operator_id": self.operator_id,
            "rule": self.rule.to_dict() if self.rule is not None else None,
            "prefix": asdict(self.prefix) if self.prefix is not None else None,
            "reason": self.reason,
            "candidates": [asdict(c) for c in self.candidates],
        }


class RoutingTable:
    """Rules and prefixes indexed for selection (built once per load, read-only)."""

    def __init__(self, prefixes: Iterable[PrefixRow], rules: Iterable[RuleRow]) -> None:
        self.prefixes: dict[str, PrefixRow] = {p.prefix: p for p in prefixes}
        self.rules: list[RuleRow] = sorted(
            rules, key=lambda r: (-len(r.prefix or ""), r.priority, r.id))
        self._lengths = sorted({len(p) for p in self.prefixes}, reverse=True)

    def longest_prefix(self, destination: str) -> PrefixRow | None:
        for length in self._lengths:
            if length <= len(destination):
                row = self.prefixes.get(destination[:length])
                if row is not None:
                    return row
        return None

    def matching_rules(self, req: SelectRequest, now: float) -> list[RuleRow]:
        return [r for r in self.rules if rule_matches(r, req, now)]


def rule_matches(rule: RuleRow, req: SelectRequest, now: float) -> bool:
    if not rule.enabled:
        return False
    if rule.active_from is not None and now < rule.active_from:
        return False
    if rule.active_until is not None and now >= rule.active_until:
        return False
    if rule.tenant_id is not None and rule.tenant_id != req.tenant_id:
        return False
    if rule.source is not None and rule.source != req.source:
        return False
    if rule.message_type is not None and rule.message_type != req.message_type:
        return False
    return rule.prefix is None or req.destination.startswith(rule.prefix)


def select(table: RoutingTable, req: SelectRequest, health: Mapping[str, Health], *,
           now: float, draw: Callable[[], float]) -> Decision:
    """Choose an operator; ``draw`` returns a float in [0, 1) for the weighted choice."""
    prefix = table.longest_prefix(req.destination)
    decision = Decision(None, None, prefix)
    for rule in table.matching_rules(req, now):
        chosen = _from_rule(rule, health, draw, decision.candidates)
        if chosen is not None:
            decision.operator_id, decision.rule = chosen, rule
            decision.reason = f"rule {rule.id} ({rule.name})"
            return decision
    if prefix is not None:
        problem = health.get(prefix.operator_id, UNKNOWN).problem()
        taken = problem is None
        decision.candidates.append(Candidate(prefix.operator_id, None, None, None, taken,
                                             "home network of prefix " + prefix.prefix
                                             if taken else problem or ""))
        if taken:
            decision.operator_id = prefix.operator_id
            decision.reason = f"home network of prefix {prefix.prefix}"
            return decision
    decision.reason = ("no healthy operator" if decision.candidates
                       else "no rule or prefix matches the destination")
    return decision


def _from_rule(rule: RuleRow, health: Mapping[str, Health], draw: Callable[[], float],
               out: list[Candidate]) -> str | None:
    chosen: str | None = None
    for order in sorted({o.failover_order for o in rule.operators}):
        group = [o for o in rule.operators if o.failover_order == order]
        if chosen is not None:
            out.extend(Candidate(o.operator_id, rule.id, order, o.weight, False,
                                 "lower failover order chosen") for o in group)
            continue
        usable: list[RuleOperator] = []
        for o in group:
            problem = health.get(o.operator_id, UNKNOWN).problem()
            if problem is None and o.weight <= 0:
                problem = "weight 0"
            if problem is not None:
                out.append(Candidate(o.operator_id, rule.id, order, o.weight, False, problem))
            else:
                usable.append(o)
        if not usable:
            continue
        chosen = _weighted(usable, draw())
        total = sum(o.weight for o in usable)
        for o in usable:
            taken = o.operator_id == chosen
            share = f"weight {o.weight}/{total}"
            out.append(Candidate(o.operator_id, rule.id, order, o.weight, taken,
                                 share if taken else share + ", not drawn"))
    return chosen


def _weighted(group: list[RuleOperator], x: float) -> str:
    total = sum(o.weight for o in group)
    point = x * total
    for o in group:
        point -= o.weight
        if point < 0:
            return o.operator_id
    return group[-1].operator_id


class Circuits:
    """Per-operator circuit breaker: ``threshold`` failures in a row open it for
    ``cooldown`` seconds; then one success closes it (half-open in between)."""

    def __init__(self, threshold: int = 5, cooldown: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self._failures: dict[str, int] = {}
        self._opened: dict[str, float] = {}

    def record(self, operator_id: str, ok: bool) -> None:
        if ok:
            self._failures.pop(operator_id, None)
            self._opened.pop(operator_id, None)
            return
        count = self._failures.get(operator_id, 0) + 1
        self._failures[operator_id] = count
        if count >= self.threshold:
            self._opened[operator_id] = self.clock()

    def is_open(self, operator_id: str) -> bool:
        opened = self._opened.get(operator_id)
        return opened is not None and self.clock() - opened < self.cooldown
