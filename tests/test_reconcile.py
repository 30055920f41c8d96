"""`supplybus reconcile` end to end on the real broker and database (issue 18, acceptance 5).

A period is seeded through the real processors (requisitions approved into four POs, budget
committed, goods received by `receiving`, stock moved by `stock-balances`, an invoice matched
and another waiting by `invoice-match`), then differences are PLANTED on top:

- PO 4's BudgetCommitted is lost: its `budget_entries` row is deleted and `budget_spend`
  reduced by the same amount, in SQL, as if budget-spend had never seen the event;
- a BudgetCommitted from another system for a PO supplybus never issued (published and
  applied by budget-spend: committed that no PO explains);
- PO 2 is received in full and never invoiced (an accrual);
- PO 3 is received half and invoiced in full (invoiced beyond receipts);
- the ERP on-hand export differs on two items (one count off, one missing).

`reconcile` reports exactly those and nothing else, the same way twice and after the
receipts and the invoice are delivered again; a bad export line is one error, exit 2.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.approvals.processor import approvals
from supplybus.consumers.finance.matching_processor import processor as invoice_match
from supplybus.consumers.finance.processor import processor as budget_spend
from supplybus.consumers.inventory.balances import processor as stock_balances
from supplybus.consumers.inventory.receiving import processor as receiving
from supplybus.consumers.masterdata.processor import processor as masterdata
from supplybus.consumers.procurement.orders import processor as purchase_orders
from supplybus.consumers.procurement.processor import requisitions
from supplybus.consumers.procurement.validation import budget_period
from supplybus.consumers.runtime.runner import Runner
from supplybus.events.envelope import deterministic_id, new_envelope
from supplybus.producers.publisher import Publisher
from tests.helpers import InProcessCli
from tests.invoice_data import Po, goods_received, invoice_received, pos_of
from tests.requisition_data import CENTER, SAMPLE, TODAY, VALID, line, submitted
from tests.workers import fresh_group

Record = dict[str, Any]
PERIOD = budget_period(TODAY)
#: four different cheap items (auto-approved, not lot controlled, stocked in EA)
ITEMS = list({v[0].item_id: v for v in VALID if v[0].category == "MED_SURG"
              and v[1].amount < 50 and v[1].uom == "EA"}.values())[:4]  # fmt: skip


def run(settings: Settings) -> None:
    procs = [masterdata, requisitions(), approvals(), purchase_orders(), budget_spend,
             receiving(), stock_balances, invoice_match()]  # fmt: skip
    assert Runner(settings, procs, relay=True, until_idle=1.5, signals=False).run() == 0


def publish(settings: Settings, records: list[Record]) -> None:
    with Publisher.from_settings(settings) as pub:
        pub.publish_all(records)


def received_at(po: Po, location: str, receipt_id: str, quantity: Decimal) -> Record:
    record = goods_received(po, receipt_id, {1: quantity})
    record["location_id"] = location
    return record


def ghost_commitment() -> Record:
    """A BudgetCommitted from the ERP for a PO supplybus never issued."""
    return {
        "envelope": new_envelope(
            "BudgetCommitted", source_system="erp-east", entity_id="ENT-EAST",
            facility_id="FAC-E1", actor="erp", correlation_id="ERP-PO-9",
            event_id=deterministic_id("test-reconcile", "ghost"),
        ),
        "cost_center_id": CENTER, "period": PERIOD,
        "amount": {"amount": Decimal("75.5000"), "currency": "USD"},
        "reference_id": "PO-ERP-9", "reference_type": "PURCHASE_ORDER",
    }  # fmt: skip


def kinds(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    found = [(s, d["kind"], d["subject"]) for s in ("budget", "accrual")
             for d in doc[s]["items"]]  # fmt: skip
    return found + [
        ("stock", d["kind"], d["subject"]) for d in (doc["stock"] or {}).get("items", [])
    ]


def test_reconcile_reports_exactly_the_planted_differences(
    isolated: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = fresh_group(isolated)
    cli = InProcessCli(settings, tmp_path / "home", monkeypatch, capsys)
    publish(settings, SAMPLE)
    run(settings)
    publish(settings, [submitted(f"REQ-REC-{n}", [line(1, item, price, "10")])
                       for n, (item, price) in enumerate(ITEMS, start=1)])  # fmt: skip
    run(settings)
    with connect(settings) as conn:
        po1, po2, po3, po4 = (pos_of(conn, f"REQ-REC-{n}")[0] for n in range(1, 5))
        (dock,) = conn.execute(
            "SELECT DISTINCT ship_to_location_id FROM purchase_orders"
        ).fetchone() or ("",)
    ten, five = Decimal(10), Decimal(5)
    receipts = [received_at(po1, dock, "GR-1", ten), received_at(po2, dock, "GR-2", ten),
                received_at(po3, dock, "GR-3", five)]  # fmt: skip
    invoices = [
        invoice_received(po1, "INV-1", "A-1", [(1, ten, po1.lines[0].unit_price)], minutes=1),
        invoice_received(po3, "INV-3", "C-1", [(1, ten, po3.lines[0].unit_price)], minutes=1),
    ]
    publish(settings, [*receipts, *invoices, ghost_commitment()])
    run(settings)

    # the planted loss of PO 4's commitment (in the read models, see the module docstring)
    with connect(settings) as conn:
        gone = conn.execute(
            "DELETE FROM budget_entries WHERE reference_id = %s AND kind = 'COMMITTED'"
            " RETURNING cost_center_id, amount, event_id::text",
            (po4.po_id,),
        ).fetchall()
        assert [(c, a) for c, a, _ in gone] == [(CENTER, po4.total)]
        conn.execute(
            "UPDATE budget_spend SET committed = committed - %s"
            " WHERE cost_center_id = %s AND period = %s",
            (po4.total, CENTER, PERIOD),
        )
        stock = conn.execute(
            "SELECT location_id, item_id, on_hand, uom FROM stock_balances ORDER BY item_id"
        ).fetchall()
        moves = dict(
            conn.execute(
                "SELECT convert_from(key, 'UTF8'), event_id::text FROM processed_events"
                " WHERE processor = 'stock-balances'"
            ).fetchall()
        )
    item1, item2, item3 = (po.lines[0].item_id for po in (po1, po2, po3))
    assert {(r[1], r[2]) for r in stock} == {(item1, ten), (item2, ten), (item3, five)}

    # the ERP export: item 1 counted 2 more, item 2 missing, item 3 agrees (written in EA)
    export = tmp_path / "erp-onhand.csv"
    export.write_text(
        f"location_id,item_id,quantity,uom\n{dock},{item1},12,EA\n{dock},{item3},5.000,EA\n",
        encoding="utf-8",
    )
    args = ("reconcile", "--period", PERIOD, "--erp-export", str(export), "--json")
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    planted_budget = sorted(
        [
            ("budget", "COMMITMENT_MISSING", f"{po4.po_number} {CENTER}"),
            ("budget", "COMMITMENT_UNEXPLAINED", f"PURCHASE_ORDER PO-ERP-9 {CENTER}"),
        ],
        key=lambda k: k[2],
    )
    planted_accrual = sorted(  # PO numbers follow the order the POs were issued in
        [
            ("accrual", "RECEIVED_NOT_INVOICED", f"{po2.po_number} line 1"),
            ("accrual", "INVOICED_NOT_RECEIVED", f"{po3.po_number} line 1"),
        ],
        key=lambda k: k[2],
    )
    assert kinds(doc) == [
        *planted_budget,
        *planted_accrual,
        ("stock", "ON_HAND_DIFFERS", f"{item1}@{dock}"),
        ("stock", "NOT_IN_ERP", f"{item2}@{dock}"),
    ]
    assert doc["differences"] == 6
    budget = {d["kind"]: d for d in doc["budget"]["items"]}
    missing, ghost = budget["COMMITMENT_MISSING"], budget["COMMITMENT_UNEXPLAINED"]
    assert (missing["correlation_ids"], missing["po_id"]) == (["REQ-REC-4"], [po4.po_id])
    assert Decimal(missing["difference"]) == -po4.total and missing["event_ids"] == []
    assert ghost["correlation_ids"] == ["ERP-PO-9"]
    assert ghost["event_ids"] == [ghost_commitment()["envelope"]["event_id"]]
    assert Decimal(ghost["difference"]) == Decimal("75.5")
    (center,) = [c for c in doc["budget"]["cost_centers"] if c["cost_center_id"] == CENTER]
    assert Decimal(center["committed_unexplained"]) == Decimal("75.5") - po4.total

    accrual = {d["kind"]: d for d in doc["accrual"]["items"]}
    rni, inr = accrual["RECEIVED_NOT_INVOICED"], accrual["INVOICED_NOT_RECEIVED"]
    price2, price3 = po2.lines[0].unit_price, po3.lines[0].unit_price
    assert (rni["receipt_ids"], rni["invoice_ids"], rni["correlation_ids"]) == (
        ["GR-2"], [], ["REQ-REC-2"],
    )  # fmt: skip
    assert Decimal(rni["amount"]) == (ten * price2).quantize(Decimal("0.0001"))
    assert rni["event_ids"] == [receipts[1]["envelope"]["event_id"]]
    assert (inr["receipt_ids"], inr["invoice_ids"], Decimal(inr["quantity"])) == (
        ["GR-3"], ["INV-3"], five,
    )  # fmt: skip
    assert Decimal(inr["amount"]) == (five * price3).quantize(Decimal("0.0001"))
    assert set(inr["event_ids"]) == {
        receipts[2]["envelope"]["event_id"], invoices[1]["envelope"]["event_id"],
    }  # fmt: skip

    off, absent = doc["stock"]["items"]
    assert (Decimal(off["supplybus"]), Decimal(off["erp"]), Decimal(off["difference"])) == (
        ten, Decimal(12), Decimal(-2),
    )  # fmt: skip
    assert off["event_ids"] == [moves[f"{item1}@{dock}"]] and off["unit"] == "EA"
    assert absent["event_ids"] == [moves[f"{item2}@{dock}"]] and Decimal(absent["erp"]) == 0
    assert doc["stock"]["compared"] == 3

    # deterministic; the receipts and the invoice delivered again (and the invoice re-sent
    # under another event id) change nothing
    resent = invoice_received(po3, "INV-3", "C-1", [(1, ten, price3)], minutes=1)
    resent["envelope"]["event_id"] = deterministic_id("test-reconcile", "resent")
    publish(settings, [*receipts, *invoices, resent])
    run(settings)
    again = cli(*args)
    assert again.returncode == 0 and again.stdout == result.stdout

    # the table: a summary line per section; --check exits 1 on differences
    table = cli("reconcile", "--period", PERIOD, "--erp-export", str(export), "--check")
    assert table.returncode == 1, table.stderr
    for expected in ("budget: 2 difference(s)", "accrual: 2 difference(s)",
                     "stock: 2 difference(s)", "3 compared with"):  # fmt: skip
        assert expected in table.stdout
    quiet = cli("reconcile", "--period", "2001-01", "--json")
    assert quiet.returncode == 0 and json.loads(quiet.stdout)["differences"] == 0

    # a bad export line: one line naming file, line and field; exit 2, nothing printed
    export.write_text(f"location_id,item_id,quantity,uom\n{dock},{item1},12,EA\n"
                      f"{dock},{item1},3,PALLET\n", encoding="utf-8")  # fmt: skip
    bad = cli(*args)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith(f"error: {export}: line 3: uom: item {item1} has no unit")
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    wrong = cli("reconcile", "--period", "2026-13")
    assert wrong.returncode == 2 and "--period: expected YYYY-MM" in wrong.stderr
