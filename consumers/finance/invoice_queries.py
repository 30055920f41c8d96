"""Reading invoices back: the exception queue (`supplybus exceptions list`) and one invoice
with its PO, payment, payment-run file and audit history (`supplybus show invoice`)."""

from __future__ import annotations

from typing import Any

import psycopg

from supplybus.consumers.audit import history

Doc = dict[str, Any]
QUEUE = ("WAITING", "EXCEPTION")
CODES = ("PRICE_VARIANCE", "QTY_VARIANCE", "NO_RECEIPT", "NO_PO", "DUPLICATE_INVOICE", "CURRENCY")

_QUEUE = """
SELECT invoice_id, invoice_number, supplier_id, po_id, status, total, currency, reasons,
       received_at
FROM invoices
WHERE status = ANY(%(statuses)s)
  AND (%(reason)s::text IS NULL OR reasons @> jsonb_build_array(jsonb_build_object('code', %(reason)s::text)))
ORDER BY received_at, invoice_id
"""  # noqa: E501
_INVOICE = """
SELECT i.invoice_id, i.invoice_number, i.supplier_id, i.po_id, o.po_number, i.entity_id,
       i.invoice_date, i.total, i.currency, i.status, i.reasons, i.duplicate_of,
       i.tolerance_applied, i.matched_total, i.resolved_by, i.resolution, i.resolution_reason,
       i.lines, i.received_at, i.envelope->>'correlation_id'
FROM invoices i LEFT JOIN match_orders o USING (po_id)
WHERE i.invoice_id = %s
"""
_PAYMENT = """
SELECT p.payment_id, p.status, p.holds, p.amount, p.currency, p.authorized_by, p.authorized_at,
       d.file_name, d.status, d.attempts, d.last_error, d.delivered_to
FROM invoice_payments p LEFT JOIN payment_deliveries d USING (invoice_id)
WHERE p.invoice_id = %s
"""


def exception_queue(
    conn: psycopg.Connection, reason: str | None = None, status: str | None = None
) -> list[Doc]:
    """Invoices waiting or in exception, oldest first; with ``reason``: those with that code."""
    statuses = [status] if status else list(QUEUE)
    rows = conn.execute(_QUEUE, {"statuses": statuses, "reason": reason}).fetchall()
    return [
        {"invoice_id": iid, "invoice_number": number, "supplier_id": supplier, "po_id": po_id,
         "status": st, "total": str(total), "currency": currency, "reasons": reasons,
         "received_at": at.isoformat()}
        for iid, number, supplier, po_id, st, total, currency, reasons, at in rows
    ]  # fmt: skip


def invoice(conn: psycopg.Connection, invoice_id: str) -> Doc | None:
    """One invoice: header, match outcome, lines, payment and its file, audit history."""
    row = conn.execute(_INVOICE, (invoice_id,)).fetchone()
    if row is None:
        return None
    names = (
        "invoice_id", "invoice_number", "supplier_id", "po_id", "po_number", "entity_id",
        "invoice_date", "total", "currency", "status", "reasons", "duplicate_of",
        "tolerance_applied", "matched_total", "resolved_by", "resolution", "resolution_reason",
        "lines", "received_at", "correlation_id",
    )  # fmt: skip
    doc: Doc = dict(zip(names, row, strict=True))
    doc["invoice_date"] = doc["invoice_date"].isoformat()
    doc["received_at"] = doc["received_at"].isoformat()
    doc["total"] = str(doc["total"])
    doc["matched_total"] = None if doc["matched_total"] is None else str(doc["matched_total"])
    pay = conn.execute(_PAYMENT, (invoice_id,)).fetchone()
    doc["payment"] = None
    if pay is not None:
        pid, status, holds, amount, currency, by, at, name, fstatus, attempts, error, where = pay
        doc["payment"] = {
            "payment_id": pid, "status": status, "holds": list(holds), "amount": str(amount),
            "currency": currency, "authorized_by": by,
            "authorized_at": at.isoformat() if at else None,
            "file": None if name is None else {
                "name": f"{name}.json", "status": fstatus, "attempts": attempts,
                "last_error": error, "written_to": where,
            },
        }  # fmt: skip
    doc["history"] = [
        {"at": r.entry.at.isoformat(), "actor": r.entry.actor, "action": r.entry.action,
         "reason": r.entry.reason}
        for r in history(conn, invoice_id, "invoice")
    ]  # fmt: skip
    return doc
