"""The read side of procurement: a requisition or a purchase order as one document, for
`supplybus show` (plain dicts of JSON-ready values: amounts and times as strings)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from supplybus.adapters.postgres import documents
from supplybus.consumers.audit import history

Doc = dict[str, Any]


def requisition(conn: psycopg.Connection, requisition_id: str) -> Doc | None:
    """Status, lines (placed), approval steps, purchase orders and audit history."""
    found = documents(
        conn,
        "SELECT requisition_id, status, entity_id, facility_id, requester_id, cost_center_id,"
        " urgency, priority, need_by, total, currency, flags, budget_status, reasons, lines,"
        " policy_versions, correlation_id, submitted_at, updated_at FROM requisitions"
        " WHERE requisition_id = %s",
        requisition_id,
    )
    if not found:
        return None
    doc = found[0]
    doc["steps"] = documents(
        conn,
        "SELECT step, role, roles, status, reason, rule_id, sla_minutes, authority,"
        " requested_at, due_at, escalations, decided_by, on_behalf_of, decided_at, comment"
        " FROM approval_steps WHERE requisition_id = %s ORDER BY step",
        requisition_id,
    )
    doc["purchase_orders"] = documents(
        conn,
        "SELECT po_id, po_number, supplier_id, total, currency, status FROM purchase_orders"
        " WHERE requisition_id = %s ORDER BY po_number",
        requisition_id,
    )
    doc["history"] = _history(conn, requisition_id, "requisition")
    return doc


def purchase_order(conn: psycopg.Connection, po: str) -> Doc | None:
    """A PO by id or number: header, lines, outbound delivery and audit history."""
    found = documents(
        conn,
        "SELECT po_id, po_number, status, requisition_id, entity_id, facility_id, supplier_id,"
        " cost_center_id, ship_to_location_id, total, currency, priority, budget_period,"
        " correlation_id, issued_at, cancelled_reason FROM purchase_orders"
        " WHERE po_id = %s OR po_number = %s",
        po,
        po,
    )
    if not found:
        return None
    doc = found[0]
    doc["lines"] = documents(
        conn,
        "SELECT line_number, requisition_line, item_id, quantity, uom, unit_price, currency,"
        " round(quantity * unit_price, 4) AS amount, cost_center_id, need_by FROM po_lines"
        " WHERE po_id = %s ORDER BY line_number",
        doc["po_id"],
    )
    delivery = documents(
        conn,
        "SELECT status, attempts, created_at, last_attempt_at, last_error, alerted_at,"
        " delivered_at, delivered_to FROM po_deliveries WHERE po_id = %s",
        doc["po_id"],
    )
    doc["delivery"] = delivery[0] if delivery else None
    doc["history"] = _history(conn, doc["po_number"], "purchase_order")
    return doc


def _history(conn: psycopg.Connection, entity_id: str, entity_type: str) -> Sequence[Doc]:
    return [
        {"at": r.entry.at.isoformat(), "actor": r.entry.actor, "action": r.entry.action,
         "reason": r.entry.reason, "rule_ids": list(r.entry.rule_ids)}
        for r in history(conn, entity_id, entity_type)
    ]  # fmt: skip
