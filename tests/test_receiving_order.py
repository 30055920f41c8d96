"""Receiving on the real database: receipts before their PO, redeliveries, resends and any
batching end in the state of in-order delivery (issue 18 acceptance 2, receiving's part).

The receiving processor's batches go through the runtime's decoder and BatchApplier (ledger,
handler, outbox, audit in one transaction) with Kafka messages holding the bytes a producer
writes. No broker: the schedule is the order. Per PO, receipts keep their order among
themselves (the over-receipt allowance is cumulative, so which receipt takes the excess
depends on it); the PurchaseOrderIssued comes anywhere, and any event may come again later.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from confluent_kafka import Message
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.inventory.receiving import processor as receiving
from supplybus.consumers.masterdata.processor import processor as masterdata
from supplybus.consumers.runtime.apply import BatchApplier
from supplybus.consumers.runtime.decode import BatchDecoder
from supplybus.consumers.runtime.processor import Processor
from supplybus.events.catalog import EventCatalog
from supplybus.events.envelope import deterministic_id, new_envelope
from supplybus.ops import migrate
from tests.requisition_data import MASTER, SAMPLE, TODAY
from tests.test_receiving import goods_received, rline

Record = dict[str, Any]
EXPIRY = TODAY + dt.timedelta(days=300)
GLOVES = next(i for i in MASTER.items.values() if i.category == "MED_SURG" and "BX" in i.units)
DRUG = next(i for i in MASTER.items.values() if i.category == "PHARMACY" and "BX" in i.units)


def issued(po_id: str, lines: Sequence[tuple[str, str]]) -> Record:
    """A PurchaseOrderIssued from the ERP: (item, quantity in BX) per line."""
    return {
        "envelope": new_envelope(
            "PurchaseOrderIssued", source_system="erp-east", entity_id="ENT-EAST",
            facility_id="FAC-E1", actor="erp", correlation_id=po_id,
            occurred_at=dt.datetime.combine(TODAY, dt.time(7), tzinfo=dt.UTC),
            event_id=deterministic_id("test-receiving-order", po_id),
        ),
        "po_id": po_id, "po_number": f"ERP-{po_id}", "requisition_id": f"REQ-{po_id}",
        "supplier_id": "SUP-001", "cost_center_id": "CC-E1-SURG",
        "lines": [
            {"line_number": n, "item_id": item,
             "quantity": {"value": Decimal(qty), "uom": "BX"},
             "unit_price": {"amount": Decimal("12.5000"), "currency": "USD"}, "need_by": None}
            for n, (item, qty) in enumerate(lines, start=1)
        ],
        "total": {"amount": Decimal(100), "currency": "USD"},
        "ship_to_location_id": "LOC-E1-1",
    }  # fmt: skip


def _receipt(rid: str, po: str, lines: list[Record], event: str = "") -> Record:
    return goods_received(rid, po, "LOC-E1-1", lines, event=event)


G, D = GLOVES.item_id, DRUG.item_id
#: Per PO: its issue, then its receipts in order (R-A1 sent again under a new event id).
INPUTS: dict[str, list[Record]] = {
    "PO-A": [
        issued("PO-A", [(G, "10"), (D, "4")]),
        _receipt(
            "R-A1",
            "PO-A",
            [rline(1, G, "6", "BX"), rline(2, D, "50", "EA", lot="LOT-1", expiry=EXPIRY)],
        ),
        _receipt("R-A2", "PO-A", [rline(1, G, "60", "EA"), rline(2, D, "2", "BX")]),
        _receipt(
            "R-A3",
            "PO-A",
            [
                rline(1, G, "2", "BX", rejected="1", reason="wet"),
                rline(2, D, "1", "PK", lot="LOT-1", expiry=EXPIRY),
                rline(2, D, "2", "BX", lot="LOT-1", expiry=EXPIRY),
            ],
        ),
        _receipt(
            "R-A1",
            "PO-A",
            [rline(1, G, "6", "BX"), rline(2, D, "50", "EA", lot="LOT-1", expiry=EXPIRY)],
            event="resent",
        ),
    ],
    "PO-B": [
        issued("PO-B", [(D, "1")]),
        _receipt("R-B1", "PO-B", [rline(1, D, "1", "BX", lot="LOT-1", expiry=EXPIRY)]),
        _receipt("R-B2", "PO-B", [rline(1, G, "1", "BX")]),
    ],
}
Slot = tuple[str, int]
IN_ORDER: list[Slot] = [(po, n) for po, events in INPUTS.items() for n in range(len(events))]


class Bus:
    """A schema of its own with the sample master data; receiving fed by the runtime's
    decoder and batch applier."""

    def __init__(self, base: Settings) -> None:
        self.settings = replace(base, db_schema=f"t_{uuid.uuid4().hex[:12]}")
        migrate.migrate(self.settings)
        self.catalog = EventCatalog.from_settings(self.settings)
        self.offset = itertools.count()
        self.appliers: dict[str, tuple[BatchApplier, BatchDecoder]] = {}

    def message(self, record: Record) -> Message:
        out = self.catalog.prepare(record, check="domain")
        n = next(self.offset)
        return Message(
            topic=out.topic, partition=0, offset=n, key=out.key, value=out.value,
            timestamp=(1, 1_700_000_000_000 + n),
        )  # fmt: skip

    def apply(
        self, conn: psycopg.Connection, proc: Processor, msgs: Sequence[Message], dead: int = 0
    ) -> None:
        """One batch, committed; ``dead`` events of it dead-lettered."""
        if proc.name not in self.appliers:
            self.appliers[proc.name] = (
                BatchApplier(proc, self.catalog, lambda t: f"{t}.dlq"),
                BatchDecoder(self.catalog, proc.consumes),
            )
        applier, decode = self.appliers[proc.name]
        batch = decode(msgs)
        assert not batch.failures, batch.failures
        outcome = applier.apply(conn, batch.events, [])
        conn.commit()
        assert len(outcome.dead) == dead, [(f.event_id, f.error) for f in outcome.dead]


def _state(conn: psycopg.Connection, catalog: EventCatalog) -> dict[str, Any]:
    """What delivery order must not change (not when a receipt was applied or whether it
    waited: the audit trail's "waiting" entries and ``receipts.waited`` say that)."""
    queries = {
        "orders": "SELECT po_id, po_number, status, issued_event_id FROM receiving_orders"
        " ORDER BY po_id",
        "lines": "SELECT * FROM receiving_po_lines ORDER BY po_id, line_number",
        "receipts": "SELECT receipt_id, po_id, location_id, received_at, event_id, digest,"
        " discrepancies FROM receipts ORDER BY receipt_id",
        "receipt_lines": "SELECT * FROM receipt_lines ORDER BY receipt_id, line_index",
        "waiting": "SELECT count(*) FROM receipts_waiting",
        "trail": "SELECT entity_id, event_id, reason, detail::text FROM audit_log"
        " WHERE entity_type = 'receipt' AND action = 'received' ORDER BY entity_id",
        "applied": "SELECT event_id::text FROM processed_events WHERE processor = 'receiving'"
        " ORDER BY 1",
    }
    state: dict[str, Any] = {k: conn.execute(q).fetchall() for k, q in queries.items()}
    emitted: Counter[str] = Counter()
    for event_type, event_id, value in conn.execute(
        "SELECT event_type, event_id::text, value FROM outbox WHERE source = 'receiving'"
    ):
        record = catalog.codec.decode(bytes(value)).record
        record["envelope"].pop("occurred_at")
        emitted[f"{event_type} {event_id} {sorted(record.items())}"] += 1
    state["emitted"] = emitted
    return state


@pytest.fixture(scope="module")
def base(
    kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return Settings(
        home=tmp_path_factory.mktemp("receiving-order"),
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=database_url,
        connect_timeout_s=10.0,
    )


def _deliver(base: Settings, schedule: list[list[Slot]]) -> dict[str, Any]:
    bus = Bus(base)
    with connect(bus.settings) as conn:
        bus.apply(conn, masterdata, [bus.message(r) for r in SAMPLE])
        proc = receiving()
        for batch in schedule:
            bus.apply(conn, proc, [bus.message(INPUTS[po][n]) for po, n in batch])
        return _state(conn, bus.catalog)


@pytest.fixture(scope="module")
def reference(base: Settings) -> dict[str, Any]:
    return _deliver(base, [[slot] for slot in IN_ORDER])


def test_in_order_delivery(reference: dict[str, Any]) -> None:
    """The reference: the allowance shared over PO-A's receipts, lots, damage, the PK line
    and the wrong item; the resend changes nothing; nothing waits."""
    lines = {(r[0], r[1]): r[7:10] for r in reference["lines"]}  # received, rejected, accepted
    assert lines[("PO-A", 1)] == (Decimal(14), Decimal(1), Decimal(11))  # 10 BX + 10 %
    assert lines[("PO-A", 2)] == (Decimal(6), Decimal(0), Decimal(4))  # no lot; allowance 0
    assert lines[("PO-B", 1)] == (Decimal(1), Decimal(0), Decimal(1))
    kinds = Counter(e.split(" ", 1)[0] for e in reference["emitted"].elements())
    assert kinds == {"StockMovement": 5, "ReceivingDiscrepancy": 6}
    assert max(reference["emitted"].values()) == 1 and reference["waiting"] == [(0,)]
    assert [r[0] for r in reference["receipts"]] == ["R-A1", "R-A2", "R-A3", "R-B1", "R-B2"]


def _with_duplicates(draw: st.DrawFn, slots: list[Slot]) -> list[Slot]:
    """Up to four events delivered again, after their first delivery."""
    out = list(slots)
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(out) - 1))
        out.insert(draw(st.integers(i + 1, len(out))), out[i])
    return out


