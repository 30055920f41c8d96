"""Requisition validation: the pure rules (plain data in, plain data out; no SQL, no Kafka).

``validate(record, master, day)`` checks a RequisitionSubmitted record against a frozen
snapshot of the master data it refers to and returns every problem at once:

- rejections (``Finding.rejects``): supplier unknown, inactive, blocked or not selling to the
  entity; item unknown or not orderable; GTIN of the item invalid; unit unknown for the item
  or not convertible exactly to its base unit; cost center unknown, closed or of another
  entity; a quantity that is not positive; a line with no supplier named and no contract
  valid on ``day`` (``NO_SOURCE``: nowhere to order it from);
- flags, never a rejection: ``OFF_CONTRACT`` (a line priced above the contract price valid on
  ``day`` for its supplier and unit, or with no such contract: routed to sourcing) and
  ``OVER_BUDGET`` (committed + actual + this requisition's lines above the cost center's
  budget for the period, or no budget for it: routed to finance where the policy says so).

Prices are compared per base unit by cross-multiplication, so no division ever rounds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from supplybus.consumers.masterdata.units import item_units
from supplybus.consumers.procurement.snapshot import (
    ContractPrice,
    CostCenter,
    Item,
    MasterData,
    Supplier,
)
from supplybus.consumers.procurement.sourcing import NO_SOURCE, Placement, contract_for, place
from supplybus.errors import BusinessRuleError
from supplybus.events.domain_checks import gtin_is_valid

__all__ = [
    "ContractPrice",
    "CostCenter",
    "Item",
    "MasterData",
    "Supplier",
    "budget_period",
    "validate",
]

OFF_CONTRACT = "OFF_CONTRACT"
OVER_BUDGET = "OVER_BUDGET"
#: The reason code of a line whose item the master data does not know (yet).
UNKNOWN_ITEM = "UNKNOWN_ITEM"


@dataclass(frozen=True)
class Reason:
    code: str
    field: str | None
    message: str

    def as_record(self) -> dict[str, Any]:
        return {"code": self.code, "field": self.field, "message": self.message}


@dataclass(frozen=True)
class Finding:
    """What validation found: rejection reasons, flags, and what routing needs."""

    reasons: tuple[Reason, ...]
    flags: tuple[str, ...]
    categories: frozenset[str]
    spend: Mapping[str, Decimal]  # cost center -> this requisition's amount
    placements: Mapping[int, Placement] = field(default_factory=dict)  # by line_number

    @property
    def rejects(self) -> bool:
        return bool(self.reasons)

    @property
    def off_contract(self) -> bool:
        return OFF_CONTRACT in self.flags

    @property
    def over_budget(self) -> bool:
        return OVER_BUDGET in self.flags

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.reasons)


def budget_period(day: dt.date) -> str:
    """The budget period (YYYY-MM) a requisition of ``day`` is checked against."""
    return f"{day.year:04d}-{day.month:02d}"


def validate(record: Mapping[str, Any], master: MasterData, day: dt.date) -> Finding:
    """Every reason ``record`` (a RequisitionSubmitted) fails, and its flags."""
    entity = str(record["envelope"]["entity_id"])
    reasons: list[Reason] = []
    off_contract = False
    categories: set[str] = set()
    spend: dict[str, Decimal] = {}
    placements: dict[int, Placement] = {}
    centers = {str(record["cost_center_id"]): "cost_center_id"}
    for i, line in enumerate(record["lines"]):
        path = f"lines[{i}]"
        center = line.get("cost_center_id") or record["cost_center_id"]
        if line.get("cost_center_id"):
            centers.setdefault(str(center), f"{path}.cost_center_id")
        amount = line["quantity"]["value"] * line["unit_price"]["amount"]
        spend[center] = spend.get(center, Decimal(0)) + amount
        reasons += _supplier_reasons(line.get("supplier_id"), entity, master, path)
        item = master.items.get(line["item_id"])
        if item is None:
            reasons.append(
                Reason(
                    UNKNOWN_ITEM,
                    f"{path}.item_id",
                    f"item {line['item_id']} is not in the item master",
                )
            )
            continue
        categories.add(item.category)
        line_reasons = _item_reasons(item, line, path)
        reasons += line_reasons
        if line_reasons:
            continue
        if contract_for(item, line, day) is None:
            off_contract = True
        placed = place(item, line, day)
        if placed is None:
            reasons.append(
                Reason(
                    NO_SOURCE,
                    f"{path}.supplier_id",
                    f"item {item.item_id} has no contract valid on {day} in "
                    f"{line['unit_price']['currency']}; name a supplier",
                )
            )
        else:
            placements[int(line["line_number"])] = placed
    over_budget = False
    for center, path in centers.items():
        found = master.cost_centers.get(center)
        reasons += _center_reasons(center, found, entity, path)
        if found is not None and center in spend:
            used = found.committed + found.actual + spend[center]
            over_budget |= found.budget is None or used > found.budget
    flags = tuple(f for f, on in ((OFF_CONTRACT, off_contract), (OVER_BUDGET, over_budget)) if on)
    return Finding(tuple(reasons), flags, frozenset(categories), spend, placements)


def _supplier_reasons(
    supplier_id: str | None, entity: str, master: MasterData, path: str
) -> list[Reason]:
    if supplier_id is None:
        return []
    field_, supplier = f"{path}.supplier_id", master.suppliers.get(supplier_id)
    if supplier is None:
        return [Reason("UNKNOWN_SUPPLIER", field_, f"supplier {supplier_id} is not known")]
    if supplier.status != "ACTIVE":
        code = "SUPPLIER_BLOCKED" if supplier.status == "BLOCKED" else "SUPPLIER_INACTIVE"
        return [Reason(code, field_, f"supplier {supplier_id} is {supplier.status.lower()}")]
    if entity not in supplier.entity_ids:
        return [
            Reason(
                "SUPPLIER_NOT_FOR_ENTITY",
                field_,
                f"supplier {supplier_id} does not sell to {entity}",
            )
        ]
    return []


def _item_reasons(item: Item, line: Mapping[str, Any], path: str) -> list[Reason]:
    found: list[Reason] = []
    if not item.orderable:
        found.append(
            Reason("ITEM_NOT_ORDERABLE", f"{path}.item_id", f"item {item.item_id} is not orderable")
        )
    if not gtin_is_valid(item.gtin):
        found.append(
            Reason(
                "INVALID_GTIN",
                f"{path}.item_id",
                f"item {item.item_id} has an invalid GTIN {item.gtin!r}",
            )
        )
    quantity, uom = line["quantity"]["value"], line["quantity"]["uom"]
    if not quantity > 0:
        found.append(
            Reason(
                "INVALID_QUANTITY",
                f"{path}.quantity.value",
                f"expected a quantity > 0, got {quantity}",
            )
        )
    if uom not in item.units:
        known = ", ".join(sorted(item.units))
        found.append(
            Reason(
                "UNKNOWN_UNIT",
                f"{path}.quantity.uom",
                f"item {item.item_id} has no unit {uom!r} (known: {known})",
            )
        )
    elif quantity > 0:
        try:
            item_units(item.item_id, item.base_uom, item.units.items()).to_base(quantity, uom)
        except BusinessRuleError as exc:
            found.append(Reason("UNIT_NOT_CONVERTIBLE", f"{path}.quantity", str(exc)))
    return found


def _center_reasons(center: str, found: CostCenter | None, entity: str, path: str) -> list[Reason]:
    if found is None:
        return [Reason("UNKNOWN_COST_CENTER", path, f"cost center {center} is not known")]
    if found.status != "OPEN":
        return [Reason("COST_CENTER_CLOSED", path, f"cost center {center} is closed")]
    if found.entity_id != entity:
        return [
            Reason(
                "COST_CENTER_OTHER_ENTITY",
                path,
                f"cost center {center} belongs to {found.entity_id}, not {entity}",
            )
        ]
    return []
