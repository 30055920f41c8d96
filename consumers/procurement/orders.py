"""purchase-orders: an approved requisition becomes purchase orders; a cancellation releases.

On RequisitionApproved, the requisition's placed lines (``requisitions.lines``: supplier and
price chosen at validation) are grouped by supplier into one PurchaseOrderIssued each, numbered
per legal entity (``po_numbers``: PO-EAST-000001, gapless: the counter row is advanced in this
transaction), shipped to the facility's receiving location (a DOCK, else a STOREROOM). Each PO
commits its amount against the budget of each cost center of its lines (BudgetCommitted, in
the period the requisition was checked against) and is queued for outbound delivery
(``po_deliveries``, delivered by the PO dispatcher) with the document of docs/outbound-po.md.

On PurchaseOrderCancelled, an open PO is cancelled and each commitment released
(BudgetReleased); a PO not delivered yet is then never delivered. A requisition whose POs are
all cancelled is CANCELLED.

Grouping and numbering are pure (``group_lines``, ``po_number``); ids are deterministic.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg

from supplybus.consumers import audit
from supplybus.consumers.procurement.validation import budget_period
from supplybus.consumers.runtime.processor import Event, Processor, Record
from supplybus.errors import BusinessRuleError
from supplybus.events.envelope import caused_by, deterministic_id

NAME = "purchase-orders"
LAYOUT = "supplybus.po.v1"
_CENT = Decimal("0.0001")
_SHIP_TO_KINDS = ("DOCK", "STOREROOM")


@dataclass(frozen=True)
class OrderLine:
    line_number: int
    requisition_line: int
    item_id: str
    quantity: Decimal
    uom: str
    unit_price: Decimal
    currency: str
    cost_center_id: str
    need_by: dt.date | None

    @property
    def amount(self) -> Decimal:
        # half up, like PostgreSQL's round() that sums a PO's lines when it is cancelled
        return (self.quantity * self.unit_price).quantize(_CENT, rounding=ROUND_HALF_UP)


def group_lines(lines: Sequence[Mapping[str, Any]]) -> dict[str, list[OrderLine]]:
    """Placed requisition lines by supplier (sorted), renumbered 1.. per supplier in
    requisition-line order."""
    by_supplier: dict[str, list[OrderLine]] = {}
    for raw in sorted(lines, key=lambda r: int(r["line_number"])):
        supplier = raw.get("supplier_id")
        if not supplier:
            raise BusinessRuleError(f"requisition line {raw['line_number']} has no supplier")
        found = by_supplier.setdefault(str(supplier), [])
        found.append(
            OrderLine(
                line_number=len(found) + 1,
                requisition_line=int(raw["line_number"]),
                item_id=str(raw["item_id"]),
                quantity=Decimal(raw["quantity"]),
                uom=str(raw["uom"]),
                unit_price=Decimal(raw["unit_price"]),
                currency=str(raw["currency"]),
                cost_center_id=str(raw["cost_center_id"]),
                need_by=dt.date.fromisoformat(raw["need_by"]) if raw.get("need_by") else None,
            )
        )
    return dict(sorted(by_supplier.items()))


def commitments(lines: Sequence[OrderLine]) -> dict[str, Decimal]:
    """A PO's amount per cost center (sorted)."""
    found: dict[str, Decimal] = {}
    for line in lines:
        found[line.cost_center_id] = found.get(line.cost_center_id, Decimal(0)) + line.amount
    return dict(sorted(found.items()))


def po_number(entity_id: str, sequence: int) -> str:
    """``PO-EAST-000001`` for the first PO of ENT-EAST."""
    short = entity_id.removeprefix("ENT-")
    return f"PO-{short}-{sequence:06d}"


def processor() -> Processor:
    return Processor(
        name=NAME,
        consumes=("RequisitionApproved", "PurchaseOrderCancelled"),
        handle=handle,
        description="Issues purchase orders for approved requisitions; cancels them.",
        on_dead_letter="hold_key",
    )


def handle(events: Sequence[Event], conn: psycopg.Connection) -> list[Record]:
    emitted: list[Record] = []
    entries: list[audit.AuditEntry] = []
    for event in events:
        if event.event_type == "RequisitionApproved":
            issue(conn, event.record, emitted, entries)
        else:
            cancel(conn, event.record, emitted, entries)
    audit.append(conn, entries)
    return emitted


