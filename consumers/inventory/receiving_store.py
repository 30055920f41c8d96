"""The receiving processor's tables (migration 0014): loaded per batch, saved per batch.

``load`` takes the batch's purchase orders (locked: an advisory lock per PO, so the routine
and critical lanes never apply one PO's events at once and a receipt parked by one is seen by
the other), their lines, the receipts already known by id, the receipts waiting for those POs
and the item master rows the receipts name, in a fixed number of statements. ``save`` writes
what changed back, again in a fixed number of statements.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg

from supplybus.consumers.inventory.receipt_rules import ItemRules, PoLine
from supplybus.consumers.masterdata.units import item_units
from supplybus.events import jsonio

Record = dict[str, Any]
#: Advisory lock class of receiving's purchase orders (the runtime uses 0x5B05..0x5B0E).
LOCK_CLASS = 0x5B14


@dataclass
class Order:
    """A purchase order as receiving knows it."""

    po_id: str
    po_number: str | None = None
    entity_id: str | None = None
    supplier_id: str | None = None
    ship_to_location_id: str | None = None
    issued_event_id: str | None = None
    status: str = "OPEN"
    cancelled_reason: str | None = None
    lines: dict[int, PoLine] = field(default_factory=dict)
    prices: dict[int, tuple[Decimal, str]] = field(default_factory=dict)
    changed: bool = False

    @property
    def issued(self) -> bool:
        return self.issued_event_id is not None

    @property
    def cancelled(self) -> str | None:
        return (self.cancelled_reason or "cancelled") if self.status == "CANCELLED" else None


@dataclass
class Waiting:
    receipt_id: str
    po_id: str
    event_id: str
    digest: str
    record: Mapping[str, Any]


@dataclass
class Loaded:
    orders: dict[str, Order]
    known: dict[str, str]  # receipt id -> digest, applied or waiting
    waiting: dict[str, list[Waiting]]  # po id -> receipts in arrival order
    items: dict[str, ItemRules]


def digest(record: Mapping[str, Any]) -> str:
    """A receipt's content (not its envelope): the same document sent again has the same."""
    content = {k: record[k] for k in ("receipt_id", "po_id", "location_id", "received_at")}
    content["lines"] = [
        {
            **line,
            "quantity_received": _quantity(line["quantity_received"]),
            "quantity_rejected": _quantity(line["quantity_rejected"]),
        }
        for line in record["lines"]
    ]
    return hashlib.sha256(jsonio.dumps(content).encode()).hexdigest()


def _quantity(q: Mapping[str, Any]) -> dict[str, str]:
    return {"value": str(Decimal(q["value"]).normalize()), "uom": str(q["uom"])}


def to_json(record: Mapping[str, Any]) -> str:
    return str(jsonio.dumps(record))


def from_json(raw: Mapping[str, Any]) -> Record:
    """A GoodsReceived back from its stored JSON (times, dates and decimals parsed)."""
    record: Record = json.loads(json.dumps(raw))
    env = record["envelope"]
    env["occurred_at"] = dt.datetime.fromisoformat(env["occurred_at"])
    record["received_at"] = dt.datetime.fromisoformat(record["received_at"])
    for line in record["lines"]:
        for name in ("quantity_received", "quantity_rejected"):
            line[name]["value"] = Decimal(line[name]["value"])
        if line.get("expiry_date"):
            line["expiry_date"] = dt.date.fromisoformat(line["expiry_date"])
    return record


def load(
    conn: psycopg.Connection, po_ids: Sequence[str], receipt_ids: Sequence[str],
    item_ids: Iterable[str],
) -> Loaded:  # fmt: skip
    """Lock the batch's POs and read what the batch needs."""
    conn.execute(
        "SELECT pg_advisory_xact_lock(%s, k) FROM"
        " (SELECT DISTINCT hashtext(p) AS k FROM unnest(%s::text[]) AS p ORDER BY 1) AS s",
        (LOCK_CLASS, list(po_ids)),
    )
    orders: dict[str, Order] = {}
    for row in conn.execute(
        "SELECT po_id, po_number, entity_id, supplier_id, ship_to_location_id,"
        " issued_event_id::text, status, cancelled_reason FROM receiving_orders"
        " WHERE po_id = ANY(%s)",
        (list(po_ids),),
    ):
        orders[row[0]] = Order(*row)
    for po_id, n, item, ordered, uom, price, currency, received, rejected, accepted in conn.execute(
        "SELECT po_id, line_number, item_id, ordered, uom, unit_price, currency, received,"
        " rejected, accepted FROM receiving_po_lines WHERE po_id = ANY(%s)",
        (list(po_ids),),
    ):
        orders[po_id].lines[n] = PoLine(n, item, ordered, uom, received, rejected, accepted)
        orders[po_id].prices[n] = (price, currency)
    known: dict[str, str] = dict(
        conn.execute(
            "SELECT receipt_id, digest FROM receipts WHERE receipt_id = ANY(%s)"
            " UNION ALL SELECT receipt_id, digest FROM receipts_waiting"
            " WHERE receipt_id = ANY(%s) OR po_id = ANY(%s)",
            (list(receipt_ids), list(receipt_ids), list(po_ids)),
        ).fetchall()
    )
    waiting: dict[str, list[Waiting]] = {}
    for rid, po_id, event_id, dig, record in conn.execute(
        "SELECT receipt_id, po_id, event_id::text, digest, record FROM receipts_waiting"
        " WHERE po_id = ANY(%s) ORDER BY seq",
        (list(po_ids),),
    ):
        waiting.setdefault(po_id, []).append(Waiting(rid, po_id, event_id, dig, from_json(record)))
    wanted = set(item_ids) | {
        line["item_id"] for ws in waiting.values() for w in ws for line in w.record["lines"]
    }
    return Loaded(orders, known, waiting, load_items(conn, sorted(wanted)))


