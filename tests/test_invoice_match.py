"""Three-way match and payment end to end on the real broker and database (issue 18,
acceptance 1): a PO, a partial receipt, the invoice held, the second receipt, the match,
BudgetActualized and PaymentAuthorized (and its payment-run file); a duplicate invoice
caught; a price variance above tolerance in the exception queue, accepted with the CLI and
authorized once; a supplier on hold released with the CLI."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from supplybus.adapters.outbound import FolderTarget
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.approvals.processor import approvals
from supplybus.consumers.finance.matching_processor import processor as invoice_match
from supplybus.consumers.finance.payment_dispatch import PaymentDispatcher
from supplybus.consumers.finance.processor import processor as budget_spend
from supplybus.consumers.masterdata.processor import processor as masterdata
from supplybus.consumers.procurement.dispatch import PoDispatcher
from supplybus.consumers.procurement.orders import processor as purchase_orders
from supplybus.consumers.procurement.processor import requisitions
from supplybus.consumers.runtime.runner import Runner
from supplybus.events.catalog import EventCatalog
from supplybus.producers.publisher import Publisher
from tests.helpers import InProcessCli
from tests.invoice_data import Po, goods_received, invoice_received, pos_of
from tests.requisition_data import SAMPLE, VALID, line, submitted
from tests.workers import fresh_group

Record = dict[str, Any]
#: cheap items of categories no approval rule routes: requisitions auto-approved (< 2,500)
CHEAP = [v for v in VALID if v[0].category in ("MED_SURG", "LAB") and v[1].amount < 50]


def run(settings: Settings, po_out: Path, pay_out: Path) -> None:
    """The procurement and finance processors, the relay and both dispatchers, until quiet."""
    procs = [masterdata, requisitions(), approvals(), purchase_orders(), budget_spend,
             invoice_match()]  # fmt: skip
    loops = [
        PoDispatcher(settings, FolderTarget(po_out), alert_after_s=60),
        PaymentDispatcher(settings, FolderTarget(pay_out)),
    ]
    runner = Runner(settings, procs, relay=True, background=loops, until_idle=1.5, signals=False)
    assert runner.run() == 0


def publish(settings: Settings, records: list[Record]) -> None:
    with Publisher.from_settings(settings) as pub:
        pub.publish_all(records)


def _json(result: Any) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _emitted(settings: Settings, correlation: str) -> list[Record]:
    codec = EventCatalog.from_settings(settings).codec
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT value FROM outbox WHERE correlation_id = %s AND source = 'invoice-match'"
            " ORDER BY id",
            (correlation,),
        ).fetchall()
    return [codec.decode(bytes(v)).record for (v,) in rows]


def _spend(settings: Settings, po: Po) -> dict[str, tuple[Decimal, Decimal]]:
    """Committed and actual per cost center for the PO's reference in budget_entries."""
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT cost_center_id, sum(CASE kind WHEN 'COMMITTED' THEN amount ELSE -amount END),"
            " sum(CASE kind WHEN 'ACTUALIZED' THEN amount ELSE 0 END) FROM budget_entries"
            " WHERE reference_id = %s GROUP BY 1",
            (po.po_id,),
        ).fetchall()
    return {c: (Decimal(a), Decimal(b)) for c, a, b in rows}


