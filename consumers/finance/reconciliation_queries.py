"""Every query of the reconciliation report (`supplybus reconcile`), read-only, in one place.

The period selects the purchase orders (their budget period) and the budget entries and
spend of that period; receipts, invoices and stock are read as they are now. Rows come back
as the plain data of ``reconciliation``, sorted.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from decimal import Decimal

import psycopg

from supplybus.consumers.finance.reconciliation import (
    Budgeted,
    BudgetReference,
    CostCenterSpend,
    InvoicedLine,
    PoCommitment,
    ReceivedLine,
)
from supplybus.consumers.finance.reconciliation_stock import Balance
from supplybus.consumers.inventory.balances import NAME as STOCK_PROCESSOR
from supplybus.consumers.masterdata.units import ItemUnits, item_units

#: the last movements named per item@location
LAST_MOVEMENTS = 3

_SPEND = """
WITH accounts AS (
    SELECT cost_center_id FROM cost_center_budgets WHERE period = %(p)s
    UNION SELECT cost_center_id FROM budget_spend WHERE period = %(p)s
    UNION SELECT cost_center_id FROM budget_entries WHERE period = %(p)s
    UNION SELECT l.cost_center_id FROM purchase_orders o JOIN po_lines l USING (po_id)
          WHERE o.budget_period = %(p)s
), entries AS (
    SELECT cost_center_id,
           sum(CASE kind WHEN 'COMMITTED' THEN amount ELSE -amount END) AS committed,
           coalesce(sum(amount) FILTER (WHERE kind = 'ACTUALIZED'), 0) AS actual
    FROM budget_entries WHERE period = %(p)s GROUP BY cost_center_id
)
SELECT a.cost_center_id, c.name, b.amount, coalesce(s.committed, 0), coalesce(s.actual, 0),
       coalesce(e.committed, 0), coalesce(e.actual, 0), coalesce(b.currency, s.currency)
FROM accounts a
LEFT JOIN cost_centers c USING (cost_center_id)
LEFT JOIN cost_center_budgets b ON b.cost_center_id = a.cost_center_id AND b.period = %(p)s
LEFT JOIN budget_spend s ON s.cost_center_id = a.cost_center_id AND s.period = %(p)s
LEFT JOIN entries e ON e.cost_center_id = a.cost_center_id
ORDER BY a.cost_center_id
"""
_COMMITMENTS = """
SELECT o.po_id, o.po_number, l.cost_center_id, o.currency, sum(round(l.quantity * l.unit_price, 4)),
       coalesce(max(m.actualized), 0), o.status = 'CANCELLED', o.correlation_id
FROM purchase_orders o
JOIN po_lines l USING (po_id)
LEFT JOIN match_actuals m ON m.po_id = o.po_id AND m.cost_center_id = l.cost_center_id
WHERE o.budget_period = %s
GROUP BY o.po_id, l.cost_center_id
ORDER BY o.po_id, l.cost_center_id
"""
_REFERENCES = """
SELECT reference_type, reference_id, cost_center_id, min(currency),
       coalesce(sum(amount) FILTER (WHERE kind = 'COMMITTED'), 0),
       coalesce(sum(amount) FILTER (WHERE kind = 'RELEASED'), 0),
       coalesce(sum(amount) FILTER (WHERE kind = 'ACTUALIZED'), 0),
       array_agg(DISTINCT correlation_id ORDER BY correlation_id),
       array_agg(event_id::text ORDER BY occurred_at, event_id)
FROM budget_entries WHERE period = %s
GROUP BY reference_type, reference_id, cost_center_id
ORDER BY reference_type, reference_id, cost_center_id
"""
_RECEIVED = """
SELECT o.po_id, o.po_number, l.line_number, l.item_id, l.uom, l.unit_price, l.currency,
       o.correlation_id, coalesce(r.accepted, 0),
       coalesce(array_agg(DISTINCT rl.receipt_id ORDER BY rl.receipt_id)
                FILTER (WHERE rl.receipt_id IS NOT NULL), '{}'),
       coalesce(array_agg(DISTINCT rc.event_id::text ORDER BY rc.event_id::text)
                FILTER (WHERE rl.receipt_id IS NOT NULL), '{}')
FROM purchase_orders o
JOIN po_lines l USING (po_id)
LEFT JOIN receiving_po_lines r ON r.po_id = l.po_id AND r.line_number = l.line_number
LEFT JOIN receipts rc ON rc.po_id = l.po_id
LEFT JOIN receipt_lines rl
       ON rl.receipt_id = rc.receipt_id AND rl.po_line_number = l.line_number AND rl.accepted > 0
WHERE o.budget_period = %s
GROUP BY o.po_id, l.po_id, l.line_number, r.accepted
ORDER BY o.po_id, l.line_number
"""
# Invoices that bill: matched, or waiting / in exception except exact duplicates (a rejected
# invoice is never paid, a duplicate repeats one already counted).
_INVOICED = """
SELECT i.invoice_id, i.envelope->>'event_id', i.po_id, (ln->>'po_line_number')::int,
       ln->>'item_id', (ln->>'quantity')::numeric, ln->>'uom', (ln->>'unit_price')::numeric