def load_items(conn: psycopg.Connection, item_ids: Sequence[str]) -> dict[str, ItemRules]:
    """The item master's rules for receiving (category, lot control, units)."""
    rows = conn.execute(
        "SELECT i.item_id, i.category, i.lot_controlled, i.base_uom,"
        " coalesce(array_agg(u.uom) FILTER (WHERE u.uom IS NOT NULL), '{}'),"
        " coalesce(array_agg(u.factor) FILTER (WHERE u.uom IS NOT NULL), '{}')"
        " FROM items i LEFT JOIN item_units u USING (item_id) WHERE i.item_id = ANY(%s)"
        " GROUP BY i.item_id",
        (list(item_ids),),
    ).fetchall()
    return {
        item: ItemRules(
            item, category, lots, item_units(item, base, zip(uoms, factors, strict=True))
        )
        for item, category, lots, base, uoms, factors in rows
    }


@dataclass
class Changes:
    """What a batch writes."""

    receipts: list[tuple[Any, ...]] = field(default_factory=list)
    receipt_lines: list[tuple[Any, ...]] = field(default_factory=list)
    parked: list[Waiting] = field(default_factory=list)
    unparked: list[str] = field(default_factory=list)


def save(conn: psycopg.Connection, orders: Iterable[Order], changes: Changes) -> None:
    changed = [o for o in orders if o.changed]
    with conn.cursor() as cur:
        if changed:
            cur.executemany(
                "INSERT INTO receiving_orders (po_id, po_number, entity_id, supplier_id,"
                " ship_to_location_id, issued_event_id, status, cancelled_reason)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (po_id) DO UPDATE SET"
                " po_number = EXCLUDED.po_number, entity_id = EXCLUDED.entity_id,"
                " supplier_id = EXCLUDED.supplier_id,"
                " ship_to_location_id = EXCLUDED.ship_to_location_id,"
                " issued_event_id = EXCLUDED.issued_event_id, status = EXCLUDED.status,"
                " cancelled_reason = EXCLUDED.cancelled_reason, updated_at = now()",
                [(o.po_id, o.po_number, o.entity_id, o.supplier_id, o.ship_to_location_id,
                  o.issued_event_id, o.status, o.cancelled_reason) for o in changed],
            )  # fmt: skip
            lines = [(o, line) for o in changed for line in o.lines.values()]
            cur.executemany(
                "INSERT INTO receiving_po_lines (po_id, line_number, item_id, ordered, uom,"
                " unit_price, currency, received, rejected, accepted)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (po_id, line_number) DO UPDATE SET received = EXCLUDED.received,"
                " rejected = EXCLUDED.rejected, accepted = EXCLUDED.accepted",
                [(o.po_id, ln.line_number, ln.item_id, ln.ordered, ln.uom,
                  *o.prices[ln.line_number], ln.received, ln.rejected, ln.accepted)
                 for o, ln in lines],
            )  # fmt: skip
        if changes.unparked:
            cur.execute(
                "DELETE FROM receipts_waiting WHERE receipt_id = ANY(%s)", (changes.unparked,)
            )
        cur.executemany(
            "INSERT INTO receipts_waiting (receipt_id, po_id, event_id, digest, record)"
            " VALUES (%s, %s, %s, %s, %s::jsonb)",
            [(w.receipt_id, w.po_id, w.event_id, w.digest, to_json(w.record))
             for w in changes.parked],
        )  # fmt: skip
        cur.executemany(
            "INSERT INTO receipts (receipt_id, po_id, location_id, received_at, event_id,"
            " correlation_id, digest, discrepancies, waited)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            changes.receipts,
        )
        cur.executemany(
            "INSERT INTO receipt_lines (receipt_id, line_index, po_line_number, item_id, uom,"
            " received, rejected, accepted, received_as, received_as_uom, lot_number,"
            " expiry_date, rejection_reason, discrepancies, movement_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            changes.receipt_lines,
        )
