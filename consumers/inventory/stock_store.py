"""The SQL of stock-balances: what a batch reads (under the position locks) and writes back.

Every read is one set-based query for the batch's (location, item) pairs; every write one
``unnest`` statement. Quantities are in the item's stocking (base) unit.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

import psycopg

from supplybus.consumers.inventory.replenishment import BreachState, Contract, CostCenter
from supplybus.consumers.inventory.stock_rules import Lot
from supplybus.consumers.masterdata.units import ItemUnits, item_units

Pair = tuple[str, str]  # (location_id, item_id)


@dataclass(frozen=True)
class ItemInfo:
    units: ItemUnits
    category: str


@dataclass
class Position:
    """A (location, item) under its row lock: lots, breach and risk state, usage, orders."""

    lots: dict[str, Lot]
    uoms: dict[str, str]  # lot -> the unit its row is kept in
    breach: BreachState
    risk: str
    usage: dict[dt.date, Decimal] = field(default_factory=dict)
    ordered: dict[str, Decimal] = field(default_factory=dict)  # open PO -> ordered (base)
    received: dict[str, Decimal] = field(default_factory=dict)  # PO -> received (base)

    @property
    def on_hand(self) -> Decimal:
        return sum((lot.on_hand for lot in self.lots.values()), Decimal(0))

    @property
    def on_order(self) -> Decimal:
        return sum(
            (
                max(Decimal(0), q - self.received.get(po, Decimal(0)))
                for po, q in self.ordered.items()
            ),
            Decimal(0),
        )


@dataclass(frozen=True)
class ParLevel:
    reorder_point: Decimal
    reorder_point_uom: str
    reorder_quantity: Decimal
    reorder_quantity_uom: str


@dataclass(frozen=True)
class Place:
    """A location's facility, legal entity and kind."""

    facility_id: str
    entity_id: str
    kind: str


def items(conn: psycopg.Connection, item_ids: Collection[str]) -> dict[str, ItemInfo]:
    rows = conn.execute(
        "SELECT i.item_id, i.base_uom, i.category,"
        " coalesce(array_agg(u.uom) FILTER (WHERE u.uom IS NOT NULL), '{}'),"
        " coalesce(array_agg(u.factor) FILTER (WHERE u.uom IS NOT NULL), '{}')"
        " FROM items i LEFT JOIN item_units u USING (item_id)"
        " WHERE i.item_id = ANY(%b) GROUP BY i.item_id",
        (list(item_ids),),
    ).fetchall()
    return {
        r[0]: ItemInfo(item_units(r[0], r[1], zip(r[3], r[4], strict=True)), r[2]) for r in rows
    }


def lock_positions(conn: psycopg.Connection, pairs: list[Pair]) -> dict[Pair, Position]:
    """Create the missing position rows and lock all of them (in key order, so two lanes
    never deadlock on each other), then read the lots under the locks."""
    locs, its = [p[0] for p in pairs], [p[1] for p in pairs]
    conn.execute(
        "INSERT INTO stock_positions (location_id, item_id)"
        " SELECT * FROM unnest(%b::text[], %b::text[]) ON CONFLICT DO NOTHING",
        (locs, its),
    )
    found = {
        (r[0], r[1]): Position({}, {}, BreachState(r[2], r[3]), r[4])
        for r in conn.execute(
            "SELECT location_id, item_id, breached, breach_seq, risk_level FROM stock_positions"
            " WHERE (location_id, item_id) IN (SELECT * FROM unnest(%b::text[], %b::text[]))"
            " ORDER BY location_id, item_id FOR UPDATE",
            (locs, its),
        )
    }
    for loc, item, lot, uom, expiry, on_hand in conn.execute(
        "SELECT location_id, item_id, lot_number, uom, expiry_date, on_hand FROM stock_balances"
        " WHERE (location_id, item_id) IN (SELECT * FROM unnest(%b::text[], %b::text[]))",
        (locs, its),
    ):
        found[(loc, item)].lots[lot] = Lot(lot, expiry, on_hand)
        found[(loc, item)].uoms[lot] = uom
    return found


def load_usage(conn: psycopg.Connection, positions: dict[Pair, Position], since: dt.date) -> None:
    pairs = list(positions)
    for loc, item, day, issued in conn.execute(
        "SELECT location_id, item_id, day, issued FROM stock_usage WHERE day >= %s AND"
        " (location_id, item_id) IN (SELECT * FROM unnest(%b::text[], %b::text[]))",
        (since, [p[0] for p in pairs], [p[1] for p in pairs]),
    ):
        positions[(loc, item)].usage[day] = issued


