"""Replenishment rules (pure, no I/O): the breach state machine, days of supply and risk
levels, the lane of an item@location key, the cost center and contract a replenishment
requisition uses.

Breach: a (location, item) with a par level is *armed* until on hand + on order falls to the
reorder point or below; that fires one breach (ReorderTriggered and a requisition) and the
position stays *breached*, firing nothing more, until on hand + on order rises above the reorder
point again, which re-arms it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

#: Items whose item@location keys travel on the critical lane (ADR 0009: a property of the key).
CRITICAL_CATEGORIES = frozenset({"CONTROLLED_SUBSTANCE", "IMPLANT"})
#: Days of ISSUE movements averaged into the daily usage.
USAGE_DAYS = 14
#: Days of supply below which each level applies (LOW otherwise).
RISK_THRESHOLDS = (("CRITICAL", Decimal(1)), ("HIGH", Decimal(3)), ("MEDIUM", Decimal(7)))
#: days_of_supply is decimal(9,2): no usage shows as this many days.
MAX_DAYS = Decimal("9999999.99")
_CENTS = Decimal("0.01")
_MILLI = Decimal("0.001")
_PRICE = Decimal("0.0001")


@dataclass(frozen=True)
class BreachState:
    breached: bool = False
    seq: int = 0


def next_breach(
    state: BreachState, position: Decimal, reorder_point: Decimal
) -> tuple[BreachState, bool]:
    """The state after ``position`` (on hand + on order) and whether a breach fires now."""
    if not state.breached and position <= reorder_point:
        return BreachState(True, state.seq + 1), True
    if state.breached and position > reorder_point:
        return BreachState(False, state.seq), False
    return state, False


def daily_usage(issued: Mapping[dt.date, Decimal], day: dt.date, days: int = USAGE_DAYS) -> Decimal:
    """Average issued per day over the ``days`` days ending on ``day`` (3 decimals, down)."""
    first = day - dt.timedelta(days=days - 1)
    total = sum((q for d, q in issued.items() if first <= d <= day), Decimal(0))
    return (total / days).quantize(_MILLI, rounding=ROUND_DOWN)


def days_of_supply(on_hand: Decimal, usage: Decimal) -> Decimal:
    """On hand / daily usage (2 decimals, down; 0 when nothing is on hand; MAX_DAYS without
    usage)."""
    if on_hand <= 0:
        return Decimal("0.00")
    if usage <= 0:
        return MAX_DAYS
    return min(MAX_DAYS, (on_hand / usage).quantize(_CENTS, rounding=ROUND_DOWN))


def risk_level(days: Decimal) -> str:
    for level, below in RISK_THRESHOLDS:
        if days < below:
            return level
    return "LOW"


def key_priority(category: str) -> str:
    """The lane of every event keyed by an item@location of this item: CRITICAL for critical
    categories, ROUTINE otherwise (never the priority of the movement at hand)."""
    return "CRITICAL" if category in CRITICAL_CATEGORIES else "ROUTINE"


@dataclass(frozen=True)
class CostCenter:
    cost_center_id: str
    status: str
    grant_funded: bool


def replenishment_cost_center(location_kind: str, centers: Iterable[CostCenter]) -> str | None:
    """The cost center a replenishment is charged to, among the location's facility's: the
    pharmacy's (``...-PHARM``) for a PHARMACY location, the surgical supply one (``...-SURG``)
    otherwise; failing that the first open, not grant-funded one by id; None when none is."""
    usable = sorted(c.cost_center_id for c in centers if c.status == "OPEN" and not c.grant_funded)
    wanted = "-PHARM" if location_kind == "PHARMACY" else "-SURG"
    preferred = [c for c in usable if c.endswith(wanted)]
    chosen = preferred or usable
    return chosen[0] if chosen else None


@dataclass(frozen=True)
class Contract:
    supplier_id: str
    uom: str
    amount: Decimal
    currency: str
    valid_from: dt.date
    valid_to: dt.date | None


def cheapest_contract(
    contracts: Sequence[Contract], factors: Mapping[str, Decimal], day: dt.date
) -> Contract | None:
    """The contract valid on ``day`` with the lowest price per base unit (then supplier id),
    among those in a unit the item knows."""
    valid = [
        c
        for c in contracts
        if c.uom in factors and c.valid_from <= day and (c.valid_to is None or day <= c.valid_to)
    ]
    if not valid:
        return None
    return min(valid, key=lambda c: (c.amount / factors[c.uom], c.supplier_id, c.uom))


def price_per(contract: Contract, factors: Mapping[str, Decimal], uom: str) -> Decimal:
    """The contract's price per ``uom`` (4 decimals, half even)."""
    price = contract.amount * factors[uom] / factors[contract.uom]
    return price.quantize(_PRICE, rounding=ROUND_HALF_EVEN)
