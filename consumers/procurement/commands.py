"""Purchase-order commands: a cancellation is an event (PurchaseOrderCancelled) written to the
outbox, checked first against the PO as stored; the purchase-orders processor applies it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

from supplybus.errors import BusinessRuleError, ConfigError
from supplybus.events.envelope import deterministic_id, new_envelope

SOURCE = "supplybus.po.cli"


def cancellation(
    conn: psycopg.Connection, po: str, reason: str, actor: str, now: dt.datetime
) -> dict[str, Any]:
    """The PurchaseOrderCancelled of PO ``po`` (number or id); BusinessRuleError when it is
    unknown or cancelled already."""
    if not reason.strip():
        raise ConfigError("--reason: a cancellation needs a reason")
    row = conn.execute(
        "SELECT po_id, po_number, status, entity_id, facility_id, priority, correlation_id"
        " FROM purchase_orders WHERE po_id = %s OR po_number = %s",
        (po, po),
    ).fetchone()
    if row is None:
        raise BusinessRuleError(f"purchase order {po} is not known")
    po_id, number, status, entity, facility, priority, correlation = row
    if status == "CANCELLED":
        raise BusinessRuleError(f"purchase order {number} is cancelled already")
    return {
        "envelope": new_envelope(
            "PurchaseOrderCancelled",
            source_system=SOURCE,
            entity_id=entity,
            facility_id=facility,
            actor=actor,
            correlation_id=correlation,
            priority=priority,
            occurred_at=now,
            event_id=deterministic_id(po_id, "PurchaseOrderCancelled"),
        ),
        "po_id": po_id,
        "reason": reason,
    }