@st.composite
def schedules(draw: st.DrawFn) -> list[list[Slot]]:
    """POs interleaved, each PO's receipts in order, its issue anywhere among them, some
    events again, in batches."""
    per_po: dict[str, list[Slot]] = {}
    for po, events in INPUTS.items():
        receipts = [(po, n) for n in range(1, len(events))]
        receipts.insert(draw(st.integers(0, len(receipts))), (po, 0))
        per_po[po] = receipts
    tokens = draw(st.permutations([po for po, slots in per_po.items() for _ in slots]))
    slots = [per_po[po].pop(0) for po in tokens]
    slots = _with_duplicates(draw, slots)
    cuts = sorted(draw(st.sets(st.integers(1, len(slots) - 1), max_size=len(slots))))
    return [slots[a:b] for a, b in itertools.pairwise([0, *cuts, len(slots)])]


#: Every PO's receipts before its issue.
LATE_PO = [[(po, n) for n in range(1, len(ev))] + [(po, 0)] for po, ev in INPUTS.items()]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules())
@example([[s] for batch in LATE_PO for s in batch])  # one by one, the POs last
@example([[s for batch in LATE_PO for s in batch]])  # the same in one batch
@example([IN_ORDER + IN_ORDER])  # everything twice in one batch
def test_any_schedule_ends_in_the_in_order_state(
    base: Settings, reference: dict[str, Any], schedule: list[list[Slot]]
) -> None:
    got = _deliver(base, schedule)
    for part in reference:
        assert got[part] == reference[part], f"{part} differs from in-order delivery"


