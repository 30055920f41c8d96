"""The master data a batch of requisitions is checked against, as plain frozen data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True)
class Supplier:
    supplier_id: str
    status: str  # ACTIVE, INACTIVE, BLOCKED
    entity_ids: frozenset[str]


@dataclass(frozen=True)
class ContractPrice:
    supplier_id: str
    uom: str
    amount: Decimal
    currency: str
    valid_from: dt.date
    valid_to: dt.date | None = None  # last day; None: open-ended

    def valid_on(self, day: dt.date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


@dataclass(frozen=True)
class Item:
    item_id: str
    gtin: str
    category: str
    base_uom: str
    orderable: bool
    units: Mapping[str, Decimal]  # unit -> factor in base units
    prices: tuple[ContractPrice, ...] = ()


@dataclass(frozen=True)
class CostCenter:
    """A cost center with its budget for the period checked (None: no budget) and what is
    already committed and spent against it in that period."""

    cost_center_id: str
    entity_id: str
    status: str  # OPEN, CLOSED
    budget: Decimal | None
    committed: Decimal = Decimal(0)
    actual: Decimal = Decimal(0)


@dataclass(frozen=True)
class MasterData:
    """The master data a batch of requisitions refers to, by id."""

    suppliers: Mapping[str, Supplier] = field(default_factory=dict)
    items: Mapping[str, Item] = field(default_factory=dict)
    cost_centers: Mapping[str, CostCenter] = field(default_factory=dict)
