"""Sourcing: which supplier a requisition line is ordered from, and at what price (pure).

A line on contract is ordered at the contract price (the supplier it names, or the cheapest
contract valid on the day when it names none), converted to the line's unit. A line off
contract keeps the supplier it names and its requested price (sourcing approved it); naming
none, it goes to the cheapest valid contract at the contract price. A line with neither a
supplier nor a valid contract cannot be placed: validation rejects it (``NO_SOURCE``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from supplybus.consumers.procurement.snapshot import ContractPrice, Item

NO_SOURCE = "NO_SOURCE"
_CENT = Decimal("0.0001")


@dataclass(frozen=True)
class Placement:
    supplier_id: str
    unit_price: Decimal  # per the line's unit
    on_contract: bool


def contract_for(
    item: Item, line: Mapping[str, Any], day: dt.date, *, within_price: bool = True
) -> ContractPrice | None:
    """The contract a line is ordered under: valid on ``day``, in the line's currency, of its
    supplier (any when it names none), not above its price per base unit (unless
    ``within_price`` is false); the cheapest per base unit first, then by supplier id."""
    supplier, price = line.get("supplier_id"), line["unit_price"]
    factor = item.units.get(line["quantity"]["uom"])
    if factor is None:
        return None
    fits: list[tuple[Decimal, str, ContractPrice]] = []
    for contract in item.prices:
        contract_factor = item.units.get(contract.uom)
        if (
            contract_factor is None
            or (supplier is not None and contract.supplier_id != supplier)
            or not contract.valid_on(day)
            or contract.currency != price["currency"]
        ):
            continue
        per_base = contract.amount / contract_factor
        if not within_price or price["amount"] * contract_factor <= contract.amount * factor:
            fits.append((per_base, contract.supplier_id, contract))
    return min(fits, key=lambda f: (f[0], f[1]))[2] if fits else None


def place(item: Item, line: Mapping[str, Any], day: dt.date) -> Placement | None:
    """Where and at what price ``line`` is ordered (None: nowhere; see the module doc)."""
    contract = contract_for(item, line, day)
    if contract is not None:
        return Placement(contract.supplier_id, _converted(item, line, contract), True)
    if line.get("supplier_id") is not None:
        return Placement(str(line["supplier_id"]), Decimal(line["unit_price"]["amount"]), False)
    cheapest = contract_for(item, line, day, within_price=False)
    if cheapest is None:
        return None
    return Placement(cheapest.supplier_id, _converted(item, line, cheapest), False)


def _converted(item: Item, line: Mapping[str, Any], contract: ContractPrice) -> Decimal:
    """The contract's price per the line's unit."""
    price = contract.amount * item.units[line["quantity"]["uom"]] / item.units[contract.uom]
    return price.quantize(_CENT, rounding=ROUND_HALF_EVEN)
