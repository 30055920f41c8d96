"""The requisitions processor on the real broker and database: the sample master data loaded by
the masterdata processor, requisitions validated, flagged, rejected or dead-lettered (key held),
the events in the outbox, an audit entry each, a re-delivery that emits nothing twice, and the
dead letter replayed with `dlq replay` once the item arrives (its held event follows in order;
a second replay applies nothing)."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers import audit
from supplybus.consumers.masterdata.processor import processor as masterdata
from supplybus.consumers.procurement.processor import requisitions
from supplybus.consumers.runtime.runner import Runner
from supplybus.events.catalog import EventCatalog
from supplybus.events.envelope import deterministic_id
from supplybus.producers.publisher import Publisher
from tests.helpers import InProcessCli
from tests.requisition_data import MASTER, SAMPLE, TODAY, VALID, line, requisition
from tests.workers import fresh_group

Record = dict[str, Any]
EMITTED = ["RequisitionValidated", "RequisitionRejected"]
AT = dt.datetime(TODAY.year, TODAY.month, TODAY.day, 9, 30, tzinfo=dt.UTC)


def _submitted(rid: str, lines: list[Record], center: str = "CC-E1-SURG") -> Record:
    record = requisition(lines, center)
    record["requisition_id"] = rid
    envelope = record["envelope"]
    envelope["event_id"] = deterministic_id("test-requisitions", rid, len(lines))
    envelope["correlation_id"] = rid
    envelope["occurred_at"] = AT
    return record


def _run(settings: Settings, *processors: Any) -> None:
    runner = Runner(settings, list(processors), until_idle=1.5, signals=False)
    assert runner.run() == 0


def _emitted(settings: Settings) -> dict[str, Record]:
    """The events the requisitions processor put in the outbox, by requisition id."""
    codec = EventCatalog.from_settings(settings).codec
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT value FROM outbox WHERE event_type = ANY(%s) ORDER BY id", (EMITTED,)
        ).fetchall()
    found: dict[str, Record] = {}
    for (value,) in rows:
        record = codec.decode(bytes(value)).record
        assert record["requisition_id"] not in found, "one event per requisition"
        found[record["requisition_id"]] = record
    return found


def test_requisitions_are_validated_flagged_rejected_or_held(
    isolated: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = fresh_group(isolated)
    with Publisher.from_settings(settings) as pub:
        pub.publish_all(SAMPLE)
    _run(settings, masterdata)

    item, price = next((i, p) for i, p in VALID if p.uom == i.base_uom and p.amount < 100)
    other, other_price = VALID[5]
    valid = _submitted("REQ-VALID", [line(1, item, price)])
    dear = line(1, other, other_price)
    dear["unit_price"] = {"amount": other_price.amount + 1, "currency": "USD"}
    off = _submitted("REQ-OFF", [dear])
    budget = MASTER.cost_centers["CC-E1-SURG"].budget
    assert budget is not None
    many = int(budget / price.amount) + 1
    over = _submitted("REQ-OVER", [line(1, item, price, str(many))])
    bad = line(1, item, price)
    bad["supplier_id"] = "SUP-999"
    bad["quantity"]["uom"] = "PK"  # a known unit, not one of the item's
    rejected = _submitted("REQ-BAD", [bad])
    unknown = line(1, item, price)
    unknown["item_id"] = "ITEM-9999"
    missing = _submitted("REQ-MISSING", [unknown])
    later = _submitted("REQ-MISSING", [line(1, item, price), line(2, item, price)])
    submitted = [valid, off, over, rejected, missing, later]
    with Publisher.from_settings(settings) as pub:
        pub.publish_all(submitted)
    _run(settings, masterdata, requisitions())

    emitted = _emitted(settings)
    assert sorted(emitted) == ["REQ-BAD", "REQ-OFF", "REQ-OVER", "REQ-VALID"]
    for rid, record in emitted.items():
        parent = next(s for s in submitted if s["requisition_id"] == rid)["envelope"]
        env = record["envelope"]
        assert (env["causation_id"], env["correlation_id"]) == (parent["event_id"], rid)
        assert env["event_id"] == deterministic_id(
            parent["event_id"], "requisitions", env["event_type"], rid
        )
    ok = emitted["REQ-VALID"]
    assert ok["envelope"]["event_type"] == "RequisitionValidated"
    assert (ok["flags"], ok["budget_status"]) == ([], "WITHIN_BUDGET")
    assert ok["total"] == {"amount": price.amount * 2, "currency": "USD"}
    assert emitted["REQ-OFF"]["flags"] == ["OFF_CONTRACT"]
    assert emitted["REQ-OVER"]["budget_status"] == "OVER_BUDGET"
    no = emitted["REQ-BAD"]
    assert no["envelope"]["event_type"] == "RequisitionRejected"
    assert [(r["code"], r["field"]) for r in no["reasons"]] == [
        ("UNKNOWN_SUPPLIER", "lines[0].supplier_id"),
        ("UNKNOWN_UNIT", "lines[0].quantity.uom"),
    ]

    with connect(settings) as conn:
        trail = {rid: audit.history(conn, rid, "requisition") for rid in emitted}
        dead = conn.execute(
            "SELECT message FROM dead_letters WHERE processor = 'requisitions'"
        ).fetchall()
        holds = conn.execute(
            "SELECT key FROM key_holds WHERE processor = 'requisitions'"
        ).fetchall()
        held = conn.execute(
            "SELECT event_id::text FROM held_events WHERE processor = 'requisitions'"
        ).fetchall()
        assert audit.history(conn, "REQ-MISSING") == []
        assert audit.verify(conn).intact
    assert [m for (m,) in dead] == [
        "requisition REQ-MISSING: item ITEM-9999 is not in the item master; "
        "replay it once the item master has it"
    ]
    assert [bytes(k) for (k,) in holds] == [b"REQ-MISSING"]
    assert held == [(later["envelope"]["event_id"],)], "the later event of the key waits"

    assert {rid: [r.entry.action for r in rows] for rid, rows in trail.items()} == {
        "REQ-BAD": ["rejected"],
        "REQ-OFF": ["validated"],
        "REQ-OVER": ["validated"],
        "REQ-VALID": ["validated"],
    }
    auto = trail["REQ-VALID"][0].entry
    assert auto.rule_ids == ("EAST-AUTO",) and auto.actor == "requisitions"
    assert auto.rule_version == "enterprise-standard@1,entity-ent-east@1,facility-fac-e1@1"
    assert auto.event_id == valid["envelope"]["event_id"]
    assert auto.detail["event_id"] == ok["envelope"]["event_id"]
    sourcing = json.loads(trail["REQ-OFF"][0].entry.detail["route"])
    assert sourcing["steps"][0]["role"] == "SOURCING"
    assert sourcing["steps"][0]["rule"] == "E1-OFF-CONTRACT"
    finance = trail["REQ-OVER"][0].entry
    assert finance.rule_ids[0] == "EAST-OVER-BUDGET"
    assert json.loads(finance.detail["route"])["steps"][0]["role"] == "FINANCE"
    reasons = trail["REQ-BAD"][0].entry.reason
    assert "UNKNOWN_SUPPLIER" in reasons and "UNKNOWN_UNIT" in reasons

    # a re-delivery of every requisition (the same event ids) emits and records nothing new
    with Publisher.from_settings(settings) as pub:
        pub.publish_all([copy.deepcopy(r) for r in submitted[:4]])
    _run(settings, masterdata, requisitions())
    assert _emitted(settings) == emitted
    with connect(settings) as conn:
        again = {rid: audit.history(conn, rid, "requisition") for rid in emitted}
        (outbox,) = conn.execute(
            "SELECT count(*) FROM outbox WHERE event_type = ANY(%s)", (EMITTED,)
        ).fetchone() or (0,)
    assert again == trail and outbox == 4

    # the item arrives in the item master; the dead letter is replayed, the held event follows
    known = copy.deepcopy(next(r for r in SAMPLE if r.get("item_id") == item.item_id))
    known["item_id"] = "ITEM-9999"
    known["envelope"]["event_id"] = deterministic_id("test-requisitions", "ITEM-9999")
    with Publisher.from_settings(settings) as pub:
        pub.publish_all([known])
    _run(settings, masterdata)
    with connect(settings) as conn:
        (dead_letter_id,) = conn.execute(
            "SELECT dead_letter_id::text FROM key_holds WHERE processor = 'requisitions'"
        ).fetchone() or ("",)
    cli = InProcessCli(settings, tmp_path / "home", monkeypatch, capsys)
    replayed = cli("dlq", "replay", dead_letter_id[:8])  # applies it, then the held event
    assert replayed.returncode == 0 and "1 applied" in replayed.stdout, replayed.stderr
    again = cli("dlq", "replay", dead_letter_id)
    assert again.returncode == 0 and "1 already applied" in again.stdout, again.stdout
    with connect(settings) as conn:
        causes = conn.execute(
            "SELECT event_type, causation_id FROM outbox WHERE event_type = ANY(%s)"
            " AND correlation_id = 'REQ-MISSING' ORDER BY id",
            (EMITTED,),
        ).fetchall()
        left = conn.execute(
            "SELECT (SELECT count(*) FROM held_events), (SELECT count(*) FROM key_holds)"
        ).fetchone()
        actions = [r.entry.action for r in audit.history(conn, "REQ-MISSING")]
    assert causes == [
        ("RequisitionValidated", missing["envelope"]["event_id"]),
        ("RequisitionRejected", later["envelope"]["event_id"]),
    ], "replayed first, then the held event, in order (a re-submission: rejected)"
    assert left == (0, 0) and actions == ["validated", "rejected"]
