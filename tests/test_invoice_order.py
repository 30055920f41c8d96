"""Issue 18, acceptance 2 for the three-way match, on the real database: reordered and
redelivered schedules (receipts before their PO, the invoice before its receipts or its PO,
redeliveries, the invoice re-sent under another event id) end in the state of in-order
delivery: invoice statuses and reasons, payments, payment-run files queued, actuals, the
events emitted (ids included) and the ledger.

The invoice-match processor's batches go through the runtime's BatchDecoder and BatchApplier
(ledger, handler, outbox, audit in one transaction) as in tests/test_approval_order.py; its
PurchaseOrderIssued is the one the purchase-orders processor wrote for an auto-approved
requisition in the same schema. What is compared leaves out the audit trail: it records
history (an invoice that waited says so), not the final state.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from confluent_kafka import Message
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.approvals.processor import approvals
from supplybus.consumers.finance.matching_processor import processor as invoice_match
from supplybus.consumers.masterdata.processor import processor as masterdata
from supplybus.consumers.procurement.orders import processor as purchase_orders
from supplybus.consumers.procurement.processor import requisitions
from supplybus.events.envelope import deterministic_id
from tests.invoice_data import goods_received, invoice_received, pos_of
from tests.requisition_data import SAMPLE, VALID, line, submitted
from tests.test_approval_order import Bus

RID = "REQ-MATCH-ORDER"
ITEM, PRICE = next(v for v in VALID if v[0].category in ("MED_SURG", "LAB") and v[1].amount < 50)
#: the input events, by name, in the order of in-order delivery
NAMES = ("po", "gr1", "inv1", "gr2", "inv1-resent", "inv2")


def _issue(bus: Bus, conn: psycopg.Connection) -> Message:
    """The requisition through requisitions, approvals (auto) and purchase-orders; returns
    the PurchaseOrderIssued as the relay would send it."""
    bus.apply(conn, masterdata, [bus.message(r) for r in SAMPLE])
    record = submitted(RID, [line(1, ITEM, PRICE, "10")])
    record["envelope"]["event_id"] = deterministic_id("test-invoice-order", RID)
    bus.apply(conn, requisitions(), [bus.message(record)])
    for kind, proc in (("RequisitionValidated", approvals()),
                       ("RequisitionApproved", purchase_orders())):  # fmt: skip
        bus.apply(conn, proc, _outbox(bus, conn, kind))
    (issued,) = _outbox(bus, conn, "PurchaseOrderIssued")
    return issued


def _outbox(bus: Bus, conn: psycopg.Connection, kind: str) -> list[Message]:
    rows = conn.execute(
        "SELECT topic, key, value FROM outbox WHERE event_type = %s ORDER BY id", (kind,)
    ).fetchall()
    return [bus._message(t, bytes(k), bytes(v)) for t, k, v in rows]


def _inputs(bus: Bus, conn: psycopg.Connection) -> dict[str, Message]:
    issued = _issue(bus, conn)
    (po,) = pos_of(conn, RID)
    price = po.lines[0].unit_price
    inv1 = invoice_received(po, "INV-O1", "O-1", [(1, Decimal(10), price)], minutes=1)
    resent = {**inv1, "envelope": {**inv1["envelope"],
                                   "event_id": deterministic_id("resent", "INV-O1")}}  # fmt: skip
    inv2 = invoice_received(po, "INV-O2", "O-2", [(1, Decimal(2), price * 2)], minutes=3)
    return {
        "po": issued,
        "gr1": bus.message(goods_received(po, "GR-O1", {1: Decimal(4)})),
        "inv1": bus.message(inv1),
        "gr2": bus.message(goods_received(po, "GR-O2", {1: Decimal(6)}, minutes=2)),
        "inv1-resent": bus.message(resent),
        "inv2": bus.message(inv2),
    }


def _state(conn: psycopg.Connection) -> dict[str, Any]:
    q = conn.execute
    return {
        "invoices": q(
            "SELECT invoice_id, status, reasons::text, duplicate_of, tolerance_applied,"
            " matched_total FROM invoices ORDER BY invoice_id"
        ).fetchall(),
        "payments": q(
            "SELECT invoice_id, payment_id, status, holds, amount, event_id::text"
            " FROM invoice_payments ORDER BY invoice_id"
        ).fetchall(),
        "files": q(
            "SELECT payment_id, file_name, status FROM payment_deliveries ORDER BY payment_id"
        ).fetchall(),
        "actuals": q("SELECT * FROM match_actuals ORDER BY 1, 2").fetchall(),
        # ids only: the causation names the copy of the invoice that was applied first
        "emitted": Counter(
            q("SELECT event_type, event_id::text FROM outbox WHERE source = 'invoice-match'")
        ),
        "applied": sorted(
            r[0]
            for r in q(
                "SELECT event_id::text FROM processed_events WHERE processor = 'invoice-match'"
            )
        ),
    }


@pytest.fixture(scope="module")
def base(
    kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """Settings on the session's database (no broker: the schedule is the order)."""
    return Settings(
        home=tmp_path_factory.mktemp("invoice-order"),
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=database_url,
        connect_timeout_s=10.0,
    )


