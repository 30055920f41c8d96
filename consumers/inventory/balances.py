"""stock-balances: on-hand stock per location, item and lot, from StockMovement events.

Set-based: one upsert per batch with the movements summed per (location, item, lot).
A balance is kept in the unit of its first movement; a movement in another unit is refused
(dead-lettered with the reason) rather than added as if it were that unit: converting needs
the item master (the receipt-to-payment issue). Commutative: ``on_dead_letter`` continue.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import psycopg

from supplybus.consumers.runtime.processor import Event, Processor, Record
from supplybus.errors import BusinessRuleError

#: Direction of each movement kind; ADJUSTMENT carries its own sign.
DIRECTION = {
    "RECEIPT": 1,
    "TRANSFER_IN": 1,
    "RETURN": 1,
    "ADJUSTMENT": 1,
    "ISSUE": -1,
    "TRANSFER_OUT": -1,
    "WRITE_OFF": -1,
}

_UPSERT = """
INSERT INTO stock_balances (location_id, item_id, lot_number, uom, on_hand, movements)
SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::numeric[], %b::bigint[])
ON CONFLICT (location_id, item_id, lot_number) DO UPDATE
SET on_hand = stock_balances.on_hand + EXCLUDED.on_hand,
    movements = stock_balances.movements + EXCLUDED.movements,
    updated_at = now()
WHERE stock_balances.uom = EXCLUDED.uom
RETURNING location_id, item_id, lot_number
"""


def signed_quantity(record: Record) -> Decimal:
    value: Decimal = record["quantity"]["value"]
    return value * DIRECTION[record["kind"]]


def apply_movements(events: Sequence[Event], conn: psycopg.Connection) -> list[Record]:
    totals: dict[tuple[str, str, str], list[object]] = {}
    for event in events:
        r = event.record
        key = (r["location_id"], r["item_id"], r["lot_number"] or "")
        entry = totals.get(key)
        if entry is None:
            totals[key] = [r["quantity"]["uom"], signed_quantity(r), 1]
        elif entry[0] != r["quantity"]["uom"]:
            raise _unit_refused(key, r["quantity"]["uom"], str(entry[0]))
        else:
            entry[1] += signed_quantity(r)  # type: ignore[operator]
            entry[2] += 1  # type: ignore[operator]
    if totals:
        keys = list(totals)
        updated = conn.execute(
            _UPSERT,
            (
                [k[0] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
                [totals[k][0] for k in keys],
                [totals[k][1] for k in keys],
                [totals[k][2] for k in keys],
            ),
        ).fetchall()
        if len(updated) < len(keys):
            refused = next(k for k in keys if k not in {tuple(u) for u in updated})
            row = conn.execute(
                "SELECT uom FROM stock_balances WHERE location_id = %s AND item_id = %s"
                " AND lot_number = %s",
                refused,
            ).fetchone()
            raise _unit_refused(refused, str(totals[refused][0]), row[0] if row else "?")
    return []


def _unit_refused(key: tuple[str, str, str], unit: str, kept: str) -> BusinessRuleError:
    location, item, lot = key
    return BusinessRuleError(
        f"stock of item {item} at {location}{f' lot {lot}' if lot else ''} is kept in {kept}; "
        f"a movement in {unit} cannot be added without a unit conversion from the item master"
    )


processor = Processor(
    name="stock-balances",
    consumes=("StockMovement",),
    handle=apply_movements,
    description="On-hand stock per location, item and lot.",
    on_dead_letter="continue",  # sums commute: a later movement need not wait for a bad one
)