def test_receipt_to_payment(
    isolated: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = fresh_group(isolated)
    cli = InProcessCli(settings, tmp_path / "home", monkeypatch, capsys)
    po_out, pay_out = tmp_path / "po", tmp_path / "payments"
    po_out.mkdir()
    pay_out.mkdir()
    (item_a, price_a), (item_b, price_b) = (
        CHEAP[0],
        next(v for v in CHEAP if v[1].supplier_id != CHEAP[0][1].supplier_id),
    )
    publish(settings, SAMPLE)
    run(settings, po_out, pay_out)
    publish(settings, [
        submitted("REQ-PAY-1", [line(1, item_a, price_a, "10")]),
        submitted("REQ-PAY-2", [line(1, item_b, price_b, "4")]),
    ])  # fmt: skip
    run(settings, po_out, pay_out)
    with connect(settings) as conn:
        (po1,), (po2,) = pos_of(conn, "REQ-PAY-1"), pos_of(conn, "REQ-PAY-2")
    l1, l2 = po1.lines[0], po2.lines[0]

    # PO1: half received, the invoice for all of it waits; PO2: received in full, invoiced
    # 10 % above the PO price (ENT-EAST tolerates 2 % or 50.00, the tighter)
    high = (l2.unit_price * Decimal("1.10")).quantize(Decimal("0.0001"))
    publish(settings, [
        goods_received(po1, "GR-1", {1: Decimal(5)}),
        invoice_received(po1, "INV-1", "A-1001", [(1, Decimal(10), l1.unit_price)], minutes=1),
        goods_received(po2, "GR-3", {1: Decimal(4)}),
        invoice_received(po2, "INV-3", "B-77", [(1, Decimal(4), high)], minutes=1),
    ])  # fmt: skip
    run(settings, po_out, pay_out)
    queue = _json(cli("exceptions", "list", "--json"))
    assert [(q["invoice_id"], q["status"], [r["code"] for r in q["reasons"]]) for q in queue] == [
        ("INV-1", "WAITING", ["QTY_VARIANCE"]),
        ("INV-3", "EXCEPTION", ["PRICE_VARIANCE"]),
    ]
    prices = _json(cli("exceptions", "list", "--reason", "price_variance", "--json"))
    assert [q["invoice_id"] for q in prices] == ["INV-3"]
    refused = cli("exceptions", "resolve", "INV-1", "--as", "AP-1", "--action", "accept",
                  "--reason", "ok")  # fmt: skip
    assert refused.returncode == 2 and "waits for its PO or receipts" in refused.stderr
    assert "Traceback" not in refused.stderr

    # the second receipt: INV-1 matches; a duplicate of it (same number, other spelling) is
    # caught; INV-3 accepted by a person
    publish(settings, [
        goods_received(po1, "GR-2", {1: Decimal(5)}, minutes=2),
        invoice_received(po1, "INV-2", "a 1001", [(1, Decimal(10), l1.unit_price)], minutes=3),
    ])  # fmt: skip
    accepted = cli("exceptions", "resolve", "INV-3", "--as", "AP-1", "--action", "accept",
                   "--reason", "freight surcharge agreed")  # fmt: skip
    assert accepted.returncode == 0, accepted.stderr
    run(settings, po_out, pay_out)
    again = cli("exceptions", "resolve", "INV-3", "--as", "AP-1", "--action", "accept",
                "--reason", "twice")  # fmt: skip
    assert again.returncode == 2 and "not in the exception queue" in again.stderr

    shown = _json(cli("show", "invoice", "INV-1", "--json"))
    assert shown["status"] == "MATCHED" and not shown["tolerance_applied"]
    assert shown["payment"]["status"] == "AUTHORIZED"
    assert shown["payment"]["file"]["status"] == "DELIVERED"
    actions = [h["action"] for h in shown["history"]]  # each re-evaluation while short of the
    collapsed = [a for i, a in enumerate(actions) if i == 0 or a != actions[i - 1]]  # receipts
    assert collapsed == ["received", "waiting", "matched", "payment authorized"], actions
    dup = _json(cli("show", "invoice", "INV-2", "--json"))
    assert dup["status"] == "EXCEPTION" and dup["duplicate_of"] == "INV-1"
    assert [r["code"] for r in dup["reasons"]] == ["DUPLICATE_INVOICE"] and dup["payment"] is None
    inv3 = _json(cli("show", "invoice", "INV-3", "--json"))
    assert (inv3["status"], inv3["resolution"], inv3["tolerance_applied"]) == (
        "MATCHED", "ACCEPT", True,
    )  # fmt: skip
    assert inv3["payment"]["authorized_by"] == "AP-1"

    # the events: in order for PO1; PO2's overrun committed before it is actualized
    # (receipts and invoices are on two topics: no order between them is promised)
    kinds1 = [e["envelope"]["event_type"] for e in _emitted(settings, po1.correlation_id)]
    matched = [k for k in kinds1 if k != "InvoiceException"]
    assert matched == ["InvoiceMatched", "BudgetActualized", "PaymentAuthorized"]
    assert kinds1.count("InvoiceException") == 1
    events2 = _emitted(settings, po2.correlation_id)
    assert [e["envelope"]["event_type"] for e in events2] == [
        "InvoiceException", "InvoiceMatched", "BudgetCommitted", "BudgetActualized",
        "PaymentAuthorized",
    ]  # fmt: skip
    invoiced2 = (Decimal(4) * high).quantize(Decimal("0.0001"))
    assert events2[2]["amount"]["amount"] == invoiced2 - po2.total
    assert events2[3]["amount"]["amount"] == invoiced2

    # budget-spend: each PO's commitment became actual (nothing left committed)
    assert _spend(settings, po1) == {l1.cost_center_id: (Decimal(0), po1.total)}
    assert _spend(settings, po2) == {l2.cost_center_id: (Decimal(0), invoiced2)}

    # one payment-run file per authorized invoice, nothing else
    files = sorted(p.name for p in pay_out.iterdir())
    assert files == ["PAY-INV-1.json", "PAY-INV-3.json"]
    doc = json.loads((pay_out / "PAY-INV-1.json").read_text())
    assert (doc["layout"], doc["invoice_id"], doc["po_number"], Decimal(doc["amount"])) == (
        "supplybus.payment.v1", "INV-1", po1.po_number, po1.total,
    )  # fmt: skip


def test_supplier_on_hold_is_released_once(
    isolated: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The supplier is blocked after the PO: the matched invoice's payment is held until
    `payments release`; a second release is refused; the invoice is paid once."""
    settings = fresh_group(isolated)
    cli = InProcessCli(settings, tmp_path / "home", monkeypatch, capsys)
    po_out, pay_out = tmp_path / "po", tmp_path / "payments"
    po_out.mkdir()
    pay_out.mkdir()
    item, price = CHEAP[0]
    publish(settings, SAMPLE)
    run(settings, po_out, pay_out)
    publish(settings, [submitted("REQ-HOLD-1", [line(1, item, price, "3")])])
    run(settings, po_out, pay_out)
    with connect(settings) as conn:
        (po,) = pos_of(conn, "REQ-HOLD-1")
        conn.execute(
            "UPDATE suppliers SET status = 'BLOCKED' WHERE supplier_id = %s", (po.supplier_id,)
        )
        conn.commit()
    unit = po.lines[0].unit_price
    publish(settings, [
        invoice_received(po, "INV-H", "H-1", [(1, Decimal(3), unit)]),
        goods_received(po, "GR-H", {1: Decimal(3)}, minutes=1),
    ])  # fmt: skip
    run(settings, po_out, pay_out)
    held = _json(cli("show", "invoice", "INV-H", "--json"))
    assert held["status"] == "MATCHED"
    assert (held["payment"]["status"], held["payment"]["holds"]) == ("HELD", ["SUPPLIER_ON_HOLD"])
    assert list(pay_out.iterdir()) == []
    released = cli("payments", "release", "INV-H", "--as", "AP-LEAD", "--reason", "cleared")
    assert released.returncode == 0, released.stderr
    run(settings, po_out, pay_out)
    twice = cli("payments", "release", "INV-H", "--as", "AP-LEAD")
    assert twice.returncode == 2 and "authorized already" in twice.stderr
    paid = _json(cli("show", "invoice", "INV-H", "--json"))
    assert (paid["payment"]["status"], paid["payment"]["authorized_by"]) == (
        "AUTHORIZED", "AP-LEAD",
    )  # fmt: skip
    kinds = Counter(e["envelope"]["event_type"] for e in _emitted(settings, po.correlation_id))
    assert kinds["PaymentAuthorized"] == 1
    assert [p.name for p in pay_out.iterdir()] == ["PAY-INV-H.json"]
    unknown = cli("show", "invoice", "NOPE")
    assert unknown.returncode == 2 and "not known" in unknown.stderr
