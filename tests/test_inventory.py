"""stock-balances end to end on the real broker and database (issue 18 acceptance 3): movements
converted to the stocking unit (CS -> EA), an unconvertible unit and an unknown item refused
with the reason, FEFO across lots, a redelivery applied once; the reorder point fires exactly
once per breach under concurrent movements on both lanes and re-arms, and the replenishment
requisition is validated by the requisitions processor; a critical item's StockoutRisk on the
critical lane; `supplybus stock`."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.inventory.balances import processor as stock_balances
from supplybus.consumers.masterdata.processor import processor as masterdata
from supplybus.consumers.procurement.processor import requisitions
from supplybus.consumers.runtime.runner import Runner
from supplybus.events.envelope import new_envelope
from supplybus.producers.publisher import Publisher
from tests.helpers import InProcessCli
from tests.requisition_data import SAMPLE, TODAY
from tests.workers import fresh_group

Record = dict[str, Any]
D = Decimal
STORE, PHARMACY = "LOC-E1-1", "LOC-E1-2"
_ITEMS = {r["item_id"]: r for r in SAMPLE if r["envelope"]["event_type"] == "ItemUpserted"}
_LEVELS = {
    (r["location_id"], lv["item_id"]): lv
    for r in SAMPLE
    if r["envelope"]["event_type"] == "LocationUpserted"
    for lv in r["levels"]
}


def _units(item: Record) -> set[str]:
    return {c["uom"] for c in item["uom_conversions"]}


#: A med-surg item in cases of 100 EA without a par level at the storeroom (FEFO, units).
PLAIN = next(
    i for i, r in sorted(_ITEMS.items())
    if r["category"] == "MED_SURG" and "CS" in _units(r) and (STORE, i) not in _LEVELS
)  # fmt: skip
#: A med-surg item with a par level at the storeroom and an active contract (replenishment).
PAR = next(
    i for i, r in sorted(_ITEMS.items())
    if r["category"] == "MED_SURG" and (STORE, i) in _LEVELS and r["orderable"]
    and r["contract_prices"]
)  # fmt: skip
#: A controlled substance stocked at the pharmacy (its keys travel on the critical lane).
CONTROLLED = next(
    i for i, r in sorted(_ITEMS.items())
    if r["category"] == "CONTROLLED_SUBSTANCE" and (PHARMACY, i) not in _LEVELS
)  # fmt: skip


def move(
    kind: str,
    item: str,
    qty: str,
    uom: str = "EA",
    *,
    location: str = STORE,
    lot: str | None = None,
    expiry: dt.date | None = None,
    priority: str = "ROUTINE",
) -> Record:
    env = new_envelope(
        "StockMovement", source_system="mmis", entity_id="ENT-EAST", facility_id="FAC-E1",
        actor="U-1", priority=priority,
    )  # fmt: skip
    return {
        "envelope": env,
        "movement_id": str(uuid.uuid4()),
        "kind": kind,
        "item_id": item,
        "location_id": location,
        "lot_number": lot,
        "expiry_date": expiry,
        "quantity": {"value": D(qty), "uom": uom},
        "counterpart_location_id": None,
        "reference_id": None,
        "reason": None,
    }


def run(settings: Settings, *procs: Any) -> None:
    procs = procs or (stock_balances,)
    runner = Runner(settings, list(procs), relay=True, until_idle=1.0, signals=False)
    assert runner.run() == 0, [lane.error for lane in runner.lanes]


def publish(settings: Settings, records: list[Record]) -> None:
    with Publisher.from_settings(settings) as pub:
        pub.publish_all(records)


def rows(settings: Settings, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with connect(settings) as conn:
        return conn.execute(sql, args).fetchall()


@pytest.fixture
def stocked(isolated: Settings) -> Settings:
    """Fresh groups over the sample master data, applied."""
    settings = fresh_group(isolated)
    publish(settings, SAMPLE)
    run(settings, masterdata)
    return settings


def test_units_lots_fefo_and_refusals(
    stocked: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    late, early = TODAY + dt.timedelta(days=90), TODAY + dt.timedelta(days=10)
    receipts = [
        move("RECEIPT", PLAIN, "1", "CS", lot="L-LATE", expiry=late),  # 100 EA
        move("RECEIPT", PLAIN, "3", "BX", lot="L-EARLY", expiry=early),  # 30 EA
        move("RECEIPT", PLAIN, "5", "EA"),  # no lot
        move("RECEIPT", PLAIN, "4", "EA", lot="L-OLD", expiry=TODAY - dt.timedelta(days=1)),
    ]
    issue = move("ISSUE", PLAIN, "45", "EA")  # FEFO: 30 of L-EARLY, 15 of L-LATE, not L-OLD
    unknown = move("RECEIPT", "ITEM-NOPE", "1", "CS")
    bad_unit = move("RECEIPT", PLAIN, "2", "PK")  # PLAIN has no PK conversion: refused
    publish(stocked, [*receipts, issue, unknown, bad_unit])
    publish(stocked, [issue])  # a redelivery: the ledger skips it
    run(stocked)

    balances = rows(
        stocked,
        "SELECT lot_number, uom, on_hand, expiry_date FROM stock_balances WHERE item_id = %s"
        " ORDER BY lot_number",
        PLAIN,
    )
    assert balances == [
        ("", "EA", D(5), None),
        ("L-EARLY", "EA", D(0), early),
        ("L-LATE", "EA", D(85), late),
        ("L-OLD", "EA", D(4), TODAY - dt.timedelta(days=1)),
    ]
    dead = rows(stocked, "SELECT error_code, message FROM dead_letters ORDER BY id")
    messages = sorted(m for _, m in dead)
    assert [c for c, _ in dead] == ["BUSINESS_RULE", "BUSINESS_RULE"]
    assert "ITEM-NOPE is not in the item master" in messages[0]
    assert f"item {PLAIN} has no unit 'PK'" in messages[1] and "2.000 PK" in messages[1]
    assert rows(stocked, "SELECT count(*) FROM stock_balances WHERE item_id = 'ITEM-NOPE'") == [
        (0,)
    ]

    cli = InProcessCli(stocked, tmp_path / "home", monkeypatch, capsys)
    got = cli("stock", "--item", PLAIN, "--json")
    assert got.returncode == 0, got.stderr
    listed = json.loads(got.stdout)
    assert [(r["lot_number"], r["on_hand"], r["expired"]) for r in listed] == [
        ("L-OLD", "4.000", True),
        ("L-EARLY", "0.000", False),
        ("L-LATE", "85.000", False),
        (None, "5.000", False),
    ]
    soon = json.loads(cli("stock", "--expiring-within", "30", "--json").stdout)
    assert [r["lot_number"] for r in soon] == ["L-OLD"]  # L-EARLY is empty
    table = cli("stock", "--location", STORE)
    assert table.returncode == 0 and "EXPIRED" in table.stdout and PLAIN in table.stdout
    refused = cli("stock", "--location", "LOC-NOWHERE")
    assert refused.returncode == 2 and "--location: 'LOC-NOWHERE' is not known" in refused.stderr
    assert "Traceback" not in refused.stderr


def _reorders(settings: Settings) -> list[tuple[Any, ...]]:
    return rows(
        settings,
        "SELECT b.seq, b.requisition_id, b.rearmed_at IS NOT NULL, o.priority"
        " FROM replenishment_breaches b JOIN outbox o ON o.event_type = 'ReorderTriggered'"
        " AND o.correlation_id = b.requisition_id WHERE b.item_id = %s ORDER BY b.seq",
        PAR,
    )


def _issues_on_both_lanes(settings: Settings, total: int, each: int = 1) -> None:
    """``total`` EA issued in movements of ``each``, half on each lane, by two publishers
    publishing at once (a publisher keeps a key on one lane; two publishers need not)."""
    half = [move("ISSUE", PAR, str(each)) for _ in range(total // each // 2)]
    stat = [move("ISSUE", PAR, str(each), priority="CRITICAL") for _ in range(len(half))]
    threads = [threading.Thread(target=publish, args=(settings, m)) for m in (half, stat)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_reorder_fires_once_per_breach_on_two_lanes_and_rearms(stocked: Settings) -> None:
    level = _LEVELS[(STORE, PAR)]
    point = level["reorder_point"]["value"]
    par = level["par"]["value"]
    assert level["reorder_point"]["uom"] == "EA" == _ITEMS[PAR]["base_uom"]
    publish(stocked, [move("RECEIPT", PAR, str(par))])
    run(stocked)
    assert _reorders(stocked) == []

    # concurrent issues on the routine and the critical lane take it to the reorder point
    _issues_on_both_lanes(stocked, int(par - point) + 10)
    run(stocked)
    rid = f"RPL-{STORE}-{PAR}-1"
    assert _reorders(stocked) == [(1, rid, False, "ROUTINE")], "one breach, fired once"
    on_hand = rows(stocked, "SELECT sum(on_hand) FROM stock_balances WHERE item_id = %s", PAR)
    assert on_hand == [(par - (int(par - point) + 10),)]

    # more issues below the point: still the same breach
    _issues_on_both_lanes(stocked, 4)
    run(stocked)
    assert len(_reorders(stocked)) == 1

    # a receipt above the point re-arms it; falling again is a second breach
    publish(stocked, [move("RECEIPT", PAR, str(par))])
    run(stocked)
    assert _reorders(stocked) == [(1, rid, True, "ROUTINE")]
    _issues_on_both_lanes(stocked, int(par) + 2)
    run(stocked)
    assert [r[:2] for r in _reorders(stocked)] == [(1, rid), (2, f"RPL-{STORE}-{PAR}-2")]
    assert rows(stocked, "SELECT count(*) FROM dead_letters") == [(0,)]

    # the replenishment requisitions pass validation (requisitions processor)
    run(stocked, requisitions())
    found = rows(
        stocked,
        "SELECT requisition_id, status, cost_center_id, requester_id, urgency FROM requisitions"
        " WHERE requisition_id LIKE 'RPL-%%' ORDER BY requisition_id",
    )
    assert [f[0] for f in found] == [rid, f"RPL-{STORE}-{PAR}-2"]
    assert {f[1] for f in found} != {"REJECTED"}, found
    assert all(f[2] == "CC-E1-SURG" and f[3] == "supplybus.replenishment" for f in found)
    lines = rows(stocked, "SELECT lines FROM requisitions WHERE requisition_id = %s", rid)[0][0]
    placed = (json.loads(lines) if isinstance(lines, str) else lines)[0]
    assert D(placed["quantity"]) == level["reorder_quantity"]["value"] and placed["on_contract"]


def test_a_critical_items_stockout_risk_travels_on_the_critical_lane(stocked: Settings) -> None:
    base = _ITEMS[CONTROLLED]["base_uom"]
    publish(stocked, [move("RECEIPT", CONTROLLED, "20", base, location=PHARMACY, lot="C1",
                           expiry=TODAY + dt.timedelta(days=200))])  # fmt: skip
    run(stocked)
    publish(stocked, [move("ISSUE", CONTROLLED, "10", base, location=PHARMACY) for _ in range(2)])
    run(stocked)
    risks = rows(
        stocked,
        "SELECT topic, priority FROM outbox WHERE event_type = 'StockoutRisk' ORDER BY id",
    )
    # 20 on hand, no usage: LOW (nothing emitted); 10 left at 10/14 a day: 14 days, LOW;
    # nothing left: CRITICAL (emitted, on the critical lane whatever the movements' lane)
    assert len(risks) == 1 and risks[0][0].endswith("inventory.replenishment.v1.critical")
    assert risks[0][1] == "CRITICAL"
    level = rows(stocked, "SELECT risk_level FROM stock_positions WHERE item_id = %s", CONTROLLED)
    assert level == [("CRITICAL",)]
