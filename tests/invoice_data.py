"""Receipts and invoices against a real PO, shared by the invoice-match tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from supplybus.events.envelope import deterministic_id, new_envelope

Record = dict[str, Any]
AT = dt.datetime.now(dt.UTC).replace(microsecond=0)


@dataclass(frozen=True)
class PoLine:
    line_number: int
    item_id: str
    quantity: Decimal
    uom: str
    unit_price: Decimal
    cost_center_id: str


@dataclass(frozen=True)
class Po:
    po_id: str
    po_number: str
    entity_id: str
    facility_id: str | None
    supplier_id: str
    currency: str
    total: Decimal
    budget_period: str
    correlation_id: str
    lines: tuple[PoLine, ...]


def pos_of(conn: psycopg.Connection, requisition_id: str) -> list[Po]:
    """The POs issued for a requisition, by supplier."""
    heads = conn.execute(
        "SELECT po_id, po_number, entity_id, facility_id, supplier_id, currency, total,"
        " budget_period, correlation_id FROM purchase_orders WHERE requisition_id = %s"
        " ORDER BY supplier_id",
        (requisition_id,),
    ).fetchall()
    found = []
    for head in heads:
        lines = tuple(
            PoLine(*row)
            for row in conn.execute(
                "SELECT line_number, item_id, quantity, uom, unit_price, cost_center_id"
                " FROM po_lines WHERE po_id = %s ORDER BY line_number",
                (head[0],),
            )
        )
        found.append(Po(*head, lines))
    return found


def _envelope(kind: str, po: Po, *parts: object, at: dt.datetime = AT) -> Record:
    return new_envelope(
        kind, source_system="erp-east", entity_id=po.entity_id, facility_id=po.facility_id,
        actor="U-AP", correlation_id=po.correlation_id, occurred_at=at,
        event_id=deterministic_id("test-invoice", kind, *parts),
    )  # fmt: skip


def goods_received(
    po: Po, receipt_id: str, quantities: Mapping[int, Decimal], *, minutes: int = 0
) -> Record:
    """A GoodsReceived of ``quantities`` per PO line (in the PO line's unit)."""
    at = AT + dt.timedelta(minutes=minutes)
    by_line = {ln.line_number: ln for ln in po.lines}
    return {
        "envelope": _envelope("GoodsReceived", po, receipt_id, at=at),
        "receipt_id": receipt_id,
        "po_id": po.po_id,
        "location_id": "LOC-DOCK",
        "received_at": at,
        "lines": [
            {"po_line_number": n, "item_id": by_line[n].item_id,
             "quantity_received": {"value": q, "uom": by_line[n].uom},
             "quantity_rejected": {"value": Decimal(0), "uom": by_line[n].uom},
             "rejection_reason": None, "lot_number": None, "expiry_date": None}
            for n, q in sorted(quantities.items())
        ],
    }  # fmt: skip


def invoice_received(
    po: Po,
    invoice_id: str,
    number: str,
    lines: Sequence[tuple[int, Decimal, Decimal]],
    *,
    minutes: int = 0,
    date: dt.date | None = None,
    currency: str | None = None,
) -> Record:
    """An InvoiceReceived of (PO line, quantity, unit price) lines in the PO line's unit."""
    by_line = {ln.line_number: ln for ln in po.lines}
    money = currency or po.currency
    total = sum((q * p for _, q, p in lines), Decimal(0)).quantize(Decimal("0.0001"))
    return {
        "envelope": _envelope("InvoiceReceived", po, invoice_id,
                              at=AT + dt.timedelta(minutes=minutes)),
        "invoice_id": invoice_id,
        "invoice_number": number,
        "supplier_id": po.supplier_id,
        "po_id": po.po_id,
        "invoice_date": date or AT.date(),
        "lines": [
            {"line_number": i, "po_line_number": n, "item_id": by_line[n].item_id,
             "quantity": {"value": q, "uom": by_line[n].uom},
             "unit_price": {"amount": p, "currency": money}}
            for i, (n, q, p) in enumerate(lines, start=1)
        ],
        "total": {"amount": total, "currency": money},
    }  # fmt: skip