def _cancelled(po_id: str) -> Record:
    return {
        "envelope": new_envelope(
            "PurchaseOrderCancelled", source_system="erp-east", entity_id="ENT-EAST",
            actor="erp", correlation_id=po_id,
            event_id=deterministic_id("test-receiving-order", po_id, "cancel"),
        ),
        "po_id": po_id,
        "reason": "supplier discontinued",
    }  # fmt: skip


@pytest.mark.parametrize("order", ["issue-cancel-receipt", "receipt-cancel-issue"])
def test_a_cancelled_po_accepts_nothing(base: Settings, order: str) -> None:
    """Cancelled before the receipt (whether the issue came first or last): nothing goes
    into stock, one OVER discrepancy per line saying so; the receipt is on record."""
    events = {"issue": issued("PO-C", [(G, "5")]), "cancel": _cancelled("PO-C"),
              "receipt": _receipt("R-C1", "PO-C", [rline(1, G, "5", "BX")])}  # fmt: skip
    bus = Bus(base)
    with connect(bus.settings) as conn:
        bus.apply(conn, masterdata, [bus.message(r) for r in SAMPLE])
        for name in order.split("-"):
            bus.apply(conn, receiving(), [bus.message(events[name])])
        state = _state(conn, bus.catalog)
    (emitted,) = state["emitted"]
    assert emitted.startswith("ReceivingDiscrepancy") and "'OVER'" in emitted
    assert "cancelled (supplier discontinued)" in emitted
    assert [r[0] for r in state["receipts"]] == ["R-C1"] and state["waiting"] == [(0,)]
    assert state["orders"][0][2] == "CANCELLED"


def test_a_receipt_for_a_line_the_po_lacks_is_dead_lettered_and_holds_the_po(
    base: Settings,
) -> None:
    """Line 9 of a one-line PO: refused with the reason; the PO's next receipt waits behind
    it (hold_key), another PO's flows."""
    bus = Bus(base)
    with connect(bus.settings) as conn:
        bus.apply(conn, masterdata, [bus.message(r) for r in SAMPLE])
        proc = receiving()
        bus.apply(conn, proc, [bus.message(issued("PO-D", [(G, "5")]))])
        bad = _receipt("R-D1", "PO-D", [rline(9, G, "1", "BX")])
        bus.apply(conn, proc, [bus.message(bad)], dead=1)
        bus.apply(conn, proc, [bus.message(_receipt("R-D2", "PO-D", [rline(1, G, "1", "BX")]))])
        (reason,) = conn.execute("SELECT message FROM dead_letters").fetchone() or ("",)
        assert "names PO line 9, which the purchase order does not have" in reason
        assert conn.execute("SELECT count(*) FROM receipts").fetchone() == (0,)
