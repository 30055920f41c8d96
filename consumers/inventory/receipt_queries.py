"""The read side of receiving: a receipt as one document for `supplybus show receipt`
(plain dicts of JSON-ready values: quantities and times as strings)."""

from __future__ import annotations

from typing import Any

import psycopg

from supplybus.adapters.postgres import documents
from supplybus.consumers.audit import history

Doc = dict[str, Any]


def receipt(conn: psycopg.Connection, receipt_id: str) -> Doc | None:
    """An applied receipt (status APPLIED: its lines, and per PO line what all receipts
    brought so far) or one waiting for its PO (status WAITING); None when unknown. Either
    with its audit history."""
    found = documents(
        conn,
        "SELECT r.receipt_id, 'APPLIED' AS status, r.po_id, o.po_number, r.location_id,"
        " r.received_at, r.event_id::text, r.correlation_id, r.discrepancies, r.waited,"
        " r.applied_at FROM receipts r JOIN receiving_orders o USING (po_id)"
        " WHERE r.receipt_id = %s",
        receipt_id,
    )
    if not found:
        waiting = documents(
            conn,
            "SELECT receipt_id, 'WAITING' AS status, po_id, event_id::text, waiting_since,"
            " record FROM receipts_waiting WHERE receipt_id = %s",
            receipt_id,
        )
        if not waiting:
            return None
        doc = waiting[0]
        doc["lines"] = doc.pop("record")["lines"]
        doc["history"] = _history(conn, receipt_id)
        return doc
    doc = found[0]
    doc["lines"] = documents(
        conn,
        "SELECT line_index, po_line_number, item_id, uom, received, rejected, accepted,"
        " received_as, received_as_uom, lot_number, expiry_date, rejection_reason,"
        " discrepancies, movement_id::text FROM receipt_lines WHERE receipt_id = %s"
        " ORDER BY line_index",
        receipt_id,
    )
    doc["po_lines"] = documents(
        conn,
        "SELECT line_number, item_id, ordered, uom, received, rejected, accepted"
        " FROM receiving_po_lines WHERE po_id = %s ORDER BY line_number",
        doc["po_id"],
    )
    doc["history"] = _history(conn, receipt_id)
    return doc


def _history(conn: psycopg.Connection, receipt_id: str) -> list[Doc]:
    return [
        {"at": r.entry.at.isoformat(), "actor": r.entry.actor, "action": r.entry.action,
         "reason": r.entry.reason}
        for r in history(conn, receipt_id, "receipt")
    ]  # fmt: skip
