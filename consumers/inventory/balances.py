"""stock-balances: on-hand stock per location, item and lot, and replenishment, from
StockMovement events.

Every movement is converted to the item's stocking (base) unit through the item master
(``masterdata.units``): an item the master does not know, or a unit it has no conversion for,
is refused with the reason (dead-lettered), never added as if it were the stocking unit.
Balances are kept per (location, item, lot) with the lot's expiry; an outgoing movement that
names no lot is allocated FEFO (``stock_rules``). In the same transaction, per (location,
item): the replenishment breach (``replenishment``: ReorderTriggered and a replenishment
RequisitionSubmitted, once per breach) and the stockout risk level (StockoutRisk when it
changes). The batch locks its (location, item) position rows first, in key order, so
movements applied concurrently (two lanes, two runners) serialize per position and a breach
fires once. Order matters now (FEFO, breaches): ``on_dead_letter`` is ``hold_key``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg

from supplybus.consumers import audit
from supplybus.consumers.inventory import replenishment as rp
from supplybus.consumers.inventory import stock_store as store
from supplybus.consumers.inventory.stock_rules import (
    DIRECTION,
    NO_LOT,
    SKIPS_EXPIRED,
    Lot,
    allocate,
)
from supplybus.consumers.inventory.stock_store import Pair
from supplybus.consumers.masterdata.units import QUANTUM
from supplybus.consumers.runtime.processor import Event, Processor, Record
from supplybus.errors import BusinessRuleError
from supplybus.events.envelope import caused_by, deterministic_id

__all__ = ["DIRECTION", "apply_movements", "processor", "signed_quantity"]

NAME = "stock-balances"
REQUESTER = "supplybus.replenishment"


def signed_quantity(record: Record) -> Decimal:
    """The movement's quantity with the sign of its kind, in the movement's own unit."""
    signed: Decimal = Decimal(record["quantity"]["value"]) * DIRECTION[record["kind"]]
    return signed


def day_of(record: Record) -> dt.date:
    at: dt.datetime = record["envelope"]["occurred_at"]
    return at.astimezone(dt.UTC).date()


def apply_movements(events: Sequence[Event], conn: psycopg.Connection) -> list[Record]:
    if not events:
        return []
    pairs = sorted({(e.record["location_id"], e.record["item_id"]) for e in events})
    batch = _Batch(
        conn, store.items(conn, {p[1] for p in pairs}), store.lock_positions(conn, pairs)
    )
    batch.load(min(day_of(e.record) for e in events), events)
    for event in events:
        batch.apply(event)
    return batch.save()


@dataclass
class _Batch:
    conn: psycopg.Connection
    items: dict[str, store.ItemInfo]
    positions: dict[Pair, store.Position]
    levels: dict[Pair, store.ParLevel] = field(default_factory=dict)
    po_of: dict[str, str] = field(default_factory=dict)
    touched: set[tuple[Pair, str]] = field(default_factory=set)
    counts: Counter[tuple[Pair, str]] = field(default_factory=Counter)
    usage_days: set[tuple[Pair, dt.date]] = field(default_factory=set)
    receipts: set[tuple[Pair, str]] = field(default_factory=set)
    opened: list[store.BreachRow] = field(default_factory=list)
    rearmed: list[tuple[Pair, int, dt.datetime]] = field(default_factory=list)
    emitted: list[Record] = field(default_factory=list)
    entries: list[audit.AuditEntry] = field(default_factory=list)

    def load(self, first_day: dt.date, events: Sequence[Event]) -> None:
        pairs = list(self.positions)
        store.load_usage(self.conn, self.positions, first_day - dt.timedelta(rp.USAGE_DAYS))
        store.load_receipts(self.conn, self.positions)
        self.levels = store.par_levels(self.conn, pairs)
        for pair, lines in store.open_po_lines(self.conn, pairs).items():
            info = self.items.get(pair[1])
            if info is None:
                continue  # the movement is refused in apply
            for po, qty, uom in lines:
                ordered = self.positions[pair].ordered
                ordered[po] = ordered.get(po, Decimal(0)) + info.units.to_base(qty, uom)
        refs = {
            e.record["reference_id"]
            for e in events
            if e.record["kind"] == "RECEIPT" and e.record["reference_id"]
        }
        self.po_of = store.po_ids(self.conn, refs) if refs else {}

    def apply(self, event: Event) -> None:
        r = event.record
        pair: Pair = (r["location_id"], r["item_id"])
        info, quantity = self._convert(r)
        pos = self.positions[pair]
        for lot, uom in pos.uoms.items():
            if uom != info.units.base_uom:
                raise BusinessRuleError(
                    f"stock of item {pair[1]} at {pair[0]}{f' lot {lot}' if lot else ''} is kept "
                    f"in {uom}, not the item master's stocking unit {info.units.base_uom}: "
                    "convert that balance first"
                )
        kind, day = r["kind"], day_of(r)
        signed = quantity * DIRECTION[kind]
        lot = r["lot_number"] or NO_LOT
        was_short = pos.lots.get(NO_LOT, Lot(NO_LOT, None, Decimal(0))).on_hand < 0
        if signed > 0 or lot != NO_LOT:
            self._add(pair, lot, signed, r["expiry_date"] if signed > 0 else None)
        else:
            skip = kind in SKIPS_EXPIRED
            for taken_lot, taken in allocate(
                pos.lots.values(), -signed, day=day, skip_expired=skip
            ):
                self._add(pair, taken_lot, -taken, None)
        if not was_short and pos.lots.get(NO_LOT, Lot(NO_LOT, None, Decimal(0))).on_hand < 0:
            self._audit(event, pair, "shortfall", f"{kind} of {quantity} {info.units.base_uom} "
                        f"exceeds the stock on hand: the no-lot balance is negative")  # fmt: skip
        if kind == "ISSUE":
            pos.usage[day] = pos.usage.get(day, Decimal(0)) + quantity
            self.usage_days.add((pair, day))
        po = self.po_of.get(r["reference_id"] or "")
        if kind == "RECEIPT" and po is not None and po in pos.ordered:
            pos.received[po] = pos.received.get(po, Decimal(0)) + quantity
            self.receipts.add((pair, po))
        self._replenish(event, pair, info, day)
        self._risk(event, pair, info, day)

    def _convert(self, r: Record) -> tuple[store.ItemInfo, Decimal]:
        value, uom = r["quantity"]["value"], r["quantity"]["uom"]
        where = f"{r['kind']} of {value} {uom} of item {r['item_id']} at {r['location_id']}"
        info = self.items.get(r["item_id"])
        if info is None:
            raise BusinessRuleError(
                f"{where}: item {r['item_id']} is not in the item master, so {uom} cannot be "
                "converted to its stocking unit (load the master data, then replay)"
            )
        try:
            return info, info.units.to_base(value, uom)
        except BusinessRuleError as exc:
            raise BusinessRuleError(f"{where}: {exc.reason}") from None

    def _add(self, pair: Pair, lot: str, delta: Decimal, expiry: dt.date | None) -> None:
        pos = self.positions[pair]
        old = pos.lots.get(lot) or Lot(lot, None, Decimal(0))
        pos.lots[lot] = Lot(lot, old.expiry or (expiry if lot else None), old.on_hand + delta)
        pos.uoms[lot] = self.items[pair[1]].units.base_uom
        self.touched.add((pair, lot))
        self.counts[(pair, lot)] += 1

    def _replenish(self, event: Event, pair: Pair, info: store.ItemInfo, day: dt.date) -> None:
        level = self.levels.get(pair)
        if level is None:
            return
        pos = self.positions[pair]
        point = info.units.to_base(level.reorder_point, level.reorder_point_uom)
        on_hand, on_order = pos.on_hand, pos.on_order
        state, fired = rp.next_breach(pos.breach, on_hand + on_order, point)
        at: dt.datetime = event.envelope["occurred_at"]
        if pos.breach.breached and not state.breached:
            self.rearmed.append((pair, state.seq, at))
            self._audit(event, pair, "rearmed", f"on hand + on order {on_hand + on_order} "
                        f"rose above the reorder point {point}")  # fmt: skip
        pos.breach = state
        if not fired:
            return
        breach_id = deterministic_id("breach", pair[0], pair[1], state.seq)
        requisition = self._requisition(event, pair, info, level, day, breach_id, state.seq)
        rid = requisition["requisition_id"] if requisition else None
        base = info.units.base_uom
        env = self._envelope(event, "ReorderTriggered", breach_id, info, rid)
        self.emitted.append({
            "envelope": env,
            "item_id": pair[1],
            "location_id": pair[0],
            "on_hand": _qty(max(on_hand, Decimal(0)), base),
            "on_order": _qty(on_order, base),
            "reorder_point": _qty(point, base),
            "reorder_quantity": _qty(info.units.to_base(level.reorder_quantity,
                                                        level.reorder_quantity_uom), base),
            "breach_id": breach_id,
        })  # fmt: skip
        if requisition is not None:
            self.emitted.append(requisition)
        self.opened.append(store.BreachRow(breach_id, pair, state.seq, on_hand, on_order, point,
                                           rid, event.event_id, at))  # fmt: skip
        self._audit(event, pair, "reorder-triggered",
                    f"on hand {on_hand} + on order {on_order} <= reorder point {point} {base}; "
                    + (f"requisition {rid}" if rid else "no requisition: no contract or cost "
                       "center to order from"), breach_id=breach_id)  # fmt: skip

    def _requisition(
        self,
        event: Event,
        pair: Pair,
        info: store.ItemInfo,
        level: store.ParLevel,
        day: dt.date,
        breach_id: str,
        seq: int,
    ) -> Record | None:
        place = store.places(self.conn, [pair[0]]).get(pair[0])
        if place is None:
            return None
        center = rp.replenishment_cost_center(
            place.kind, store.cost_centers(self.conn, place.facility_id)
        )
        factors = info.units.factors
        contract = rp.cheapest_contract(
            store.contracts(self.conn, pair[1], place.entity_id), factors, day
        )
        uom = level.reorder_quantity_uom
        if center is None or contract is None or uom not in factors:
            return None
        price = rp.price_per(contract, factors, uom)
        quantity = level.reorder_quantity
        rid = f"RPL-{pair[0]}-{pair[1]}-{seq}"
        critical = rp.key_priority(info.category) == "CRITICAL"
        env = caused_by(
            event.envelope, "RequisitionSubmitted", emitter=NAME, discriminator=breach_id
        )
        env.update(entity_id=place.entity_id, facility_id=place.facility_id, priority="ROUTINE",
                   correlation_id=rid, actor=REQUESTER)  # fmt: skip
        return {
            "envelope": env,
            "requisition_id": rid,
            "requester_id": REQUESTER,
            "cost_center_id": center,
            "urgency": "URGENT" if critical else "ROUTINE",
            "need_by": day + dt.timedelta(days=2 if critical else 7),
            "justification": f"replenishment of {pair[1]} at {pair[0]}: reorder point "
            f"{level.reorder_point} {level.reorder_point_uom} reached (breach {breach_id})",
            "grant_funded": False,
            "lines": [{
                "line_number": 1,
                "item_id": pair[1],
                "supplier_id": contract.supplier_id,
                "description": None,
                "quantity": {"value": quantity, "uom": uom},
                "unit_price": {"amount": price, "currency": contract.currency},
                "cost_center_id": None,
                "need_by": None,
            }],
            "total": {"amount": (quantity * price).quantize(Decimal("0.0001")),
                      "currency": contract.currency},
        }  # fmt: skip

    def _risk(self, event: Event, pair: Pair, info: store.ItemInfo, day: dt.date) -> None:
        pos = self.positions[pair]
        usage = rp.daily_usage(pos.usage, day)
        days = rp.days_of_supply(pos.on_hand, usage)
        level = rp.risk_level(days)
        if level == pos.risk:
            return
        pos.risk = level
        base = info.units.base_uom
        self.emitted.append({
            "envelope": self._envelope(event, "StockoutRisk", f"{pair[0]}|{pair[1]}", info, None),
            "item_id": pair[1],
            "location_id": pair[0],
            "on_hand": _qty(max(pos.on_hand, Decimal(0)), base),
            "days_of_supply": days,
            "daily_usage": _qty(usage, base),
            "level": level,
        })  # fmt: skip

    def _envelope(
        self, event: Event, event_type: str, disc: str, info: store.ItemInfo, rid: str | None
    ) -> dict[str, Any]:
        env: dict[str, Any] = caused_by(
            event.envelope, event_type, emitter=NAME, discriminator=disc
        )
        env["priority"] = rp.key_priority(info.category)  # a property of the item@location key
        if rid is not None:
            env["correlation_id"] = rid
        return env

    def _audit(
        self, event: Event, pair: Pair, action: str, reason: str, *, breach_id: str = ""
    ) -> None:
        self.entries.append(
            audit.from_envelope(event.envelope, entity_type="stock", action=action,
                                entity_id=f"{pair[1]}@{pair[0]}", reason=reason,
                                detail={"breach_id": breach_id} if breach_id else None)
        )  # fmt: skip

    def save(self) -> list[Record]:
        base_uoms = {item: info.units.base_uom for item, info in self.items.items()}
        store.save(self.conn, self.positions, sorted(self.touched), self.counts, base_uoms,
                   self.usage_days, self.receipts)  # fmt: skip
        store.record_breaches(self.conn, self.opened, self.rearmed)
        if self.entries:
            audit.append(self.conn, self.entries)
        return self.emitted


def _qty(value: Decimal, uom: str) -> dict[str, Any]:
    return {"value": value.quantize(QUANTUM), "uom": uom}


processor = Processor(
    name=NAME,
    consumes=("StockMovement",),
    handle=apply_movements,
    description="On-hand stock per location, item and lot (FEFO), reorder points, stockout risk.",
    on_dead_letter="hold_key",  # FEFO and breaches depend on each key's order
)
