"""Items for the demo and the bench: (item id, stocking unit) pairs written straight into the
item master, as `supplybus run masterdata` keeps it. stock-balances converts every movement
through the item master and refuses an item it does not know."""

from __future__ import annotations

from collections.abc import Iterable

from supplybus.adapters.postgres import connect
from supplybus.config import Settings

_ITEMS = """
INSERT INTO items (item_id, gtin, description, category, base_uom, lot_controlled, orderable,
                   occurred_at, event_id)
SELECT i, '00000000000000', 'generated item', 'MED_SURG', u, false, true, now(),
       md5('generated-item/' || i)::uuid
FROM unnest(%s::text[], %s::text[]) AS x(i, u)
ON CONFLICT DO NOTHING
"""
_UNITS = """
INSERT INTO item_units (item_id, uom, factor)
SELECT i, u, 1 FROM unnest(%s::text[], %s::text[]) AS x(i, u)
ON CONFLICT DO NOTHING
"""


def register_items(settings: Settings, items: Iterable[tuple[str, str]]) -> None:
    """Each (item, stocking unit) in the item master, known in that unit only."""
    pairs = sorted(set(items))
    ids, units = [i for i, _ in pairs], [u for _, u in pairs]
    with connect(settings) as conn:
        conn.execute(_ITEMS, (ids, units))
        conn.execute(_UNITS, (ids, units))
        conn.commit()
