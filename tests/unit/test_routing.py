"""SelectOperator: longest prefix, rule priority, weights, failover order, health."""

from __future__ import annotations

from conftest import FakeClock
from hypothesis import given
from hypothesis import strategies as st

from control.routing import (
    Circuits,
    Health,
    PrefixRow,
    RoutingTable,
    RuleOperator,
    RuleRow,
    SelectRequest,
    select,
)

PREFIXES = [PrefixRow("93", "roshan"), PrefixRow("9379", "roshan"), PrefixRow("9370", "awcc"),
            PrefixRow("93701", "salaam")]
ALL_UP = {op: Health() for op in ("roshan", "awcc", "salaam", "mtn", "etisalat")}


def req(destination: str = "93791234567", **kw: str) -> SelectRequest:
    return SelectRequest(destination, kw.pop("tenant_id", "t1"), **kw)


def choose(rules: list[RuleRow], r: SelectRequest, health: dict[str, Health] | None = None,
           draw: float = 0.0, now: float = 1000.0) -> str | None:
    table = RoutingTable(PREFIXES, rules)
    return select(table, r, ALL_UP if health is None else health, now=now,
                  draw=lambda: draw).operator_id


def test_home_network_by_longest_prefix() -> None:
    assert choose([], req("93701234567")) == "salaam"
    assert choose([], req("93709999999")) == "awcc"
    assert choose([], req("93791234567")) == "roshan"
    assert choose([], req("93601234567")) == "roshan"  # only "93" matches
    assert choose([], req("4412345678")) is None


def test_more_specific_rule_prefix_wins_over_priority() -> None:
    broad = RuleRow(1, "broad", priority=1, prefix="93", operators=(RuleOperator("mtn"),))
    narrow = RuleRow(2, "narrow", priority=50, prefix="9379",
                     operators=(RuleOperator("etisalat"),))
    assert choose([broad, narrow], req()) == "etisalat"
    assert choose([broad, narrow], req("93701234567")) == "mtn"


def test_priority_orders_rules_of_equal_prefix() -> None:
    a = RuleRow(1, "a", priority=20, operators=(RuleOperator("mtn"),))
    b = RuleRow(2, "b", priority=10, operators=(RuleOperator("awcc"),))
    assert choose([a, b], req()) == "awcc"


def test_rule_filters_tenant_source_type_and_window() -> None:
    rule = RuleRow(1, "r", tenant_id="t2", source="BANK", message_type="otp",
                   active_from=100.0, active_until=2000.0, operators=(RuleOperator("mtn"),))
    hit = req(tenant_id="t2", source="BANK", message_type="otp")
    assert choose([rule], hit) == "mtn"
    assert choose([rule], req(tenant_id="t1", source="BANK", message_type="otp")) == "roshan"
    assert choose([rule], req(tenant_id="t2", source="SHOP", message_type="otp")) == "roshan"
    assert choose([rule], req(tenant_id="t2", source="BANK")) == "roshan"
    assert choose([rule], hit, now=2000.0) == "roshan"
    assert choose([rule], hit, now=99.0) == "roshan"
    disabled = RuleRow(2, "off", enabled=False, operators=(RuleOperator("mtn"),))
    assert choose([disabled], req()) == "roshan"


def test_weighted_choice_follows_the_draw() -> None:
    rule = RuleRow(1, "split", operators=(RuleOperator("mtn", weight=75),
                                          RuleOperator("awcc", weight=25)))
    assert choose([rule], req(), draw=0.0) == "mtn"
    assert choose([rule], req(), draw=0.74) == "mtn"
    assert choose([rule], req(), draw=0.76) == "awcc"
    assert choose([rule], req(), draw=0.999) == "awcc"


