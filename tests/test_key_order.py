"""Per-key order past dead letters on the real broker and database (per-key hold)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.runtime import hold
from supplybus.consumers.runtime.accounting import report_holds
from supplybus.consumers.runtime.apply import BatchApplier
from supplybus.consumers.runtime.decode import BatchDecoder
from supplybus.consumers.runtime.processor import HoldAlert
from supplybus.consumers.runtime.runner import Runner
from supplybus.errors import ValidationError
from supplybus.events.catalog import EventCatalog
from supplybus.metrics import Metrics
from supplybus.producers.publisher import Publisher
from tests import flood
from tests.helpers import cli_env, run_cli
from tests.processors import GATE_SETUP, gated_sums, keyed_sums
from tests.workers import WorkerFactory, fresh_group

KEYS, PER_KEY, POISON_KEY, POISON_N = 100, 100, 7, 50


def _applied(settings: Settings) -> dict[str, list[int]]:
    got: dict[str, list[int]] = {}
    for key, n, _ in flood.effects(settings):
        got.setdefault(key, []).append(n)
    return got


def test_a_key_waits_behind_its_dead_letter_while_other_keys_flow(
    isolated: Settings, workers: WorkerFactory, tmp_path: Path
) -> None:
    settings = fresh_group(isolated)
    records = flood.load("hold", keys=KEYS, per_key=PER_KEY)
    gate = next(
        r for r in records if r["item_id"] == f"K{POISON_KEY:04d}" and r["reference_id"] == "50"
    )
    gate["reason"] = "gate"
    with connect(settings) as conn:
        conn.execute(GATE_SETUP)
        conn.execute("INSERT INTO blocked_items VALUES (%s)", (gate["item_id"],))
        conn.commit()
    flood.publish(settings, records)

    assert Runner(settings, [gated_sums()], until_idle=1.5, signals=False).run() == 0
    applied = _applied(settings)
    poisoned = gate["item_id"]
    assert applied.pop(poisoned) == list(range(1, POISON_N))
    assert applied == {f"K{k:04d}": list(range(1, 101)) for k in range(KEYS) if k != POISON_KEY}
    with connect(settings) as conn:
        held = conn.execute(
            "SELECT (SELECT count(*) FROM key_holds), count(*),"
            " array_agg(event_id::text ORDER BY seq) FROM held_events"
        ).fetchone()
        (dead_letter_id,) = conn.execute(
            "SELECT dead_letter_id::text FROM dead_letters"
        ).fetchone() or ("",)
        found = conn.execute("SELECT dead_letter_id::text FROM dead_letters").fetchone()
    assert found is not None
    (dead_letter_id,) = found
    later = [r["envelope"]["event_id"] for r in records if r["item_id"] == poisoned][POISON_N:]
    assert held == (1, PER_KEY - POISON_N, later), "the 50 later events are held, in order"

    listed = run_cli("holds", "--json", env=cli_env(settings, tmp_path / "home"))
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)
    assert entry["key"] == f"{poisoned}@LOC-1" and entry["held_events"] == PER_KEY - POISON_N
    assert entry["dead_letters"] == [dead_letter_id] and entry["error_codes"] == ["BUSINESS_RULE"]
    metrics = Metrics()
    with connect(settings) as conn:
        strict = replace(gated_sums(), hold_alert=HoldAlert(max_events=10))
        report_holds(hold.held(conn), strict, metrics)
    assert metrics.hold_alerts.labels("gated-sums")._value.get() == 1
    assert metrics.held_events.labels("gated-sums")._value.get() == PER_KEY - POISON_N

    # The cause is fixed (the item's master data arrives) and the dead letter replayed.
    catalog = EventCatalog.from_settings(settings)
    applier = BatchApplier(gated_sums(), catalog, lambda t: f"{t}.dlq")
    decode = BatchDecoder(catalog, ("StockMovement",))
    with connect(settings) as conn:
        conn.execute("DELETE FROM blocked_items")
        outcome = applier.replay(conn, dead_letter_id, decode)
        conn.commit()
        assert [e.event_id for e in outcome.applied] == [gate["envelope"]["event_id"]]
        again = applier.replay(conn, dead_letter_id, decode)  # a second replay: already applied
        conn.commit()
        assert not again.applied and again.duplicates == 1
    assert _applied(settings)[poisoned] == list(range(1, POISON_N + 1))

    # kill -9 in the middle of the release: nothing of it is committed ...
    crashing = workers(
        settings,
        "release",
        args=("tests.processors:gated_sums",),
        env={"SUPPLYBUS_CRASH_AT": "mid-release"},
    )
    crashing.start()
    assert crashing.wait(60) == 137, crashing.output()
    assert _applied(settings)[poisoned] == list(range(1, POISON_N + 1))
    # ... and the next run releases all of it, once, in order.
    assert Runner(settings, [gated_sums()], until_idle=1.5, signals=False).run() == 0
    flood.check_exactly_once(settings, keys=KEYS, per_key=PER_KEY)
    with connect(settings) as conn:
        left = conn.execute(
            "SELECT (SELECT count(*) FROM held_events), (SELECT count(*) FROM key_holds),"
            " (SELECT status FROM dead_letters)"
        ).fetchone()
    assert left == (0, 0, "replayed")


def test_a_keys_events_never_change_lanes(isolated: Settings) -> None:
    """Per-key order across lanes, by construction (ADR 0009): a publisher refuses an event
    whose key would change lanes, and emitted events inherit their cause's priority, so a STAT
    key's whole chain travels, in order, on the critical lanes."""
    settings = fresh_group(isolated)
    with Publisher.from_settings(settings) as publisher:
        publisher.publish(flood.movement("lanes", 0, 1))  # K0000 starts ROUTINE
        with pytest.raises(ValidationError, match="never change lanes"):
            publisher.publish(flood.movement("lanes", 0, 2, priority="CRITICAL"))
        with pytest.raises(ValidationError, match="record 1: envelope.priority"):
            publisher.publish_all(
                [
                    flood.movement("lanes", 1, n, priority=p)
                    for n, p in ((1, "CRITICAL"), (2, "ROUTINE"))
                ]
            )
        stat = [
            flood.movement("stat", 2, n, priority="CRITICAL", reason="emit") for n in range(1, 31)
        ]
        publisher.publish_all(stat)
    assert Runner(settings, [keyed_sums()], until_idle=1.5, signals=False).run() == 0
    applied = sorted(((k, n) for k, n, _ in flood.effects(settings)), key=lambda kn: kn[0])
    assert applied == [("K0000", 1)] + [("K0002", n) for n in range(1, 31)]  # per key, in order
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT DISTINCT topic, priority FROM outbox WHERE event_type = 'StockoutRisk'"
        ).fetchall()
        lanes = conn.execute(
            "SELECT DISTINCT topic FROM processed_events WHERE convert_from(key, 'UTF8')"
            " LIKE 'K0002@%'"
        ).fetchall()
    catalog = EventCatalog.from_settings(settings)
    assert rows == [(catalog.topics.topic_for("StockoutRisk", "CRITICAL").name, "CRITICAL")]
    assert lanes == [(catalog.topics.topic_for("StockMovement", "CRITICAL").name,)]