def issue(
    conn: psycopg.Connection,
    approved: Record,
    emitted: list[Record],
    entries: list[audit.AuditEntry],
) -> None:
    """The POs of one approved requisition (nothing when it was ordered already)."""
    rid, env = str(approved["requisition_id"]), approved["envelope"]
    row = conn.execute(
        "SELECT status, entity_id, facility_id, cost_center_id, priority, lines, submitted_at,"
        " correlation_id FROM requisitions WHERE requisition_id = %s FOR UPDATE",
        (rid,),
    ).fetchone()
    if row is None:
        raise BusinessRuleError(f"requisition {rid} is not known; it cannot be ordered")
    status, entity, facility, center, priority, lines, submitted_at, correlation = row
    if status != "APPROVED":
        if status in ("ORDERED", "CANCELLED"):
            return  # ordered already (a redelivered approval from another source)
        raise BusinessRuleError(f"requisition {rid} is {status.lower()}, not approved")
    ship_to = _ship_to(conn, facility, rid)
    period = budget_period(submitted_at.astimezone(dt.UTC).date())
    for supplier, po_lines in group_lines(lines).items():
        (sequence,) = conn.execute(
            "INSERT INTO po_numbers (entity_id, last) VALUES (%s, 1) ON CONFLICT (entity_id)"
            " DO UPDATE SET last = po_numbers.last + 1 RETURNING last",
            (entity,),
        ).fetchone() or (0,)
        po_id, number = deterministic_id("po", rid, supplier), po_number(entity, sequence)
        total = sum((line.amount for line in po_lines), Decimal(0))
        currency = po_lines[0].currency
        issued = {
            "envelope": caused_by(env, "PurchaseOrderIssued", emitter=NAME, discriminator=supplier),
            "po_id": po_id,
            "po_number": number,
            "requisition_id": rid,
            "supplier_id": supplier,
            "cost_center_id": center,
            "lines": [
                {"line_number": line.line_number, "item_id": line.item_id,
                 "quantity": {"value": line.quantity, "uom": line.uom},
                 "unit_price": {"amount": line.unit_price, "currency": line.currency},
                 "need_by": line.need_by}
                for line in po_lines
            ],
            "total": {"amount": total, "currency": currency},
            "ship_to_location_id": ship_to,
        }  # fmt: skip
        emitted.append(issued)
        for cost_center, amount in commitments(po_lines).items():
            emitted.append({
                "envelope": caused_by(env, "BudgetCommitted", emitter=NAME,
                                      discriminator=f"{po_id}/{cost_center}"),
                "cost_center_id": cost_center,
                "period": period,
                "amount": {"amount": amount, "currency": currency},
                "reference_id": po_id,
                "reference_type": "PURCHASE_ORDER",
            })  # fmt: skip
        at = issued["envelope"]["occurred_at"]
        _store_po(conn, issued, entity, facility, priority, period, correlation, po_lines, at)
        entries.append(
            audit.from_envelope(
                env, entity_type="purchase_order", entity_id=number, action="issued",
                actor=NAME, reason=f"requisition {rid} approved; {len(po_lines)} line(s) "
                f"from {supplier}, {total} {currency}, ship to {ship_to}",
                detail={"po_id": po_id, "event_id": issued["envelope"]["event_id"],
                        "budget_period": period},
            )
        )  # fmt: skip
    conn.execute(
        "UPDATE requisitions SET status = 'ORDERED', updated_at = now() WHERE requisition_id = %s",
        (rid,),
    )
    entries.append(
        audit.from_envelope(
            env, entity_type="requisition", entity_id=rid, action="ordered", actor=NAME,
            reason=f"{len(group_lines(lines))} purchase order(s) issued",
        )
    )  # fmt: skip


def _ship_to(conn: psycopg.Connection, facility: str | None, rid: str) -> str:
    row = conn.execute(
        "SELECT location_id FROM locations WHERE facility_id = %s"
        " ORDER BY array_position(%s::text[], kind) NULLS LAST, location_id LIMIT 1",
        (facility, list(_SHIP_TO_KINDS)),
    ).fetchone()
    if row is None:
        raise BusinessRuleError(
            f"requisition {rid}: facility {facility} has no location in the location master "
            "to ship to; replay it once the location master has one"
        )
    return str(row[0])