def test_failover_order_and_health_reasons() -> None:
    rule = RuleRow(1, "failover", operators=(
        RuleOperator("mtn", failover_order=0), RuleOperator("awcc", failover_order=0),
        RuleOperator("etisalat", failover_order=1), RuleOperator("salaam", failover_order=2)))
    health = dict(ALL_UP, mtn=Health(bound=False), awcc=Health(circuit_open=True),
                  etisalat=Health(paused=True))
    decision = select(RoutingTable(PREFIXES, [rule]), req(), health, now=0, draw=lambda: 0.5)
    assert decision.operator_id == "salaam"
    assert decision.rule is not None and decision.rule.id == 1
    why = {c.operator_id: (c.taken, c.reason) for c in decision.candidates}
    assert why["mtn"] == (False, "no bound session")
    assert why["awcc"] == (False, "circuit open")
    assert why["etisalat"] == (False, "paused")
    assert why["salaam"][0] is True
    healthy = select(RoutingTable(PREFIXES, [rule]), req(), ALL_UP, now=0, draw=lambda: 0.0)
    reasons = {c.operator_id: c.reason for c in healthy.candidates}
    assert healthy.operator_id == "mtn"
    assert reasons["etisalat"] == reasons["salaam"] == "lower failover order chosen"


def test_unhealthy_rule_falls_to_next_rule_then_home() -> None:
    first = RuleRow(1, "first", priority=1, operators=(RuleOperator("mtn"),))
    second = RuleRow(2, "second", priority=2, operators=(RuleOperator("awcc"),))
    health = dict(ALL_UP, mtn=Health(bound=False))
    assert choose([first, second], req(), health) == "awcc"
    health["awcc"] = Health(paused=True)
    assert choose([first, second], req(), health) == "roshan"
    health["roshan"] = Health(bound=False)
    decision = select(RoutingTable(PREFIXES, [first, second]), req(), health, now=0,
                      draw=lambda: 0.0)
    assert decision.operator_id is None and decision.reason == "no healthy operator"


def test_unconfigured_and_zero_weight_operators_are_skipped() -> None:
    rule = RuleRow(1, "r", operators=(RuleOperator("ghost"), RuleOperator("mtn", weight=0),
                                      RuleOperator("awcc", failover_order=1)))
    decision = select(RoutingTable(PREFIXES, [rule]), req(), ALL_UP, now=0, draw=lambda: 0.0)
    why = {c.operator_id: c.reason for c in decision.candidates}
    assert decision.operator_id == "awcc"
    assert why["ghost"] == "not configured in this daemon"
    assert why["mtn"] == "weight 0"


@given(weights=st.lists(st.integers(1, 1000), min_size=1, max_size=6),
       draw=st.floats(0, 1, exclude_max=True))
def test_draw_always_picks_a_usable_member(weights: list[int], draw: float) -> None:
    ops = tuple(RuleOperator(f"op{i}", weight=w) for i, w in enumerate(weights))
    health = {o.operator_id: Health() for o in ops}
    rule = RuleRow(1, "r", operators=ops)
    decision = select(RoutingTable([], [rule]), req(), health, now=0, draw=lambda: draw)
    assert decision.operator_id in health
    assert sum(c.taken for c in decision.candidates) == 1


def test_select_is_a_dry_run() -> None:
    table = RoutingTable(PREFIXES, [RuleRow(1, "r", operators=(RuleOperator("mtn"),))])
    before = (dict(table.prefixes), list(table.rules))
    for _ in range(3):
        select(table, req(), ALL_UP, now=0, draw=lambda: 0.3)
    assert (table.prefixes, table.rules) == before


def test_circuit_opens_after_failures_and_closes(clock: FakeClock) -> None:
    circuits = Circuits(threshold=3, cooldown=10.0, clock=clock)
    for _ in range(2):
        circuits.record("mtn", False)
    assert not circuits.is_open("mtn")
    circuits.record("mtn", False)
    assert circuits.is_open("mtn")
    clock.advance(10.0)
    assert not circuits.is_open("mtn")  # half-open: tried again
    circuits.record("mtn", True)
    circuits.record("mtn", False)
    assert not circuits.is_open("mtn")
