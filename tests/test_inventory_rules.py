"""Pure inventory rules: FEFO allocation, the breach state machine, days of supply and risk
levels, key priority, the replenishment cost center and contract (unit + hypothesis)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from supplybus.consumers.inventory.replenishment import (
    MAX_DAYS,
    BreachState,
    Contract,
    CostCenter,
    cheapest_contract,
    daily_usage,
    days_of_supply,
    key_priority,
    next_breach,
    price_per,
    replenishment_cost_center,
    risk_level,
)
from supplybus.consumers.inventory.stock_rules import NO_LOT, Lot, allocate, fefo_key, is_expired

DAY = dt.date(2026, 12, 1)
D = Decimal


def test_fefo_takes_the_earliest_expiry_first_across_lots() -> None:
    lots = [
        Lot("LATE", DAY + dt.timedelta(days=90), D(5)),
        Lot(NO_LOT, None, D(10)),
        Lot("EARLY", DAY + dt.timedelta(days=10), D(3)),
        Lot("NOEXP", None, D(2)),
    ]
    got = allocate(lots, D(9), day=DAY, skip_expired=True)
    assert got == [("EARLY", D(3)), ("LATE", D(5)), ("NOEXP", D(1))]


def test_an_issue_skips_expired_lots_and_a_write_off_takes_them_first() -> None:
    lots = [Lot("OLD", DAY - dt.timedelta(days=1), D(4)), Lot("NEW", DAY, D(4))]
    assert allocate(lots, D(2), day=DAY, skip_expired=True) == [("NEW", D(2))]
    assert allocate(lots, D(2), day=DAY, skip_expired=False) == [("OLD", D(2))]
    assert is_expired(DAY - dt.timedelta(days=1), DAY) and not is_expired(DAY, DAY)


def test_issuing_more_than_on_hand_puts_the_shortfall_on_the_no_lot_bucket() -> None:
    lots = [Lot("A", DAY, D(2)), Lot(NO_LOT, None, D(1))]
    assert allocate(lots, D(5), day=DAY, skip_expired=True) == [("A", D(2)), (NO_LOT, D(3))]


lots_strategy = st.lists(
    st.builds(
        Lot,
        st.sampled_from(["A", "B", "C", "D", "E", NO_LOT]),
        st.none() | st.dates(DAY - dt.timedelta(days=5), DAY + dt.timedelta(days=60)),
        st.decimals(-5, 50, places=3),
    ),
    max_size=6,
    unique_by=lambda lot: lot.lot_number,
)


@given(lots=lots_strategy, quantity=st.decimals("0.001", 200, places=3), skip=st.booleans())
def test_fefo_properties(lots: list[Lot], quantity: Decimal, skip: bool) -> None:
    got = allocate(lots, quantity, day=DAY, skip_expired=skip)
    taken = dict(got)
    assert len(taken) == len(got), "a lot appears twice"
    assert sum(taken.values()) == quantity, "allocations must sum to the quantity"
    assert all(q > 0 for q in taken.values())
    by_lot = {lot.lot_number: lot for lot in lots}
    eligible = [
        lot for lot in lots if lot.on_hand > 0 and not (skip and is_expired(lot.expiry, DAY))
    ]
    for name, q in taken.items():
        lot = by_lot.get(name)
        if name != NO_LOT:  # only the no-lot bucket takes a shortfall
            assert lot is not None and lot in eligible and q <= lot.on_hand, "lot overdrawn"
    for lot in eligible:  # an earlier-expiring lot is emptied before a later one is touched
        left = lot.on_hand - taken.get(lot.lot_number, D(0))
        if left > 0:
            later = [o for o in eligible if fefo_key(o) > fefo_key(lot)]
            assert all(o.lot_number not in taken for o in later), "a later lot taken first"
            assert lot.lot_number == NO_LOT or NO_LOT not in taken, "shortfall with stock left"


def test_breach_fires_once_and_rearms_above_the_reorder_point() -> None:
    state = BreachState()
    fired = []
    for position in (D(30), D(20), D(15), D(10), D(20), D(21), D(20), D(5)):
        state, fire = next_breach(state, position, D(20))
        fired.append(fire)
    assert fired == [False, True, False, False, False, False, True, False]
    assert state == BreachState(True, 2)


@given(st.lists(st.decimals(-10, 60, places=3), max_size=40), st.decimals(0, 50, places=3))
def test_one_breach_per_fall_to_the_reorder_point(positions: list[Decimal], point: Decimal) -> None:
    state, fires = BreachState(), 0
    falls, above = 0, True
    for position in positions:
        state, fire = next_breach(state, position, point)
        fires += fire
        if above and position <= point:
            falls += 1
        above = position > point
        assert state.breached == (not above)
    assert fires == falls == state.seq


def test_days_of_supply_and_levels() -> None:
    issued = {DAY: D(14), DAY - dt.timedelta(days=13): D(14), DAY - dt.timedelta(days=14): D(99)}
    usage = daily_usage(issued, DAY, days=14)
    assert usage == D(2)
    assert days_of_supply(D(1), usage) == D("0.50") and risk_level(D("0.50")) == "CRITICAL"
    assert risk_level(D(1)) == "HIGH" and risk_level(D("6.99")) == "MEDIUM"
    assert risk_level(D(7)) == "LOW"
    assert days_of_supply(D(5), D(0)) == MAX_DAYS and days_of_supply(D(0), D(0)) == 0


@given(st.decimals(0, 10**6, places=3), st.decimals(0, 10**4, places=3))
def test_days_of_supply_is_bounded_and_monotone(on_hand: Decimal, usage: Decimal) -> None:
    days = days_of_supply(on_hand, usage)
    assert D(0) <= days <= MAX_DAYS
    assert days_of_supply(on_hand + 1, usage) >= days


def test_priority_belongs_to_the_item() -> None:
    assert key_priority("CONTROLLED_SUBSTANCE") == key_priority("IMPLANT") == "CRITICAL"
    assert key_priority("MED_SURG") == "ROUTINE"


def test_replenishment_cost_center_rule() -> None:
    centers = [
        CostCenter("CC-E1-RES", "OPEN", True),
        CostCenter("CC-E1-PHARM", "OPEN", False),
        CostCenter("CC-E1-SURG", "OPEN", False),
    ]
    assert replenishment_cost_center("STOREROOM", centers) == "CC-E1-SURG"
    assert replenishment_cost_center("PHARMACY", centers) == "CC-E1-PHARM"
    assert replenishment_cost_center("PAR_AREA", centers[:2]) == "CC-E1-PHARM"
    assert replenishment_cost_center("STOREROOM", centers[:1]) is None


def test_cheapest_valid_contract_per_base_unit() -> None:
    factors = {"EA": D(1), "BX": D(10)}
    contracts = [
        Contract("SUP-2", "BX", D("95"), "USD", DAY, None),  # 9.50 per EA
        Contract("SUP-1", "EA", D("9.00"), "USD", DAY, DAY),  # 9.00 per EA, valid today only
        Contract("SUP-3", "CS", D("1"), "USD", DAY, None),  # a unit the item does not know
        Contract("SUP-4", "EA", D("1"), "USD", DAY + dt.timedelta(days=1), None),  # not yet
    ]
    best = cheapest_contract(contracts, factors, DAY)
    assert best is not None and best.supplier_id == "SUP-1"
    assert price_per(best, factors, "BX") == D("90.0000")
    later = cheapest_contract(contracts, factors, DAY + dt.timedelta(days=1))
    assert later is not None and later.supplier_id == "SUP-4"
    assert cheapest_contract([], factors, DAY) is None