def _store_po(
    conn: psycopg.Connection,
    issued: Record,
    entity: str,
    facility: str | None,
    priority: str,
    period: str,
    correlation: str,
    lines: Sequence[OrderLine],
    at: dt.datetime,
) -> None:
    po_id, total = issued["po_id"], issued["total"]
    conn.execute(
        "INSERT INTO purchase_orders (po_id, po_number, requisition_id, entity_id, facility_id,"
        " supplier_id, cost_center_id, ship_to_location_id, total, currency, status, priority,"
        " budget_period, correlation_id, issued_at) VALUES"
        " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'ISSUED', %s, %s, %s, %s)",
        (po_id, issued["po_number"], issued["requisition_id"], entity, facility,
         issued["supplier_id"], issued["cost_center_id"], issued["ship_to_location_id"],
         total["amount"], total["currency"], priority, period, correlation, at),
    )  # fmt: skip
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO po_lines (po_id, line_number, requisition_line, item_id, quantity, uom,"
            " unit_price, currency, cost_center_id, need_by) VALUES"
            " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(po_id, line.line_number, line.requisition_line, line.item_id, line.quantity,
              line.uom, line.unit_price, line.currency, line.cost_center_id, line.need_by)
             for line in lines],
        )  # fmt: skip
    document = po_document(issued, entity, facility, priority, correlation, lines, at)
    conn.execute(
        "INSERT INTO po_deliveries (po_id, po_number, document) VALUES (%s, %s, %s::jsonb)",
        (po_id, issued["po_number"], json.dumps(document)),
    )


def po_document(
    issued: Record,
    entity: str,
    facility: str | None,
    priority: str,
    correlation: str,
    lines: Sequence[OrderLine],
    at: dt.datetime,
) -> dict[str, Any]:
    """What the outbound target receives (layout ``supplybus.po.v1``, docs/outbound-po.md)."""
    return {
        "layout": LAYOUT,
        "po_id": issued["po_id"],
        "po_number": issued["po_number"],
        "requisition_id": issued["requisition_id"],
        "entity_id": entity,
        "facility_id": facility,
        "supplier_id": issued["supplier_id"],
        "ship_to_location_id": issued["ship_to_location_id"],
        "cost_center_id": issued["cost_center_id"],
        "currency": issued["total"]["currency"],
        "total": str(issued["total"]["amount"]),
        "issued_at": at.astimezone(dt.UTC).isoformat(),
        "correlation_id": correlation,
        "priority": priority,
        "lines": [
            {"line_number": line.line_number, "item_id": line.item_id,
             "quantity": str(line.quantity), "uom": line.uom,
             "unit_price": str(line.unit_price), "amount": str(line.amount),
             "cost_center_id": line.cost_center_id,
             "need_by": line.need_by.isoformat() if line.need_by else None}
            for line in lines
        ],
    }  # fmt: skip


def cancel(
    conn: psycopg.Connection,
    cancelled: Record,
    emitted: list[Record],
    entries: list[audit.AuditEntry],
) -> None:
    """Cancel an open PO and release its commitments (nothing when cancelled already)."""
    po_id, env = str(cancelled["po_id"]), cancelled["envelope"]
    row = conn.execute(
        "SELECT po_number, status, requisition_id, budget_period, currency FROM purchase_orders"
        " WHERE po_id = %s FOR UPDATE",
        (po_id,),
    ).fetchone()
    if row is None:
        raise BusinessRuleError(f"purchase order {po_id} is not known; it cannot be cancelled")
    number, status, rid, period, currency = row
    if status == "CANCELLED":
        return
    amounts = conn.execute(
        "SELECT cost_center_id, sum(round(quantity * unit_price, 4)) FROM po_lines"
        " WHERE po_id = %s GROUP BY cost_center_id ORDER BY cost_center_id",
        (po_id,),
    ).fetchall()
    for cost_center, amount in amounts:
        emitted.append({
            "envelope": caused_by(env, "BudgetReleased", emitter=NAME,
                                  discriminator=f"{po_id}/{cost_center}"),
            "cost_center_id": cost_center,
            "period": period,
            "amount": {"amount": Decimal(amount), "currency": currency},
            "reference_id": po_id,
            "reference_type": "PURCHASE_ORDER",
            "reason": f"purchase order {number} cancelled: {cancelled['reason']}",
        })  # fmt: skip
    conn.execute(
        "UPDATE purchase_orders SET status = 'CANCELLED', cancelled_reason = %s,"
        " updated_at = now() WHERE po_id = %s",
        (cancelled["reason"], po_id),
    )
    conn.execute(
        "UPDATE requisitions SET status = 'CANCELLED', updated_at = now()"
        " WHERE requisition_id = %s AND NOT EXISTS (SELECT 1 FROM purchase_orders"
        " WHERE requisition_id = %s AND status <> 'CANCELLED')",
        (rid, rid),
    )
    entries.append(
        audit.from_envelope(
            env, entity_type="purchase_order", entity_id=number, action="cancelled",
            reason=str(cancelled["reason"]),
            detail={"po_id": po_id, "released": ",".join(f"{c}={a}" for c, a in amounts)},
        )
    )  # fmt: skip
