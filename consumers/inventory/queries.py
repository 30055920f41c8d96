"""Read side of stock-balances (``supplybus stock``): balances per location, item and lot with
expiry flags and the position's risk level and breach state."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from supplybus.consumers.inventory.stock_rules import is_expired


@dataclass(frozen=True)
class StockRow:
    location_id: str
    item_id: str
    lot_number: str
    expiry_date: dt.date | None
    on_hand: Decimal
    uom: str
    risk_level: str
    breached: bool
    today: dt.date

    @property
    def expired(self) -> bool:
        return is_expired(self.expiry_date, self.today)

    @property
    def negative(self) -> bool:
        return self.on_hand < 0

    def as_json(self) -> dict[str, Any]:
        """Quantities as strings (exact decimals), dates as ISO dates."""
        return {
            "location_id": self.location_id,
            "item_id": self.item_id,
            "lot_number": self.lot_number or None,
            "expiry_date": self.expiry_date.isoformat() if self.expiry_date else None,
            "on_hand": str(self.on_hand),
            "uom": self.uom,
            "expired": self.expired,
            "negative": self.negative,
            "risk_level": self.risk_level,
            "below_reorder_point": self.breached,
        }


_REPORT = """
SELECT b.location_id, b.item_id, b.lot_number, b.expiry_date, b.on_hand, b.uom,
       coalesce(p.risk_level, 'LOW'), coalesce(p.breached, false)
FROM stock_balances b
LEFT JOIN stock_positions p USING (location_id, item_id)
WHERE (%(location)s::text IS NULL OR b.location_id = %(location)s)
  AND (%(item)s::text IS NULL OR b.item_id = %(item)s)
  AND (%(until)s::date IS NULL OR (b.expiry_date <= %(until)s AND b.on_hand <> 0))
ORDER BY b.location_id, b.item_id, b.expiry_date NULLS LAST, b.lot_number
"""


def stock_report(
    conn: psycopg.Connection,
    today: dt.date,
    *,
    location: str | None = None,
    item: str | None = None,
    expiring_within: int | None = None,
) -> list[StockRow]:
    """Balances, filtered; ``expiring_within``: only lots expiring by today + that many days
    (expired ones included) that still hold stock."""
    until = today + dt.timedelta(days=expiring_within) if expiring_within is not None else None
    rows = conn.execute(_REPORT, {"location": location, "item": item, "until": until})
    return [
        StockRow(loc, item, lot, expiry, on_hand, uom, risk, breached, today)
        for loc, item, lot, expiry, on_hand, uom, risk, breached in rows
    ]


def is_known(conn: psycopg.Connection, *, location: str | None, item: str | None) -> str | None:
    """None when the master data knows both (those given); else which option is unknown."""
    if (
        location is not None
        and not conn.execute(
            "SELECT 1 FROM locations WHERE location_id = %s", (location,)
        ).fetchone()
    ):
        return "--location"
    if (
        item is not None
        and not conn.execute("SELECT 1 FROM items WHERE item_id = %s", (item,)).fetchone()
    ):
        return "--item"
    return None
