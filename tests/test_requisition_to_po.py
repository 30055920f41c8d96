"""Requisition to purchase order end to end, on the real broker and database (issue acceptance 1):
a requisition validated and routed, two approval levels decided with the CLI (one by a
delegate), POs issued per supplier and delivered to the outbound folder, the budget committed;
`show` and `spend` agree with the events; `audit verify` passes, and fails after a hand edit."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from supplybus.adapters.outbound import FolderTarget
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.approvals.processor import approvals
from supplybus.consumers.finance.matching_processor import processor as invoice_match
from supplybus.consumers.finance.processor import processor as budget_spend
from supplybus.consumers.inventory.receiving import processor as receiving
from supplybus.consumers.masterdata.processor import processor as masterdata
from supplybus.consumers.procurement.dispatch import PoDispatcher
from supplybus.consumers.procurement.orders import processor as purchase_orders
from supplybus.consumers.procurement.processor import requisitions
from supplybus.consumers.runtime.runner import Runner
from supplybus.events.catalog import EventCatalog
from supplybus.events.envelope import deterministic_id
from supplybus.producers.publisher import Publisher
from tests.helpers import InProcessCli
from tests.requisition_data import SAMPLE, TODAY, VALID, line, requisition
from tests.workers import fresh_group

Record = dict[str, Any]
RID = "REQ-E2E-1"


def run_pipeline(settings: Settings, outbound: Path) -> None:
    """Every processor a PO passes through, the relay and the PO dispatcher, until all is
    quiet (receiving and invoice-match consume PurchaseOrderIssued too)."""
    dispatcher = PoDispatcher(settings, FolderTarget(outbound), alert_after_s=60)
    procs = [masterdata, requisitions(), approvals(), purchase_orders(), budget_spend,
             receiving(), invoice_match()]  # fmt: skip
    runner = Runner(
        settings, procs, relay=True, background=[dispatcher], until_idle=1.5, signals=False
    )
    assert runner.run() == 0


def two_supplier_requisition(rid: str, amount_each: Decimal) -> Record:
    """A requisition of two lines from two suppliers, about ``amount_each`` per line."""
    first = VALID[0]
    second = next(v for v in VALID if v[1].supplier_id != first[1].supplier_id)
    lines = [
        line(n, item, price, str(math.ceil(amount_each / price.amount)))
        for n, (item, price) in enumerate((first, second), start=1)
    ]
    record = requisition(lines)
    record["requisition_id"] = rid
    env = record["envelope"]
    env["event_id"] = deterministic_id("test-e2e", rid)
    env["correlation_id"] = rid
    env["occurred_at"] = dt.datetime.combine(TODAY, dt.time(8), tzinfo=dt.UTC)
    return record


def _json(result: Any) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_requisition_to_po_through_two_approval_levels(
    isolated: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = fresh_group(isolated)
    cli = InProcessCli(settings, tmp_path / "home", monkeypatch, capsys)
    outbound = tmp_path / "outbound"
    outbound.mkdir()
    submitted = two_supplier_requisition(RID, Decimal(6000))
    with Publisher.from_settings(settings) as pub:
        pub.publish_all(SAMPLE)
    run_pipeline(settings, outbound)  # the master data first (else: dead letter, key held)
    with Publisher.from_settings(settings) as pub:
        pub.publish_all([submitted])
    run_pipeline(settings, outbound)

    # ENT-EAST: MANAGER from 2,500, DIRECTOR from 10,000: two levels, the manager's first
    waiting = _json(cli("approvals", "list", "--json"))
    assert [(w["requisition_id"], w["step"], w["role"]) for w in waiting] == [(RID, 1, "MANAGER")]
    assert waiting[0]["deciders"] == ["APR-EAST-MGR"]
    refused = cli("approve", RID, "--as", "APR-EAST-DIR2")
    assert refused.returncode != 0 and "does not hold role MANAGER" in refused.stderr
    assert "Traceback" not in refused.stderr
    granted = cli("approve", RID, "--as", "APR-EAST-MGR", "--comment", "ok")
    assert granted.returncode == 0, granted.stderr
    run_pipeline(settings, outbound)

    # the director is away: their delegate decides on their behalf (or in their own right)
    waiting = _json(cli("approvals", "list", "--approver", "APR-EAST-DIR2", "--json"))
    assert [(w["step"], w["role"]) for w in waiting] == [(2, "DIRECTOR")]
    assert "APR-EAST-DIR2 for APR-EAST-DIR" in waiting[0]["deciders"]
    done = cli("approve", RID, "--as", "APR-EAST-DIR2", "--for", "APR-EAST-DIR")
    assert done.returncode == 0, done.stderr
    assert "granted by APR-EAST-DIR2 for APR-EAST-DIR" in done.stdout
    run_pipeline(settings, outbound)

    with connect(settings) as conn:
        status = conn.execute(
            "SELECT status FROM requisitions WHERE requisition_id = %s", (RID,)
        ).fetchone()
        pos = conn.execute(
            "SELECT po_id, po_number, supplier_id, total, cost_center_id, status"
            " FROM purchase_orders WHERE requisition_id = %s ORDER BY supplier_id",
            (RID,),
        ).fetchall()
        outbox_events = conn.execute(
            "SELECT event_type, count(*) FROM outbox WHERE correlation_id = %s"
            " GROUP BY event_type ORDER BY event_type",
            (RID,),
        ).fetchall()
        committed = conn.execute(
            "SELECT value FROM outbox WHERE event_type = 'BudgetCommitted' AND correlation_id = %s",
            (RID,),
        ).fetchall()
    assert status == ("ORDERED",)
    suppliers = sorted({ln["supplier_id"] for ln in submitted["lines"]})
    assert [p[2] for p in pos] == suppliers and {p[5] for p in pos} == {"ISSUED"}
    assert sorted(p[1] for p in pos) == ["PO-EAST-000001", "PO-EAST-000002"]
    assert dict(outbox_events) == {
        "ApprovalGranted": 2,
        "ApprovalRequested": 2,
        "BudgetCommitted": 2,
        "PurchaseOrderIssued": 2,
        "RequisitionApproved": 1,
        "RequisitionValidated": 1,
    }

    # the PO files: one per PO, in the documented layout, with the contract prices
    files = sorted(outbound.glob("*.json"))
    assert [f.name for f in files] == ["PO-EAST-000001.json", "PO-EAST-000002.json"]
    for path, (po_id, number, supplier, total, _center, _status) in zip(
        sorted(files), sorted(pos, key=lambda p: p[1]), strict=True
    ):
        doc = json.loads(path.read_text())
        assert (doc["layout"], doc["po_id"], doc["po_number"]) == ("supplybus.po.v1", po_id, number)
        assert doc["supplier_id"] == supplier and Decimal(doc["total"]) == total
        assert sum(Decimal(ln["amount"]) for ln in doc["lines"]) == total
    assert not list(outbound.glob(".*")), "no temporary file left behind"

    # the budget: committed = the POs' totals, in `spend` and in the events
    codec = EventCatalog.from_settings(settings).codec
    amounts = [codec.decode(bytes(v)).record["amount"]["amount"] for (v,) in committed]
    total_ordered = sum((p[3] for p in pos), Decimal(0))
    assert sum(amounts, Decimal(0)) == total_ordered
    spend = _json(cli("spend", "--cost-center", "CC-E1-SURG", "--json"))
    (row,) = [r for r in spend if r["period"] == f"{TODAY.year:04d}-{TODAY.month:02d}"]
    assert Decimal(row["committed"]) == total_ordered
    assert Decimal(row["available"]) == Decimal(row["budget"]) - total_ordered

    # `show` agrees with the events
    shown = _json(cli("show", "requisition", RID, "--json"))
    assert shown["status"] == "ORDERED"
    assert [(a["step"], a["role"], a["decided_by"], a["on_behalf_of"]) for a in shown["steps"]] == [
        (1, "MANAGER", "APR-EAST-MGR", None),
        (2, "DIRECTOR", "APR-EAST-DIR2", "APR-EAST-DIR"),
    ]
    assert sorted(p["po_number"] for p in shown["purchase_orders"]) == [p[1] for p in sorted(
        pos, key=lambda p: p[1])]  # fmt: skip
    po = _json(cli("show", "po", "PO-EAST-000001", "--json"))
    assert po["status"] == "ISSUED" and po["delivery"]["status"] == "DELIVERED"
    assert Decimal(po["total"]) == next(p[3] for p in pos if p[1] == "PO-EAST-000001")

    # the audit trail: every step on record, intact, and an edit by hand is found
    trail = _json(cli("audit", RID, "--type", "requisition", "--json"))
    assert [t["action"] for t in trail] == [
        "validated", "requested", "granted", "requested", "granted", "approved", "ordered",
    ]  # fmt: skip
    assert cli("audit", "verify").returncode == 0
    with connect(settings) as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        conn.execute(
            "UPDATE audit_log SET actor = 'APR-EAST-VP' WHERE entity_id = %s AND action = 'granted'"
            " AND actor = 'APR-EAST-MGR'",
            (RID,),
        )
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
        conn.commit()
    broken = cli("audit", "verify")
    assert broken.returncode == 1 and RID in broken.stdout + broken.stderr
