"""Retention (`supplybus db prune`, the scheduled prune) on the real database (ADR 0008)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
import yaml
from confluent_kafka import Message

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.runtime import retention
from supplybus.consumers.runtime.apply import BatchApplier
from supplybus.consumers.runtime.processor import Event
from supplybus.consumers.runtime.retention import Horizons, ScheduledPrune
from supplybus.consumers.runtime.runner import Runner
from supplybus.errors import ConfigError
from supplybus.events.catalog import EventCatalog
from tests import flood
from tests.helpers import cli_env, run_cli, wait_for
from tests.processors import keyed_sums, setup

TOPIC = "inventory.stock-movements.v1"
COMPACTED = "masterdata.items.v1"
JUST_INSIDE = "44 days 23 hours"  # the default ledger horizon is 45 days
JUST_PAST = "45 days 1 hour"


def _ledger(conn: psycopg.Connection, age: str, *, processor: str = "p", topic: str = TOPIC) -> str:
    event_id = str(uuid.uuid4())
    conn.execute(
        'INSERT INTO processed_events (processor, event_id, topic, partition, "offset", '
        "processed_at) VALUES (%s, %s, %s, 0, 0, now() - %s::interval)",
        (processor, event_id, topic, age),
    )
    return event_id


def _outbox(conn: psycopg.Connection, *, sent: str | None, parked: str | None = None) -> int:
    row = conn.execute(
        "INSERT INTO outbox (topic, source, created_at, sent_at, parked_at) VALUES "
        "('t', 's', now() - interval '200 days', now() - %s::interval, now() - %s::interval) "
        "RETURNING id",
        (sent, parked),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _dead_letter(conn: psycopg.Connection, status: str, resolved: str | None = None) -> int:
    row = conn.execute(
        'INSERT INTO dead_letters (processor, topic, partition, "offset", error_class, '
        "error_code, message, stack_digest, dlq_topic, record_digest, dead_letter_id, "
        "first_failed_at, last_failed_at) VALUES ('p', 't', 0, 0, 'E', 'E', 'm', 'd', 't.dlq', "
        "%s, %s, now() - interval '300 days', now() - interval '300 days') RETURNING id",
        (uuid.uuid4().hex, uuid.uuid4()),
    ).fetchone()
    assert row is not None
    conn.execute(
        "UPDATE dead_letters SET status = %s, resolved_at = now() - %s::interval WHERE id = %s",
        (status, resolved, row[0]),
    )
    return int(row[0])


def _world(settings: Settings) -> tuple[dict[str, set[object]], dict[str, int]]:
    """Rows on both sides of each horizon; returns (rows that must stay, rows that must go)."""
    with connect(settings) as conn:
        stay_ledger = {_ledger(conn, "1 day"), _ledger(conn, JUST_INSIDE)}
        stay_ledger.add(_ledger(conn, "400 days", topic=COMPACTED))  # kept forever
        for _ in range(5):  # one timestamp shared by more rows than a chunk (ties)
            conn.execute(
                'INSERT INTO processed_events (processor, event_id, topic, partition, "offset", '
                "processed_at) VALUES ('q', gen_random_uuid(), %s, 0, 0, "
                "date_trunc('day', now()) - interval '60 days')",
                (TOPIC,),
            )
        for age in (JUST_PAST, "100 days"):
            _ledger(conn, age)
        stay_outbox = {
            _outbox(conn, sent="6 days 23 hours"),
            _outbox(conn, sent=None),  # unsent, created 200 days ago
            _outbox(conn, sent=None, parked="100 days"),
        }
        _outbox(conn, sent="7 days 1 hour")
        stay_dead = {
            _dead_letter(conn, "open"),
            _dead_letter(conn, "parked"),
            _dead_letter(conn, "resolved", "89 days"),
        }
        _dead_letter(conn, "resolved", "90 days 1 hour")
        _dead_letter(conn, "replayed", "200 days")
        conn.commit()
    stay = {"processed_events": stay_ledger, "outbox": stay_outbox, "dead_letters": stay_dead}
    return stay, {"processed_events": 7, "outbox": 1, "dead_letters": 2}


def _remaining(settings: Settings) -> dict[str, set[object]]:
    with connect(settings) as conn:
        return {
            "processed_events": {
                str(r[0]) for r in conn.execute("SELECT event_id FROM processed_events")
            },
            "outbox": {r[0] for r in conn.execute("SELECT id FROM outbox")},
            "dead_letters": {r[0] for r in conn.execute("SELECT id FROM dead_letters")},
        }


def test_prune_deletes_exactly_what_is_past_each_horizon(migrated: Settings) -> None:
    stay, gone = _world(migrated)
    chunks: list[tuple[str, int]] = []
    with connect(migrated, autocommit=True) as conn:
        report = retention.prune(
            conn, Horizons.from_settings(migrated), chunk=2, progress=lambda *a: chunks.append(a)
        )
    assert report.deleted == gone
    assert _remaining(migrated) == stay
    assert ("processed_events", 7) in chunks and len(chunks) >= 4  # chunks of 2, with progress


def test_dry_run_counts_and_changes_nothing_then_prune_deletes_those(
    migrated: Settings, tmp_path: Path
) -> None:
    stay, gone = _world(migrated)
    before = _remaining(migrated)
    env = {**cli_env(migrated, tmp_path), "SUPPLYBUS_PRUNE_CHUNK": "3"}
    dry = run_cli("db", "prune", "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    counted = json.loads(dry.stdout)
    assert counted["dry_run"] is True
    assert {t: v["rows"] for t, v in counted["tables"].items()} == gone
    assert _remaining(migrated) == before

    done = run_cli("db", "prune", env=env)
    assert done.returncode == 0, done.stderr
    assert "processed_events" in done.stdout and "deleted" in done.stdout
    assert _remaining(migrated) == stay


def _events(run: str, n: int) -> list[Event]:
    catalog = EventCatalog.from_settings(Settings())
    out = []
    for i in range(n):
        record = flood.movement(run, i % 2, i + 1)
        prepared = catalog.prepare(record, check="none")
        msg = Message(
            topic=TOPIC, partition=0, offset=i, key=prepared.key, value=prepared.value,
            headers=prepared.headers, timestamp=(1, 1_700_000_000_000 + i),
        )  # fmt: skip
        out.append(Event("StockMovement", record, TOPIC, 0, i, msg))
    return out


def test_a_redelivery_just_inside_the_horizon_is_still_a_duplicate(migrated: Settings) -> None:
    processor = keyed_sums()
    with connect(migrated) as conn:
        setup(conn)
        applier = BatchApplier(processor, EventCatalog.from_settings(migrated), lambda t: t)
        events = _events("retention", 6)
        assert len(applier.apply(conn, events, []).applied) == 6
        conn.execute(
            "UPDATE processed_events SET processed_at = now() - %s::interval", (JUST_INSIDE,)
        )
        old = _ledger(conn, JUST_PAST, processor=processor.name)  # proves the prune ran
        conn.commit()
    with connect(migrated, autocommit=True) as conn:
        report = retention.prune(conn, Horizons.from_settings(migrated), chunk=4)
    assert report.deleted["processed_events"] == 1
    assert old not in _remaining(migrated)["processed_events"]
    with connect(migrated) as conn:
        again = applier.apply(conn, events, [])
        effects = conn.execute("SELECT count(*) FROM applied_effects").fetchone()
    assert (again.applied, again.duplicates) == ([], 6)
    assert effects == (6,)


def _catalog(tmp_path: Path, **topics: dict[str, str]) -> Path:
    doc = {
        "defaults": {"partitions": 1, "configs": {"retention.ms": "604800000"}},
        "topics": [
            {"name": name, "key": "{item_id}", "events": [event], "configs": configs}
            for (name, configs), event in zip(
                topics.items(), ("StockMovement", "ItemUpserted", "StockoutRisk"), strict=False
            )
        ],
    }
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_ledger_horizon_covers_every_topic_retention(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"shorter than the retention of topic \S+\.dlq "):
        Horizons.from_settings(Settings(ledger_retention_days=29))  # DLQs keep 30 days
    long = _catalog(tmp_path, **{"a.long.v1": {"retention.ms": str(50 * 86_400_000)}})
    with pytest.raises(ConfigError, match=r"topic a\.long\.v1 .*expected at least 50$"):
        Horizons.from_settings(Settings(topic_catalog=long))
    assert Horizons.from_settings(Settings(topic_catalog=long, ledger_retention_days=50))

    forever = _catalog(
        tmp_path,
        **{
            "a.kept.v1": {"retention.ms": "-1"},
            "a.compact.v1": {"cleanup.policy": "compact"},
            "a.both.v1": {"cleanup.policy": "compact,delete", "retention.ms": "86400000"},
        },
    )
    assert Horizons.from_settings(Settings(topic_catalog=forever)).forever_topics == (
        "a.kept.v1",
        "a.compact.v1",
    )
    bad = _catalog(tmp_path, **{"a.bad.v1": {"retention.ms": "a week"}})
    with pytest.raises(ConfigError, match=r"topics\.yaml: topic a\.bad\.v1: retention\.ms"):
        Horizons.from_settings(Settings(topic_catalog=bad))


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "SUPPLYBUS_LEDGER_RETENTION_DAYS",
            "3",
            "error: SUPPLYBUS_LEDGER_RETENTION_DAYS: 3 days is shorter than the retention of "
            "topic ",
        ),
        ("SUPPLYBUS_OUTBOX_RETENTION_DAYS", "0", "expected a whole number >= 1, got 0"),
        ("SUPPLYBUS_PRUNE_CHUNK", "many", "error: SUPPLYBUS_PRUNE_CHUNK: expected int"),
    ],
)
def test_cli_refuses_bad_horizons_in_one_line(
    settings: Settings, tmp_path: Path, variable: str, value: str, message: str
) -> None:
    result = run_cli("db", "prune", env={**cli_env(settings, tmp_path), variable: value})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_cli_refuses_an_unmigrated_schema_in_one_line(settings: Settings, tmp_path: Path) -> None:
    result = run_cli("db", "prune", "--dry-run", env=cli_env(settings, tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().endswith("run `supplybus db migrate` first"), result.stderr
    assert result.stderr.count("\n") == 1


def test_a_resolved_dead_letter_gets_its_resolution_time(migrated: Settings) -> None:
    with connect(migrated) as conn:
        dead = _dead_letter(conn, "open")
        resolved_at = "SELECT resolved_at IS NOT NULL FROM dead_letters WHERE id = %s"
        conn.execute("UPDATE dead_letters SET status = 'replayed' WHERE id = %s", (dead,))
        assert conn.execute(resolved_at, (dead,)).fetchone() == (True,)
        conn.execute("UPDATE dead_letters SET status = 'open' WHERE id = %s", (dead,))
        assert conn.execute(resolved_at, (dead,)).fetchone() == (False,)


def test_one_prune_at_a_time_per_schema(migrated: Settings) -> None:
    with connect(migrated) as conn:
        old = _ledger(conn, "100 days")
        conn.commit()
    pruner = ScheduledPrune(migrated, threading.Event())
    with connect(migrated, autocommit=True) as other:
        assert retention.lock(other, migrated.db_schema)  # another runner is pruning
        assert pruner.prune_once() is None
        assert old in _remaining(migrated)["processed_events"]
    report = pruner.prune_once()  # the other session ended: its lock went with it
    assert report is not None and report.deleted["processed_events"] == 1


def test_the_cli_waits_for_a_prune_running_elsewhere(migrated: Settings, tmp_path: Path) -> None:
    with connect(migrated) as conn:
        old = _ledger(conn, "100 days")
        conn.commit()
    env = {**os.environ, **cli_env(migrated, tmp_path)}
    with connect(migrated, autocommit=True) as other:
        assert retention.lock(other, migrated.db_schema)
        cli = subprocess.Popen(
            [sys.executable, "-m", "supplybus.ops.cli", "db", "prune", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert cli.stderr is not None
        assert "waiting for the prune running on schema" in cli.stderr.readline()
        assert cli.poll() is None and old in _remaining(migrated)["processed_events"]
    stdout, _ = cli.communicate(timeout=60)  # the other session ended: its lock went with it
    assert cli.returncode == 0
    assert json.loads(stdout)["tables"]["processed_events"]["rows"] == 1


def _run_in_thread(settings: Settings) -> tuple[Runner, threading.Thread]:
    runner = Runner(settings, [], signals=False, switch_interval=None)
    thread = threading.Thread(target=runner.run, name="runner")
    thread.start()
    return runner, thread


def test_the_runner_prunes_on_its_schedule(migrated: Settings) -> None:
    with connect(migrated) as conn:
        old = _ledger(conn, "100 days")
        conn.commit()
    runner, thread = _run_in_thread(replace(migrated, prune_interval_s=0.2))
    try:
        wait_for(
            lambda: old not in _remaining(migrated)["processed_events"],
            timeout=10,
            what="the scheduled prune",
        )
        with connect(migrated) as conn:  # and again at the next interval
            again = _ledger(conn, "100 days")
            conn.commit()
        wait_for(
            lambda: again not in _remaining(migrated)["processed_events"],
            timeout=10,
            what="the second scheduled prune",
        )
    finally:
        runner.stop.set()
        thread.join(15)
    assert not thread.is_alive()
    assert not [t for t in threading.enumerate() if t.name == "prune"]


def test_a_prune_interval_of_zero_turns_the_schedule_off(migrated: Settings) -> None:
    with connect(migrated) as conn:
        old = _ledger(conn, "100 days")
        conn.commit()
    runner, thread = _run_in_thread(replace(migrated, prune_interval_s=0))
    try:
        runner.stop.wait(1.0)  # a scheduled prune would run at once
        assert not [t for t in threading.enumerate() if t.name == "prune"]
    finally:
        runner.stop.set()
        thread.join(15)
    assert old in _remaining(migrated)["processed_events"]


def test_ledger_rows_of_a_held_key_stay(migrated: Settings) -> None:
    """Migration 0007: ``held_events`` (events held behind a dead letter) and ``key_holds``
    (the keys waiting on one, held events or not yet) record the key, as the ledger does."""
    with connect(migrated) as conn:
        rows = {}
        for processor, key in (("p", b"K1"), ("p", b"K2"), ("p", b"K3"), ("r", b"K1")):
            rows[processor, key] = _ledger(conn, "100 days", processor=processor)
            conn.execute(
                "UPDATE processed_events SET key = %s WHERE event_id = %s",
                (key, rows[processor, key]),
            )
        conn.execute(
            "INSERT INTO held_events (processor, key, event_id, event_type, topic, partition, "
            "\"offset\", record_timestamp) VALUES ('p', 'K1', gen_random_uuid(), 'StockMovement', "
            "%s, 0, 9, 0)",
            (TOPIC,),
        )
        conn.execute(
            "INSERT INTO key_holds (processor, key, dead_letter_id) "
            "VALUES ('p', 'K3', gen_random_uuid())"
        )
        conn.commit()
    with connect(migrated, autocommit=True) as conn:
        report = retention.prune(conn, Horizons.from_settings(migrated), chunk=10)
    assert report.deleted["processed_events"] == 2
    assert _remaining(migrated)["processed_events"] == {rows["p", b"K1"], rows["p", b"K3"]}