FROM invoices i
JOIN purchase_orders o USING (po_id)
CROSS JOIN LATERAL jsonb_array_elements(i.lines) AS ln
WHERE o.budget_period = %s
  AND (i.status = 'MATCHED' OR (i.status IN ('WAITING', 'EXCEPTION')
       AND NOT i.reasons @> '[{"code": "DUPLICATE_INVOICE"}]'::jsonb))
ORDER BY i.invoice_id, (ln->>'line_number')::int
"""
_UNITS = """
SELECT i.item_id, i.base_uom,
       coalesce(array_agg(u.uom ORDER BY u.uom) FILTER (WHERE u.uom IS NOT NULL), '{}'),
       coalesce(array_agg(u.factor ORDER BY u.uom) FILTER (WHERE u.uom IS NOT NULL), '{}')
FROM items i LEFT JOIN item_units u USING (item_id)
WHERE i.item_id = ANY(%s)
GROUP BY i.item_id
"""
_BALANCES = """
SELECT location_id, item_id, lot_number, on_hand, uom FROM stock_balances
ORDER BY location_id, item_id, lot_number
"""
_MOVEMENTS = """
SELECT k, event_id FROM (
    SELECT convert_from(key, 'UTF8') AS k, event_id::text AS event_id,
           row_number() OVER (PARTITION BY key ORDER BY processed_at DESC, "offset" DESC) AS n
    FROM processed_events WHERE processor = %s AND key = ANY(%s::bytea[])
) last WHERE n <= %s
ORDER BY k, n
"""
_DEAD = """
SELECT convert_from(key, 'UTF8'), event_id::text FROM dead_letters
WHERE processor = %s AND status IN ('open', 'parked') AND key = ANY(%s::bytea[])
  AND event_id IS NOT NULL
ORDER BY 1, id
"""


def cost_center_spend(conn: psycopg.Connection, period: str) -> list[CostCenterSpend]:
    """Each cost center with a budget, spend, entries or PO lines in the period."""
    return [CostCenterSpend(*row) for row in conn.execute(_SPEND, {"p": period})]


def po_commitments(conn: psycopg.Connection, period: str) -> list[PoCommitment]:
    return [PoCommitment(*row) for row in conn.execute(_COMMITMENTS, (period,))]


def budget_references(conn: psycopg.Connection, period: str) -> list[BudgetReference]:
    return [
        BudgetReference(rtype, rid, center, currency, Budgeted(c, r, a), tuple(cids), tuple(eids))
        for rtype, rid, center, currency, c, r, a, cids, eids in conn.execute(
            _REFERENCES, (period,)
        )
    ]


def received_lines(conn: psycopg.Connection, period: str) -> list[ReceivedLine]:
    return [
        ReceivedLine(po, number, n, item, uom, price, currency, cid, accepted,
                     tuple(receipts), tuple(events))
        for po, number, n, item, uom, price, currency, cid, accepted, receipts, events
        in conn.execute(_RECEIVED, (period,))
    ]  # fmt: skip


def invoiced_lines(conn: psycopg.Connection, period: str) -> list[InvoicedLine]:
    return [InvoicedLine(*row) for row in conn.execute(_INVOICED, (period,))]


def units_of(conn: psycopg.Connection, item_ids: Iterable[str]) -> dict[str, ItemUnits]:
    """The item master's units of those items it knows."""
    return {
        item: item_units(item, base, zip(uoms, factors, strict=True))
        for item, base, uoms, factors in conn.execute(_UNITS, (sorted(set(item_ids)),))
    }


def known_locations(conn: psycopg.Connection, location_ids: Iterable[str]) -> set[str]:
    rows = conn.execute(
        "SELECT location_id FROM locations WHERE location_id = ANY(%s)",
        (sorted(set(location_ids)),),
    )
    return {r[0] for r in rows}


def balances(conn: psycopg.Connection) -> list[tuple[Balance, str]]:
    """Every stock balance with the unit it is kept in."""
    return [
        (Balance(loc, item, lot, Decimal(on_hand)), uom)
        for loc, item, lot, on_hand, uom in conn.execute(_BALANCES)
    ]


def _keys(pairs: Collection[tuple[str, str]]) -> list[bytes]:
    return [f"{item}@{loc}".encode() for loc, item in sorted(pairs)]


def _by_pair(rows: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, ...]]:
    found: dict[tuple[str, str], list[str]] = {}
    for key, event_id in rows:
        item, _, loc = key.partition("@")
        found.setdefault((loc, item), []).append(event_id)
    return {pair: tuple(ids) for pair, ids in found.items()}


def last_movements(
    conn: psycopg.Connection, pairs: Collection[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, ...]]:
    """(location, item) -> event ids of the last movements stock-balances applied, newest
    first (from its ledger, keyed item@location)."""
    if not pairs:
        return {}
    return _by_pair(conn.execute(_MOVEMENTS, (STOCK_PROCESSOR, _keys(pairs), LAST_MOVEMENTS)))


def dead_movements(
    conn: psycopg.Connection, pairs: Collection[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, ...]]:
    """(location, item) -> event ids of movements stock-balances dead-lettered (open or
    parked): not counted in its balances."""
    if not pairs:
        return {}
    return _by_pair(conn.execute(_DEAD, (STOCK_PROCESSOR, _keys(pairs))))
