"""Requisitions built from the sample master data, shared by the requisition tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from supplybus.consumers.masterdata.sample import sample_masterdata
from supplybus.consumers.procurement.validation import (
    ContractPrice,
    CostCenter,
    Item,
    MasterData,
    Supplier,
    budget_period,
)
from supplybus.events.envelope import new_envelope

#: The sample's day is today: the CLI decides at the current time (delegations, due times).
TODAY = dt.datetime.now(dt.UTC).date()
ENTITY, FACILITY, CENTER = "ENT-EAST", "FAC-E1", "CC-E1-SURG"
Record = dict[str, Any]


def master_of(records: Iterable[Record], period: str) -> MasterData:
    """The snapshot of published master-data records (committed and actual spend: 0)."""
    suppliers, items, centers = {}, {}, {}
    for r in records:
        kind = r["envelope"]["event_type"]
        if kind == "SupplierUpserted":
            suppliers[r["supplier_id"]] = Supplier(
                r["supplier_id"], r["status"], frozenset(r["entity_ids"])
            )
        elif kind == "ItemUpserted":
            items[r["item_id"]] = Item(
                r["item_id"],
                r["gtin"],
                r["category"],
                r["base_uom"],
                r["orderable"],
                {c["uom"]: c["factor"] for c in r["uom_conversions"]},
                tuple(
                    ContractPrice(
                        p["supplier_id"],
                        p["uom"],
                        p["price"]["amount"],
                        p["price"]["currency"],
                        p["valid_from"],
                        p["valid_to"],
                    )
                    for p in r["contract_prices"]
                ),
            )
        elif kind == "CostCenterUpserted":
            budget = [b["amount"]["amount"] for b in r["budgets"] if b["period"] == period]
            centers[r["cost_center_id"]] = CostCenter(
                r["cost_center_id"],
                r["owning_entity_id"],
                r["status"],
                budget[0] if budget else None,
            )
    return MasterData(suppliers, items, centers)


SAMPLE = sample_masterdata(0, TODAY)
MASTER = master_of(SAMPLE, budget_period(TODAY))
#: (item, contract price) pairs a requisition of ENT-EAST may validly name.
VALID = sorted(
    (
        (item, price)
        for item in MASTER.items.values()
        if item.orderable and item.category != "CAPITAL"
        for price in item.prices
        if MASTER.suppliers[price.supplier_id].status == "ACTIVE"
        and ENTITY in MASTER.suppliers[price.supplier_id].entity_ids
    ),
    key=lambda p: (p[0].item_id, p[1].supplier_id, p[1].uom),
)


def line(n: int, item: Item, price: ContractPrice, quantity: str = "2") -> Record:
    return {
        "line_number": n,
        "item_id": item.item_id,
        "supplier_id": price.supplier_id,
        "description": None,
        "quantity": {"value": Decimal(quantity), "uom": price.uom},
        "unit_price": {"amount": price.amount, "currency": price.currency},
        "cost_center_id": None,
        "need_by": None,
    }


def requisition(lines: list[Record], center: str = CENTER) -> Record:
    total = sum((ln["quantity"]["value"] * ln["unit_price"]["amount"] for ln in lines), Decimal(0))
    return {
        "envelope": new_envelope(
            "RequisitionSubmitted",
            source_system="test",
            entity_id=ENTITY,
            facility_id=FACILITY,
            actor="U-1",
            correlation_id="REQ-1",
        ),
        "requisition_id": "REQ-1",
        "requester_id": "U-1",
        "cost_center_id": center,
        "urgency": "ROUTINE",
        "need_by": TODAY + dt.timedelta(days=7),
        "justification": None,
        "grant_funded": False,
        "lines": lines,
        "total": {"amount": total, "currency": "USD"},
    }


def submitted(
    rid: str,
    lines: list[Record],
    *,
    center: str = CENTER,
    urgency: str = "ROUTINE",
    requester: str = "U-1",
    at: dt.datetime | None = None,
) -> Record:
    """A RequisitionSubmitted of ``lines`` with id and correlation id ``rid`` (STAT travels
    CRITICAL), submitted ``at`` (default: today 08:00 UTC)."""
    record = requisition(lines, center)
    record["requisition_id"] = rid
    record["requester_id"] = requester
    record["urgency"] = urgency
    env = record["envelope"]
    env["event_id"] = new_envelope("x", source_system="t", entity_id="x", actor="x")["event_id"]
    env["correlation_id"] = rid
    env["actor"] = requester
    env["priority"] = "CRITICAL" if urgency == "STAT" else "ROUTINE"
    env["occurred_at"] = at or dt.datetime.combine(TODAY, dt.time(8), tzinfo=dt.UTC)
    return record


def about(amount: Decimal, n: int = 1, *, skip: int = 0) -> Record:
    """Line ``n``: the ``skip``-th cheap valid item at its contract price, a quantity for a
    little over ``amount``."""
    item, price = [v for v in VALID if v[1].amount < 50][skip]
    quantity = max(1, int(amount / price.amount) + 1)
    return line(n, item, price, str(quantity))
