"""Which table each master-data event fills, and how (one spec per event type).

A ``Model`` maps an upsert event to one master row (``row``) and, per ``Part``, to the child
rows replaced with it (units, prices, budgets, levels, delegations). The rules an event must
meet beyond its schema are plain functions here too (``check_item``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from supplybus.consumers.masterdata.units import units_of_record
from supplybus.errors import BusinessRuleError

Row = dict[str, Any]


@dataclass(frozen=True)
class Part:
    """Child rows of a master row; ``columns`` (name -> SQL type) start with the master key."""

    table: str
    columns: Mapping[str, str]
    primary_key: tuple[str, ...]
    rows: Callable[[Mapping[str, Any]], Iterable[Row]]


@dataclass(frozen=True)
class Model:
    """The read model of one upsert event type: table, key, columns (name -> SQL type)."""

    event_type: str
    table: str
    key: str
    columns: Mapping[str, str]
    row: Callable[[Mapping[str, Any]], Row]
    parts: tuple[Part, ...] = ()


def _pick(record: Mapping[str, Any], columns: Mapping[str, str]) -> Row:
    return {name: record[name] for name in columns}


def _quantity(prefix: str, q: Mapping[str, Any]) -> Row:
    return {prefix: q["value"], f"{prefix}_uom": q["uom"]}


def check_item(record: Mapping[str, Any]) -> None:
    """An item's units must convert (``units.item_units``) and each contract price must be
    per one of them; otherwise the item is refused, naming it and the unit."""
    units = units_of_record(record)
    for price in record["contract_prices"]:
        if price["uom"] not in units.factors:
            known = ", ".join(sorted(units.factors))
            raise BusinessRuleError(
                f"item {record['item_id']}: contract price of supplier {price['supplier_id']} "
                f"is per {price['uom']!r}, not one of the item's units ({known})"
            )


def check_approver(record: Mapping[str, Any]) -> None:
    """A delegation must end on or after its first day and name someone else."""
    for d in record["delegations"]:
        if d["to_date"] < d["from_date"]:
            raise BusinessRuleError(
                f"approver {record['approver_id']}: delegation to {d['delegate_id']} ends "
                f"{d['to_date']}, before it starts {d['from_date']}"
            )
        if d["delegate_id"] == record["approver_id"]:
            raise BusinessRuleError(f"approver {record['approver_id']}: delegates to itself")


def _approver_row(record: Mapping[str, Any]) -> Row:
    check_approver(record)
    row = _pick(record, {k: "" for k in APPROVER_COLUMNS if not k.startswith("limit_")})
    limit = record["authority_limit"]
    return {**row, "limit_amount": limit["amount"], "limit_currency": limit["currency"]}


def _item_row(record: Mapping[str, Any]) -> Row:
    check_item(record)
    return _pick(record, ITEM_COLUMNS)


def _unit_rows(record: Mapping[str, Any]) -> list[Row]:
    units = units_of_record(record)
    return [{"item_id": units.item_id, "uom": u, "factor": f} for u, f in units.factors.items()]


SUPPLIER_COLUMNS = {
    "supplier_id": "text",
    "name": "text",
    "status": "text",
    "tax_id": "text",
    "currency": "text",
    "entity_ids": "text[]",
}
ITEM_COLUMNS = {
    "item_id": "text",
    "gtin": "text",
    "description": "text",
    "category": "text",
    "base_uom": "text",
    "lot_controlled": "boolean",
    "orderable": "boolean",
}
FACILITY_COLUMNS = {
    "facility_id": "text",
    "name": "text",
    "owning_entity_id": "text",
    "kind": "text",
    "timezone": "text",
}
LOCATION_COLUMNS = {
    "location_id": "text",
    "facility_id": "text",
    "name": "text",
    "kind": "text",
}
COST_CENTER_COLUMNS = {
    "cost_center_id": "text",
    "owning_entity_id": "text",
    "facility_id": "text",
    "name": "text",
    "status": "text",
    "grant_funded": "boolean",
}
APPROVER_COLUMNS = {
    "approver_id": "text",
    "name": "text",
    "owning_entity_id": "text",
    "roles": "text[]",
    "limit_amount": "numeric",
    "limit_currency": "text",
    "cost_center_ids": "text[]",
    "facility_ids": "text[]",
    "active": "boolean",
}

MODELS: tuple[Model, ...] = (
    Model("SupplierUpserted", "suppliers", "supplier_id", SUPPLIER_COLUMNS,
          lambda r: _pick(r, SUPPLIER_COLUMNS)),
    Model(
        "ItemUpserted", "items", "item_id", ITEM_COLUMNS, _item_row,
        (
            Part("item_units", {"item_id": "text", "uom": "text", "factor": "numeric"},
                 ("item_id", "uom"), _unit_rows),
            Part(
                "contract_prices",
                {"item_id": "text", "supplier_id": "text", "uom": "text", "valid_from": "date",
                 "valid_to": "date", "amount": "numeric", "currency": "text"},
                ("item_id", "supplier_id", "uom", "valid_from"),
                lambda r: (
                    {"item_id": r["item_id"], "supplier_id": p["supplier_id"], "uom": p["uom"],
                     "valid_from": p["valid_from"], "valid_to": p["valid_to"],
                     "amount": p["price"]["amount"], "currency": p["price"]["currency"]}
                    for p in r["contract_prices"]
                ),
            ),
        ),
    ),
    Model("FacilityUpserted", "facilities", "facility_id", FACILITY_COLUMNS,
          lambda r: _pick(r, FACILITY_COLUMNS)),
    Model(
        "LocationUpserted", "locations", "location_id", LOCATION_COLUMNS,
        lambda r: {**_pick(r, {k: "" for k in LOCATION_COLUMNS if k != "facility_id"}),
                   "facility_id": r["location_facility_id"]},
        (
            Part(
                "par_levels",
                {"location_id": "text", "item_id": "text", "par": "numeric", "par_uom": "text",
                 "reorder_point": "numeric", "reorder_point_uom": "text",
                 "reorder_quantity": "numeric", "reorder_quantity_uom": "text"},
                ("location_id", "item_id"),
                lambda r: (
                    {"location_id": r["location_id"], "item_id": lv["item_id"],
                     **_quantity("par", lv["par"]),
                     **_quantity("reorder_point", lv["reorder_point"]),
                     **_quantity("reorder_quantity", lv["reorder_quantity"])}
                    for lv in r["levels"]
                ),
            ),
        ),
    ),
    Model(
        "CostCenterUpserted", "cost_centers", "cost_center_id", COST_CENTER_COLUMNS,
        lambda r: _pick(r, COST_CENTER_COLUMNS),
        (
            Part(
                "cost_center_budgets",
                {"cost_center_id": "text", "period": "text", "amount": "numeric",
                 "currency": "text"},
                ("cost_center_id", "period"),
                lambda r: (
                    {"cost_center_id": r["cost_center_id"], "period": b["period"],
                     "amount": b["amount"]["amount"], "currency": b["amount"]["currency"]}
                    for b in r["budgets"]
                ),
            ),
        ),
    ),
    Model(
        "ApproverUpserted", "approvers", "approver_id", APPROVER_COLUMNS,
        _approver_row,
        (
            Part(
                "approver_delegations",
                {"approver_id": "text", "delegate_id": "text", "from_date": "date",
                 "to_date": "date"},
                ("approver_id", "delegate_id", "from_date"),
                lambda r: ({"approver_id": r["approver_id"], **d} for d in r["delegations"]),
            ),
        ),
    ),
)  # fmt: skip

BY_EVENT_TYPE = {m.event_type: m for m in MODELS}