def _deliver(base: Settings, schedule: list[list[str]]) -> dict[str, Any]:
    bus = Bus(base)
    with connect(bus.settings) as conn:
        inputs = _inputs(bus, conn)
        proc = invoice_match()
        for batch in schedule:
            bus.apply(conn, proc, [inputs[name] for name in batch])
        return _state(conn)


@dataclass(frozen=True)
class Reference:
    state: dict[str, Any]


@pytest.fixture(scope="module")
def reference(base: Settings) -> Reference:
    return Reference(_deliver(base, [[n] for n in NAMES]))


def test_in_order_delivery(reference: Reference) -> None:
    """INV-O1 matched and paid once (the re-send changes nothing), INV-O2 a price variance."""
    state = reference.state
    assert [(i[0], i[1]) for i in state["invoices"]] == [
        ("INV-O1", "MATCHED"), ("INV-O2", "EXCEPTION"),
    ]  # fmt: skip
    assert [(p[0], p[2]) for p in state["payments"]] == [("INV-O1", "AUTHORIZED")]
    assert len(state["files"]) == 1
    kinds = Counter(kind for kind, _ in state["emitted"].elements())
    assert kinds == {"InvoiceMatched": 1, "BudgetActualized": 1, "PaymentAuthorized": 1,
                     "InvoiceException": 1}  # fmt: skip
    assert max(state["emitted"].values()) == 1
    assert len(state["applied"]) == len(NAMES)


def _batches(draw: st.DrawFn, slots: list[str]) -> list[list[str]]:
    cuts = sorted(draw(st.sets(st.integers(1, len(slots) - 1), max_size=len(slots))))
    return [slots[a:b] for a, b in itertools.pairwise([0, *cuts, len(slots)])]


@st.composite
def schedules(draw: st.DrawFn) -> list[list[str]]:
    """Any order, up to three events delivered again anywhere, any batching."""
    slots = list(draw(st.permutations(NAMES)))
    for _ in range(draw(st.integers(0, 3))):
        slots.insert(draw(st.integers(0, len(slots))), draw(st.sampled_from(NAMES)))
    return _batches(draw, slots)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules())
@example([list(reversed(NAMES))])  # invoices first, the PO last, in one batch
@example([[n] for n in ("inv1", "inv2", "gr2", "inv1-resent", "gr1", "po", "inv1")])
@example([list(NAMES) + list(NAMES)])  # everything twice in one batch
def test_any_order_of_arrival_ends_in_the_in_order_state(
    base: Settings, reference: Reference, schedule: list[list[str]]
) -> None:
    got = _deliver(base, schedule)
    for part, expected in reference.state.items():
        assert got[part] == expected, f"{part} differs from in-order delivery"