def par_levels(conn: psycopg.Connection, pairs: list[Pair]) -> dict[Pair, ParLevel]:
    return {
        (r[0], r[1]): ParLevel(r[2], r[3], r[4], r[5])
        for r in conn.execute(
            "SELECT location_id, item_id, reorder_point, reorder_point_uom, reorder_quantity,"
            " reorder_quantity_uom FROM par_levels WHERE (location_id, item_id) IN"
            " (SELECT * FROM unnest(%b::text[], %b::text[]))",
            ([p[0] for p in pairs], [p[1] for p in pairs]),
        )
    }


def open_po_lines(
    conn: psycopg.Connection, pairs: Collection[Pair]
) -> dict[Pair, list[tuple[str, Decimal, str]]]:
    """(po_id, quantity, uom) of the lines of POs not cancelled, shipping to the location."""
    found: dict[Pair, list[tuple[str, Decimal, str]]] = defaultdict(list)
    for loc, item, po, qty, uom in conn.execute(
        "SELECT o.ship_to_location_id, l.item_id, o.po_id, l.quantity, l.uom"
        " FROM purchase_orders o JOIN po_lines l USING (po_id)"
        " WHERE o.status <> 'CANCELLED' AND (o.ship_to_location_id, l.item_id) IN"
        " (SELECT * FROM unnest(%b::text[], %b::text[])) ORDER BY o.po_id, l.line_number",
        ([p[0] for p in pairs], [p[1] for p in pairs]),
    ):
        found[(loc, item)].append((po, qty, uom))
    return found


def load_receipts(conn: psycopg.Connection, positions: dict[Pair, Position]) -> None:
    pairs = list(positions)
    for loc, item, po, received in conn.execute(
        "SELECT location_id, item_id, po_id, received FROM stock_po_receipts WHERE"
        " (location_id, item_id) IN (SELECT * FROM unnest(%b::text[], %b::text[]))",
        ([p[0] for p in pairs], [p[1] for p in pairs]),
    ):
        positions[(loc, item)].received[po] = received


def po_ids(conn: psycopg.Connection, references: Collection[str]) -> dict[str, str]:
    """reference -> po_id, for the references that name a PO: its po_id or po_number, or a
    receipt of the receiving processor (``receipts``, migration 0014, when it exists)."""
    refs = list(references)
    found: dict[str, str] = {}
    for po_id, number in conn.execute(
        "SELECT po_id, po_number FROM purchase_orders WHERE po_id = ANY(%b) OR po_number = ANY(%b)",
        (refs, refs),
    ):
        found[po_id] = found[number] = po_id
    row = conn.execute("SELECT to_regclass('receipts') IS NOT NULL").fetchone()
    if row and row[0]:
        for receipt_id, po_id in conn.execute(
            "SELECT receipt_id, po_id FROM receipts WHERE receipt_id = ANY(%b)", (refs,)
        ):
            found[receipt_id] = po_id
    return found


def places(conn: psycopg.Connection, locations: Collection[str]) -> dict[str, Place]:
    return {
        r[0]: Place(r[1], r[2], r[3])
        for r in conn.execute(
            "SELECT l.location_id, l.facility_id, f.owning_entity_id, l.kind FROM locations l"
            " JOIN facilities f USING (facility_id) WHERE l.location_id = ANY(%b)",
            (list(locations),),
        )
    }


def cost_centers(conn: psycopg.Connection, facility_id: str) -> list[CostCenter]:
    return [
        CostCenter(*r)
        for r in conn.execute(
            "SELECT cost_center_id, status, grant_funded FROM cost_centers WHERE facility_id = %s",
            (facility_id,),
        )
    ]


def contracts(conn: psycopg.Connection, item_id: str, entity_id: str) -> list[Contract]:
    """The item's contract prices with suppliers that are active and sell to the entity."""
    return [
        Contract(*r)
        for r in conn.execute(
            "SELECT c.supplier_id, c.uom, c.amount, c.currency, c.valid_from, c.valid_to"
            " FROM contract_prices c JOIN suppliers s USING (supplier_id)"
            " WHERE c.item_id = %s AND s.status = 'ACTIVE' AND %s = ANY(s.entity_ids)",
            (item_id, entity_id),
        )
    ]


