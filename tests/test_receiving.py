"""Receiving end to end on the real broker and database: a receipt that arrives before its PO
waits and is applied when the PO is issued; a partial receipt, a second one with an excess
beyond the allowance, damage, a missing lot and a unit without conversion; redelivery and a
resend under a new event id change nothing."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from supplybus.adapters.outbound import FolderTarget
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.approvals.processor import approvals
from supplybus.consumers.finance.processor import processor as budget_spend
from supplybus.consumers.inventory.receiving import processor as receiving
from supplybus.consumers.masterdata.processor import processor as masterdata
from supplybus.consumers.procurement.dispatch import PoDispatcher
from supplybus.consumers.procurement.orders import processor as purchase_orders
from supplybus.consumers.procurement.processor import requisitions
from supplybus.consumers.runtime.processor import Processor
from supplybus.consumers.runtime.runner import Runner
from supplybus.events.catalog import EventCatalog
from supplybus.events.envelope import deterministic_id, new_envelope
from supplybus.producers.publisher import Publisher
from tests.helpers import InProcessCli
from tests.requisition_data import MASTER, SAMPLE, TODAY, VALID, line, requisition
from tests.workers import fresh_group

Record = dict[str, Any]
RID = "REQ-RCV-1"
EXPIRY = TODAY + dt.timedelta(days=400)


def single_source(category: str) -> tuple[Any, Any]:
    """An item of ``category`` that one supplier only sells to ENT-EAST, and its EA price."""
    suppliers: dict[str, set[str]] = {}
    for item, price in VALID:
        suppliers.setdefault(item.item_id, set()).add(price.supplier_id)
    return next(
        (item, price)
        for item, price in VALID
        if item.category == category and len(suppliers[item.item_id]) == 1
        and price.uom == "EA" and price.amount < 10
    )  # fmt: skip


def goods_received(
    receipt_id: str, po_id: str, location: str, lines: list[Record], *, event: str = ""
) -> Record:
    return {
        "envelope": new_envelope(
            "GoodsReceived", source_system="mmis", entity_id="ENT-EAST", facility_id="FAC-E1",
            actor="dock-1", correlation_id=RID,
            occurred_at=dt.datetime.combine(TODAY, dt.time(9), tzinfo=dt.UTC),
            event_id=deterministic_id("test-receiving", receipt_id, event),
        ),
        "receipt_id": receipt_id,
        "po_id": po_id,
        "location_id": location,
        "received_at": dt.datetime.combine(TODAY, dt.time(9), tzinfo=dt.UTC),
        "lines": lines,
    }  # fmt: skip


def rline(
    n: int, item: str, qty: str, uom: str = "EA", *, rejected: str = "0",
    reason: str | None = None, lot: str | None = None, expiry: dt.date | None = None,
) -> Record:  # fmt: skip
    return {
        "po_line_number": n, "item_id": item,
        "quantity_received": {"value": Decimal(qty), "uom": uom},
        "quantity_rejected": {"value": Decimal(rejected), "uom": uom},
        "rejection_reason": reason, "lot_number": lot, "expiry_date": expiry,
    }  # fmt: skip


def run(settings: Settings, procs: list[Processor], outbound: Path) -> None:
    dispatcher = PoDispatcher(settings, FolderTarget(outbound), alert_after_s=60)
    runner = Runner(
        settings, procs, relay=True, background=[dispatcher], until_idle=1.5, signals=False
    )
    assert runner.run() == 0


def emitted(conn: psycopg.Connection, codec: Any) -> list[Record]:
    rows = conn.execute(
        "SELECT value FROM outbox WHERE source = 'receiving' ORDER BY id"
    ).fetchall()
    return [codec.decode(bytes(v)).record for (v,) in rows]


def test_receipts_against_issued_purchase_orders(
    isolated: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = fresh_group(isolated)
    cli = InProcessCli(settings, tmp_path / "home", monkeypatch, capsys)
    outbound = tmp_path / "outbound"
    outbound.mkdir()
    codec = EventCatalog.from_settings(settings).codec
    gloves, gloves_price = single_source("MED_SURG")  # allowance 10 %
    drug, drug_price = single_source("PHARMACY")  # lot controlled, allowance 0
    everything = [masterdata, requisitions(), approvals(), purchase_orders(), budget_spend,
                  receiving()]  # fmt: skip
    with Publisher.from_settings(settings) as pub:
        pub.publish_all(SAMPLE)
    run(settings, everything, outbound)

    # a receipt for the drug's PO before the requisition is even submitted: it waits
    drug_po = deterministic_id("po", RID, drug_price.supplier_id)
    early = goods_received("RCV-0", drug_po, "LOC-E1-1", [
        rline(1, drug.item_id, "100", lot="LOT-A", expiry=EXPIRY)])  # fmt: skip
    with Publisher.from_settings(settings) as pub:
        pub.publish_all([early])
    run(settings, [receiving()], outbound)
    with connect(settings) as conn:
        waiting = conn.execute("SELECT receipt_id, po_id FROM receipts_waiting").fetchall()
        assert waiting == [("RCV-0", drug_po)] and not emitted(conn, codec)
    shown = cli("show", "receipt", "RCV-0", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "WAITING"

    submitted = requisition([line(1, gloves, gloves_price, "100"), line(2, drug, drug_price,
                                                                        "250")])  # fmt: skip
    submitted["requisition_id"] = RID
    submitted["envelope"]["correlation_id"] = RID
    with Publisher.from_settings(settings) as pub:
        pub.publish_all([submitted])
    run(settings, everything, outbound)
    with connect(settings) as conn:
        pos = {
            item: (po_id, uom, ordered, location)
            for po_id, item, uom, ordered, location in conn.execute(
                "SELECT l.po_id, l.item_id, l.uom, l.quantity, o.ship_to_location_id"
                " FROM po_lines l JOIN purchase_orders o USING (po_id)"
                " WHERE o.requisition_id = %s",
                (RID,),
            )
        }
        assert pos[drug.item_id][0] == drug_po, "the drug's PO id as predicted"
        assert conn.execute("SELECT count(*) FROM receipts_waiting").fetchone() == (0,)
        (waited,) = conn.execute(
            "SELECT waited FROM receipts WHERE receipt_id = 'RCV-0'"
        ).fetchone() or (None,)
        assert waited is True
        first = emitted(conn, codec)
    assert [(e["kind"], e["item_id"], e["lot_number"], e["reference_id"]) for e in first] == [
        ("RECEIPT", drug.item_id, "LOT-A", "RCV-0")
    ]
    drug_factor = MASTER.items[drug.item_id].units[pos[drug.item_id][1]]
    assert first[0]["quantity"] == {
        "value": Decimal(100) / drug_factor,
        "uom": pos[drug.item_id][1],
    }

    # gloves: a partial receipt, then a second one beyond the 10 % allowance with damage;
    # the drug: one line without lot, one in a unit it has no conversion for (PK)
    gloves_po, location = pos[gloves.item_id][0], pos[gloves.item_id][3]
    partial = goods_received("RCV-1", gloves_po, location, [rline(1, gloves.item_id, "60")])
    second = goods_received("RCV-2", gloves_po, location, [
        rline(1, gloves.item_id, "60", rejected="5", reason="crushed cartons")])  # fmt: skip
    drug_second = goods_received("RCV-3", drug_po, location, [
        rline(1, drug.item_id, "100"),
        rline(1, drug.item_id, "3", "PK", lot="LOT-B", expiry=EXPIRY),
    ])  # fmt: skip
    with Publisher.from_settings(settings) as pub:
        pub.publish_all([partial, second, drug_second])
    run(settings, [receiving()], outbound)
    with connect(settings) as conn:
        out = emitted(conn, codec)[1:]
        lines = dict(
            ((po, n), (received, rejected, accepted))
            for po, n, received, rejected, accepted in conn.execute(
                "SELECT po_id, line_number, received, rejected, accepted FROM receiving_po_lines"
            )
        )
    g_factor = MASTER.items[gloves.item_id].units[pos[gloves.item_id][1]]

    def in_po(eaches: int) -> Decimal:
        return (Decimal(eaches) / Decimal(g_factor)).quantize(Decimal("0.001"))

    moves = [(e["reference_id"], e["quantity"]["value"]) for e in out if "movement_id" in e]
    assert moves == [("RCV-1", in_po(60)), ("RCV-2", in_po(50))]  # 110 EA at most
    found = sorted(
        (e["receipt_id"], e["kind"], e["expected"]["value"], e["actual"]["value"],
         e["actual"]["uom"])
        for e in out if "kind" in e and "receipt_id" in e
    )  # fmt: skip
    d_uom = pos[drug.item_id][1]
    assert found == sorted([
        ("RCV-2", "DAMAGED", in_po(100), in_po(5), pos[gloves.item_id][1]),
        ("RCV-2", "OVER", in_po(100), in_po(120), pos[gloves.item_id][1]),
        ("RCV-3", "MISSING_LOT", Decimal(250) / drug_factor, Decimal(100) / drug_factor, d_uom),
        ("RCV-3", "WRONG_ITEM", Decimal(250) / drug_factor, Decimal(3), "PK"),
    ])  # fmt: skip
    assert lines[(gloves_po, 1)] == (in_po(120), in_po(5), in_po(110))
    assert lines[(drug_po, 1)] == tuple(Decimal(v) / drug_factor for v in (200, 0, 100)), (
        "the unconvertible PK line counts nowhere"
    )

    # redelivered (same event) and resent (same receipt, new event id): nothing changes
    resent = goods_received("RCV-1", gloves_po, location, [rline(1, gloves.item_id, "60")],
                            event="resent")  # fmt: skip
    with Publisher.from_settings(settings) as pub:
        pub.publish_all([partial, second, resent])
    run(settings, [receiving()], outbound)
    with connect(settings) as conn:
        again = emitted(conn, codec)
        assert Counter(e["envelope"]["event_id"] for e in again).most_common(1)[0][1] == 1
        assert len(again) == len(out) + 1
        assert conn.execute("SELECT count(*) FROM receipts").fetchone() == (4,)
        trail = conn.execute(
            "SELECT entity_id, action FROM audit_log WHERE entity_type = 'receipt'"
            " ORDER BY entity_id, seq"
        ).fetchall()
    assert trail == [
        ("RCV-0", "waiting"), ("RCV-0", "received"), ("RCV-1", "received"),
        ("RCV-2", "received"), ("RCV-3", "received"),
    ]  # fmt: skip

    shown = cli("show", "receipt", "RCV-2", "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert (doc["status"], doc["discrepancies"], doc["po_id"]) == ("APPLIED", 2, gloves_po)
    assert doc["lines"][0]["discrepancies"] == ["DAMAGED", "OVER"]
    assert Decimal(doc["po_lines"][0]["accepted"]) == in_po(110)
    table = cli("show", "receipt", "RCV-3")
    assert table.returncode == 0 and "MISSING_LOT" in table.stdout and "3.000 PK" in table.stdout
    unknown = cli("show", "receipt", "RCV-404")
    assert unknown.returncode == 2 and "receipt 'RCV-404' is not known" in unknown.stderr
    assert "Traceback" not in unknown.stderr
