"""receiving: goods received against purchase-order lines (migration 0014).

Consumes GoodsReceived (inventory.receipts.v1), PurchaseOrderIssued and PurchaseOrderCancelled
(procurement.purchase-orders.v1); both topics are keyed by PO. Receiving keeps its own view of
each PO (``receiving_orders``, ``receiving_po_lines``) from the PO events, so that what it does
depends only on the order it consumes them in, never on another processor's progress.

A receipt whose PO is known is applied line by line with ``receipt_rules``: each accepted
quantity emits a StockMovement RECEIPT into the receipt's location (in the PO line's unit, lot
and expiry as received, ``reference_id`` the receipt, ``movement_id`` deterministic), each
discrepancy a ReceivingDiscrepancy; the receipt, its lines and the PO lines' cumulative
quantities are stored and the receipt's audit trail records it. A receipt whose PO is not
known yet waits in ``receipts_waiting`` and is applied, in arrival order, when the
PurchaseOrderIssued arrives: the emitted ids derive from the receipt's own event, so the
outcome is that of in-order delivery. A cancelled PO accepts nothing (OVER, "cancelled").

A receipt id seen before with the same content (a resend under a new event id) changes
nothing; with other content it is refused. A PO line that does not exist or an item missing
from the master data is refused (``BusinessRuleError``); the PO's later events are held
until the dead letter is resolved (``hold_key``), since the allowance is cumulative.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import psycopg

from supplybus.consumers import audit
from supplybus.consumers.inventory.receipt_rules import (
    LineOutcome,
    PoLine,
    ReceivedLine,
    assess_receipt,
)
from supplybus.consumers.inventory.receiving_store import (
    Changes,
    Loaded,
    Order,
    Waiting,
    digest,
    load,
    save,
)
from supplybus.consumers.runtime.processor import Event, Processor, Record
from supplybus.errors import BusinessRuleError
from supplybus.events.envelope import caused_by, deterministic_id

NAME = "receiving"
ENTITY_TYPE = "receipt"


def processor() -> Processor:
    return Processor(
        name=NAME,
        consumes=("GoodsReceived", "PurchaseOrderIssued", "PurchaseOrderCancelled"),
        handle=handle,
        description="Goods received against PO lines: stock movements and discrepancies.",
        on_dead_letter="hold_key",
    )


def handle(events: Sequence[Event], conn: psycopg.Connection) -> list[Record]:
    receipts = [e.record for e in events if e.event_type == "GoodsReceived"]
    loaded = load(
        conn,
        sorted({str(e.record["po_id"]) for e in events}),
        sorted({str(r["receipt_id"]) for r in receipts}),
        {line["item_id"] for r in receipts for line in r["lines"]},
    )
    book = Book(loaded)
    for event in events:
        if event.event_type == "GoodsReceived":
            book.receive(event.record)
        elif event.event_type == "PurchaseOrderIssued":
            book.issue(event.record)
        else:
            book.cancel(event.record)
    save(conn, loaded.orders.values(), book.changes)
    audit.append(conn, book.entries)
    return book.emitted


class Book:
    """One batch's work over the loaded state: decisions in memory, written by ``save``."""

    def __init__(self, loaded: Loaded) -> None:
        self.loaded = loaded
        self.changes = Changes()
        self.emitted: list[Record] = []
        self.entries: list[audit.AuditEntry] = []

    def receive(self, record: Record) -> None:
        rid, po_id, env = str(record["receipt_id"]), str(record["po_id"]), record["envelope"]
        dig = digest(record)
        seen = self.loaded.known.get(rid)
        if seen is not None:
            if seen != dig:
                raise BusinessRuleError(
                    f"receipt {rid} was received before with other content; a correction "
                    "needs a receipt id of its own"
                )
            return  # the same document sent again under another event id
        self.loaded.known[rid] = dig
        order = self.loaded.orders.get(po_id)
        if order is None or not order.issued:
            waiting = Waiting(rid, po_id, str(env["event_id"]), dig, record)
            self.loaded.waiting.setdefault(po_id, []).append(waiting)
            self.changes.parked.append(waiting)
            self.entries.append(
                audit.from_envelope(
                    env, entity_type=ENTITY_TYPE, entity_id=rid, action="waiting",
                    reason=f"purchase order {po_id} is not known yet; applied when it is",
                )
            )  # fmt: skip
            return
        self._apply(record, order, dig, waited=False)

    def issue(self, record: Record) -> None:
        po_id = str(record["po_id"])
        order = self.loaded.orders.setdefault(po_id, Order(po_id))
        if order.issued:
            return  # issued before (another source's copy): the first one stands
        order.po_number, order.supplier_id = record["po_number"], record["supplier_id"]
        order.entity_id = record["envelope"]["entity_id"]
        order.ship_to_location_id = record["ship_to_location_id"]
        order.issued_event_id = str(record["envelope"]["event_id"])
        order.changed = True
        for line in record["lines"]:
            n, qty = int(line["line_number"]), line["quantity"]
            order.lines[n] = PoLine(n, str(line["item_id"]), qty["value"], str(qty["uom"]))
            order.prices[n] = (line["unit_price"]["amount"], line["unit_price"]["currency"])
        for waiting in self.loaded.waiting.pop(po_id, []):
            if waiting in self.changes.parked:
                self.changes.parked.remove(waiting)
            else:
                self.changes.unparked.append(waiting.receipt_id)
            self._apply(waiting.record, order, waiting.digest, waited=True)

    def cancel(self, record: Record) -> None:
        po_id = str(record["po_id"])
        order = self.loaded.orders.setdefault(po_id, Order(po_id))
        if order.status == "CANCELLED":
            return
        order.status, order.cancelled_reason = "CANCELLED", str(record["reason"])
        order.changed = True

    def _apply(self, record: Record, order: Order, dig: str, *, waited: bool) -> None:
        env, rid = record["envelope"], str(record["receipt_id"])
        lines = [received_line(n, raw) for n, raw in enumerate(record["lines"], start=1)]
        outcomes, after = assess_receipt(
            lines, order.lines, self.loaded.items, cancelled=order.cancelled
        )
        order.lines, order.changed = after, True
        kinds: list[str] = []
        for outcome in outcomes:
            movement = self._movement(record, order, outcome)
            kinds.extend(self._discrepancies(record, outcome))
            self.changes.receipt_lines.append(_line_row(rid, outcome, movement))
        self.changes.receipts.append(
            (rid, order.po_id, record["location_id"], record["received_at"], env["event_id"],
             env["correlation_id"], dig, len(kinds), waited)
        )  # fmt: skip
        accepted = sum((o.accepted for o in outcomes), Decimal(0))
        self.entries.append(
            audit.from_envelope(
                env, entity_type=ENTITY_TYPE, entity_id=rid, action="received",
                reason=f"{len(lines)} line(s) against {order.po_number or order.po_id}, "
                f"{accepted} accepted into {record['location_id']}"
                + (f"; discrepancies: {', '.join(kinds)}" if kinds else ""),
                detail={"po_id": order.po_id},
            )
        )  # fmt: skip

    def _movement(self, record: Record, order: Order, outcome: LineOutcome) -> str | None:
        if outcome.accepted <= 0:
            return None
        line, rid = outcome.line, str(record["receipt_id"])
        movement_id = str(deterministic_id("receipt-movement", rid, line.index))
        self.emitted.append({
            "envelope": caused_by(record["envelope"], "StockMovement", emitter=NAME,
                                  discriminator=str(line.index)),
            "movement_id": movement_id,
            "kind": "RECEIPT",
            "item_id": line.item_id,
            "location_id": record["location_id"],
            "lot_number": line.lot_number,
            "expiry_date": line.expiry_date,
            "quantity": {"value": outcome.accepted, "uom": outcome.uom},
            "counterpart_location_id": None,
            "reference_id": rid,
            "reason": f"received against {order.po_number or order.po_id} line "
                      f"{line.po_line_number}",
        })  # fmt: skip
        return movement_id

    def _discrepancies(self, record: Record, outcome: LineOutcome) -> list[str]:
        line = outcome.line
        for d in outcome.discrepancies:
            self.emitted.append({
                "envelope": caused_by(record["envelope"], "ReceivingDiscrepancy", emitter=NAME,
                                      discriminator=f"{line.index}/{d.kind}"),
                "receipt_id": record["receipt_id"],
                "po_id": record["po_id"],
                "po_line_number": line.po_line_number,
                "item_id": line.item_id,
                "kind": d.kind,
                "expected": {"value": d.expected, "uom": d.expected_uom},
                "actual": {"value": d.actual, "uom": d.actual_uom},
                "note": d.note,
            })  # fmt: skip
        return [d.kind for d in outcome.discrepancies]


def received_line(index: int, raw: Mapping[str, Any]) -> ReceivedLine:
    """Line ``index`` (from 1) of a GoodsReceived record."""
    received, rejected = raw["quantity_received"], raw["quantity_rejected"]
    return ReceivedLine(
        index=index,
        po_line_number=int(raw["po_line_number"]),
        item_id=str(raw["item_id"]),
        received=received["value"],
        received_uom=str(received["uom"]),
        rejected=rejected["value"],
        rejected_uom=str(rejected["uom"]),
        rejection_reason=raw.get("rejection_reason"),
        lot_number=raw.get("lot_number"),
        expiry_date=raw.get("expiry_date"),
    )


def _line_row(rid: str, o: LineOutcome, movement: str | None) -> tuple[Any, ...]:
    line = o.line
    return (
        rid, line.index, line.po_line_number, line.item_id, o.uom, o.received, o.rejected,
        o.accepted, line.received, line.received_uom, line.lot_number, line.expiry_date,
        line.rejection_reason, [d.kind for d in o.discrepancies], movement,
    )  # fmt: skip