def save(
    conn: psycopg.Connection,
    positions: dict[Pair, Position],
    touched: Iterable[tuple[Pair, str]],
    counts: dict[tuple[Pair, str], int],
    base_uoms: dict[str, str],
    usage_days: Iterable[tuple[Pair, dt.date]],
    receipts: Iterable[tuple[Pair, str]],
) -> None:
    """Write back the lots touched (absolute values: the rows are locked), the positions'
    states, the usage days and the PO receipts changed."""
    rows = [(p, lot, positions[p].lots[lot]) for p, lot in touched]
    conn.execute(
        "INSERT INTO stock_balances"
        " (location_id, item_id, lot_number, uom, on_hand, expiry_date, movements)"
        " SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::numeric[],"
        " %b::date[], %b::bigint[])"
        " ON CONFLICT (location_id, item_id, lot_number) DO UPDATE"
        " SET on_hand = EXCLUDED.on_hand, expiry_date = EXCLUDED.expiry_date,"
        " movements = stock_balances.movements + EXCLUDED.movements, updated_at = now()",
        (
            [p[0] for p, _, _ in rows],
            [p[1] for p, _, _ in rows],
            [lot for _, lot, _ in rows],
            [base_uoms[p[1]] for p, _, _ in rows],
            [lot.on_hand for _, _, lot in rows],
            [lot.expiry for _, _, lot in rows],
            [counts.get((p, name), 0) for p, name, _ in rows],
        ),
    )
    pairs = list(positions)
    conn.execute(
        "UPDATE stock_positions s SET breached = v.b, breach_seq = v.q, risk_level = v.r,"
        " updated_at = now() FROM unnest(%b::text[], %b::text[], %b::boolean[], %b::int[],"
        " %b::text[]) AS v(l, i, b, q, r) WHERE s.location_id = v.l AND s.item_id = v.i",
        (
            [p[0] for p in pairs],
            [p[1] for p in pairs],
            [positions[p].breach.breached for p in pairs],
            [positions[p].breach.seq for p in pairs],
            [positions[p].risk for p in pairs],
        ),
    )
    days = sorted(set(usage_days))
    if days:
        conn.execute(
            "INSERT INTO stock_usage (location_id, item_id, day, issued)"
            " SELECT * FROM unnest(%b::text[], %b::text[], %b::date[], %b::numeric[])"
            " ON CONFLICT (location_id, item_id, day) DO UPDATE SET issued = EXCLUDED.issued",
            (
                [p[0] for p, _ in days],
                [p[1] for p, _ in days],
                [d for _, d in days],
                [positions[p].usage[d] for p, d in days],
            ),
        )
    got = sorted(set(receipts))
    if got:
        conn.execute(
            "INSERT INTO stock_po_receipts (location_id, item_id, po_id, received)"
            " SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::numeric[])"
            " ON CONFLICT (location_id, item_id, po_id) DO UPDATE SET received = EXCLUDED.received",
            (
                [p[0] for p, _ in got],
                [p[1] for p, _ in got],
                [po for _, po in got],
                [positions[p].received[po] for p, po in got],
            ),
        )


@dataclass(frozen=True)
class BreachRow:
    breach_id: str
    pair: Pair
    seq: int
    on_hand: Decimal
    on_order: Decimal
    reorder_point: Decimal
    requisition_id: str | None
    event_id: str
    at: dt.datetime


def record_breaches(
    conn: psycopg.Connection, opened: list[BreachRow], rearmed: list[tuple[Pair, int, dt.datetime]]
) -> None:
    if opened:
        conn.cursor().executemany(
            "INSERT INTO replenishment_breaches (breach_id, location_id, item_id, seq, on_hand,"
            " on_order, reorder_point, requisition_id, event_id, opened_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (b.breach_id, b.pair[0], b.pair[1], b.seq, b.on_hand, b.on_order,
                 b.reorder_point, b.requisition_id, b.event_id, b.at)
                for b in opened
            ],
        )  # fmt: skip
    if rearmed:
        conn.cursor().executemany(
            "UPDATE replenishment_breaches SET rearmed_at = %s"
            " WHERE location_id = %s AND item_id = %s AND seq = %s",
            [(at, p[0], p[1], seq) for p, seq, at in rearmed],
        )
