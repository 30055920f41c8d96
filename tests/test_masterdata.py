"""Master-data read models on the real broker and database: the sample loaded through the CLI,
the masterdata processor, the newest version kept whatever the order, `masterdata show`."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.masterdata import queries
from supplybus.consumers.masterdata.approvers import acting_approver
from supplybus.consumers.masterdata.processor import processor
from supplybus.consumers.masterdata.sample import sample_masterdata
from supplybus.consumers.runtime.runner import Runner
from supplybus.events.envelope import deterministic_id
from supplybus.producers.publisher import Publisher
from tests.helpers import cli_env, run_cli
from tests.workers import fresh_group

TODAY = dt.date(2026, 11, 29)
Rows = set[tuple[Any, ...]]


def _run(settings: Settings) -> None:
    assert Runner(settings, [processor], until_idle=1.5, signals=False).run() == 0


def _rows(settings: Settings, query: str) -> Rows:
    """The rows of ``query``, arrays as tuples."""
    with connect(settings) as conn:
        rows = conn.execute(query).fetchall()
    return {tuple(tuple(v) if isinstance(v, list) else v for v in r) for r in rows}


def _of(records: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [r for r in records if r["envelope"]["event_type"] == event_type]


def _expected(records: list[dict[str, Any]]) -> dict[str, Rows]:
    """What each table must hold, from the published records (independent of the processor)."""
    items, locations = _of(records, "ItemUpserted"), _of(records, "LocationUpserted")
    centers, approvers = _of(records, "CostCenterUpserted"), _of(records, "ApproverUpserted")

    def q(x: dict[str, Any]) -> Iterable[Any]:
        return (x["value"], x["uom"])

    return {
        "SELECT supplier_id, name, status, tax_id, currency, entity_ids FROM suppliers": {
            (s["supplier_id"], s["name"], s["status"], s["tax_id"], s["currency"],
             tuple(s["entity_ids"])) for s in _of(records, "SupplierUpserted")
        },
        "SELECT item_id, gtin, description, category, base_uom, lot_controlled, orderable"
        " FROM items": {
            (i["item_id"], i["gtin"], i["description"], i["category"], i["base_uom"],
             i["lot_controlled"], i["orderable"]) for i in items
        },
        "SELECT item_id, uom, factor FROM item_units": {
            (i["item_id"], c["uom"], c["factor"]) for i in items for c in i["uom_conversions"]
        },
        "SELECT item_id, supplier_id, uom, valid_from, valid_to, amount, currency"
        " FROM contract_prices": {
            (i["item_id"], p["supplier_id"], p["uom"], p["valid_from"], p["valid_to"],
             p["price"]["amount"], p["price"]["currency"])
            for i in items for p in i["contract_prices"]
        },
        "SELECT facility_id, name, owning_entity_id, kind, timezone FROM facilities": {
            (f["facility_id"], f["name"], f["owning_entity_id"], f["kind"], f["timezone"])
            for f in _of(records, "FacilityUpserted")
        },
        "SELECT location_id, facility_id, name, kind FROM locations": {
            (loc["location_id"], loc["location_facility_id"], loc["name"], loc["kind"])
            for loc in locations
        },
        "SELECT location_id, item_id, par, par_uom, reorder_point, reorder_point_uom,"
        " reorder_quantity, reorder_quantity_uom FROM par_levels": {
            (loc["location_id"], lv["item_id"], *q(lv["par"]), *q(lv["reorder_point"]),
             *q(lv["reorder_quantity"])) for loc in locations for lv in loc["levels"]
        },
        "SELECT cost_center_id, owning_entity_id, facility_id, name, status, grant_funded"
        " FROM cost_centers": {
            (c["cost_center_id"], c["owning_entity_id"], c["facility_id"], c["name"],
             c["status"], c["grant_funded"]) for c in centers
        },
        "SELECT cost_center_id, period, amount, currency FROM cost_center_budgets": {
            (c["cost_center_id"], b["period"], b["amount"]["amount"], b["amount"]["currency"])
            for c in centers for b in c["budgets"]
        },
        "SELECT approver_id, name, owning_entity_id, roles, limit_amount, limit_currency,"
        " cost_center_ids, facility_ids, active FROM approvers": {
            (a["approver_id"], a["name"], a["owning_entity_id"], tuple(a["roles"]),
             a["authority_limit"]["amount"], a["authority_limit"]["currency"],
             tuple(a["cost_center_ids"]), tuple(a["facility_ids"]), a["active"]) for a in approvers
        },
        "SELECT approver_id, delegate_id, from_date, to_date FROM approver_delegations": {
            (a["approver_id"], d["delegate_id"], d["from_date"], d["to_date"])
            for a in approvers for d in a["delegations"]
        },
    }  # fmt: skip


def test_the_sample_loaded_by_the_cli_fills_the_read_models_exactly(
    isolated: Settings, tmp_path: Path
) -> None:
    settings = fresh_group(isolated)
    env = cli_env(settings, tmp_path / "home")
    loaded = run_cli("masterdata", "load-sample", "--seed", "3", "--today", str(TODAY), env=env)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.startswith("published 264 master-data events: 20 ApproverUpserted, ")
    again = run_cli("masterdata", "load-sample", "--seed", "3", "--today", str(TODAY), env=env)
    assert again.returncode == 0, again.stderr  # the same ids: duplicates downstream
    _run(settings)

    records = sample_masterdata(3, TODAY)
    for query, expected in _expected(records).items():
        assert _rows(settings, query) == expected, query
    assert _rows(settings, "SELECT entity_id, facility_ids FROM legal_entities") == {
        ("ENT-EAST", ("FAC-E1", "FAC-E2")),
        ("ENT-WEST", ("FAC-W1", "FAC-W2")),
    }
    with connect(settings) as conn:
        book = queries.approvers(conn)
        (ledger,) = conn.execute("SELECT count(*) FROM processed_events").fetchone() or (0,)
    assert ledger == len(records), "the second load's events were the same events"
    assert acting_approver(book, "APR-EAST-DIR", TODAY).approver_id == "APR-EAST-DIR2"
    assert acting_approver(book, "APR-EAST-DIR", TODAY + dt.timedelta(15)).approver_id == (
        "APR-EAST-DIR"
    )

    shown = run_cli("masterdata", "show", "item", "ITEM-0001", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    item = json.loads(shown.stdout)
    (published,) = [r for r in records if r.get("item_id") == "ITEM-0001"]
    assert item["gtin"] == published["gtin"] and item["category"] == "MED_SURG"
    assert item["units"] == {"EA": "1.000", "BX": "10.000", "CS": "100.000"}
    prices = [(p["supplier_id"], p["uom"], Decimal(p["amount"])) for p in item["contract_prices"]]
    assert prices == sorted(
        (p["supplier_id"], p["uom"], p["price"]["amount"]) for p in published["contract_prices"]
    )
    center = run_cli("masterdata", "show", "cost-center", "CC-E1-RES", env=env)
    assert center.returncode == 0, center.stderr
    assert "grant_funded: True" in center.stdout and "period=2026-12" in center.stdout
    supplier = run_cli("masterdata", "show", "supplier", "SUP-020", "--json", env=env)
    assert json.loads(supplier.stdout)["status"] == "BLOCKED"

    missing = run_cli("masterdata", "show", "supplier", "SUP-999", env=env)
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.strip() == (
        "error: supplier 'SUP-999': not in the master-data read models "
        "(is it published, and has `supplybus run masterdata` run?)"
    )
    wrong = run_cli("masterdata", "show", "widget", "X", env=env)
    assert wrong.returncode == 2 and "'widget' is not one of 'cost-center', 'item', 'supplier'" in (
        wrong.stderr
    )


def _item_version(base: dict[str, Any], hours: int, description: str, box: int) -> dict[str, Any]:
    record = copy.deepcopy(base)
    record["envelope"]["occurred_at"] = dt.datetime(2026, 11, 1, tzinfo=dt.UTC) + dt.timedelta(
        hours=hours
    )
    record["envelope"]["event_id"] = deterministic_id("test", base["item_id"], hours)
    record["description"] = description
    record["uom_conversions"] = [
        {"uom": "EA", "factor": Decimal(1)},
        {"uom": "BX", "factor": Decimal(box)},
    ]
    record["contract_prices"] = [p for p in record["contract_prices"] if p["uom"] == "EA"]
    return record


def test_a_late_older_upsert_never_overwrites_a_newer_one(isolated: Settings) -> None:
    settings = fresh_group(isolated)
    sample = [
        r for r in sample_masterdata(0, TODAY) if r["envelope"]["event_type"] == "ItemUpserted"
    ]
    a, b = sample[0], sample[1]
    newer_a, older_a = _item_version(a, 10, "A v2", 12), _item_version(a, 5, "A v1", 10)
    newer_b, older_b = _item_version(b, 10, "B v2", 24), _item_version(b, 5, "B v1", 20)
    bad = _item_version(sample[2], 1, "C", 10)
    bad["contract_prices"][0]["uom"] = "CS"  # not one of its units: dead-lettered
    with Publisher.from_settings(settings) as pub:  # A: the older after the newer, one batch
        pub.publish_all([newer_a, older_a, newer_b, bad])
    _run(settings)
    with Publisher.from_settings(settings) as pub:  # B: the older one in a later batch
        pub.publish_all([older_b, older_a])
    _run(settings)

    assert _rows(settings, "SELECT item_id, description, event_id::text FROM items") == {
        (a["item_id"], "A v2", newer_a["envelope"]["event_id"]),
        (b["item_id"], "B v2", newer_b["envelope"]["event_id"]),
    }
    assert _rows(settings, "SELECT item_id, factor FROM item_units WHERE uom = 'BX'") == {
        (a["item_id"], Decimal(12)),
        (b["item_id"], Decimal(24)),
    }
    ((code, message),) = _rows(settings, "SELECT error_code, message FROM dead_letters")
    assert code == "BUSINESS_RULE" and message.startswith(
        f"item {sample[2]['item_id']}: contract price of supplier "
    )

    with Publisher.from_settings(settings) as pub:  # a newer version still wins afterwards
        pub.publish(_item_version(b, 11, "B v3", 30))
    _run(settings)
    assert ("B v3", Decimal(30)) in _rows(
        settings,
        "SELECT description, factor FROM items JOIN item_units USING (item_id) WHERE uom = 'BX'",
    )
