"""A processor's stored identity, start position and explicit rename (ADR 0007), on the real
broker and database: a new processor starting at "latest" skips the retained history; a rename
carries offsets, ledger, dead letters and held events over so nothing is applied twice; the
runner refuses what looks like an accidental rename."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_INVALID, TopicPartition
from psycopg.rows import dict_row

from supplybus.adapters.kafka import is_tansu, make_admin
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.runtime import identity
from supplybus.consumers.runtime.processor import Processor
from supplybus.consumers.runtime.runner import Runner
from supplybus.consumers.runtime.start import check_start, choose
from supplybus.errors import ConfigError
from supplybus.ops.cli.processors import committed, copy_offsets
from tests import flood
from tests.helpers import cli_env, run_cli, wait_for
from tests.processors import keyed_sums
from tests.workers import fresh_group


def sums(name: str, **changes: Any) -> Processor:
    return replace(keyed_sums(), name=name, **changes)


def _run(settings: Settings, processors: list[Processor], **kw: Any) -> Runner:
    runner = Runner(settings, processors, until_idle=1.5, signals=False, **kw)
    assert runner.run() == 0, [lane.error for lane in runner.lanes]
    return runner


def _env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return cli_env(settings, tmp_path / "home") | {"SUPPLYBUS_GROUP_PREFIX": settings.group_prefix}


def _one(settings: Settings, sql: str, *params: Any) -> Any:
    with connect(settings) as conn:
        row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def _offsets(settings: Settings, name: str) -> dict[str, list[tuple[str, int, int]]]:
    return {
        lane: [(tp.topic, tp.partition, tp.offset) for tp in committed(settings, group)]
        for lane, group in identity.lane_groups(settings, name).items()
    }


def _duplicate_effects(settings: Settings) -> int:
    return int(
        _one(settings, "SELECT count(*) - count(DISTINCT event_id) FROM applied_effects") or 0
    )


def test_choose_starts_only_partitions_never_committed() -> None:
    committed_ = [TopicPartition("t", 0, 42), TopicPartition("t", 1, OFFSET_INVALID)]
    assign, fresh = choose(committed_, {("t", 1): 7})
    assert [(tp.partition, tp.offset) for tp in assign] == [(0, OFFSET_INVALID), (1, 7)]
    assert [(tp.partition, tp.offset) for tp in fresh] == [(1, 7)]


def test_a_start_must_be_earliest_latest_or_an_aware_time() -> None:
    assert check_start("latest", "x") == "latest"
    with pytest.raises(ConfigError, match=r"^processor p: start: expected 'earliest', 'latest'"):
        check_start(datetime(2026, 1, 1), "processor p: start")  # naive: which zone?


def test_a_processor_starting_at_latest_skips_history_and_applies_what_follows(
    isolated: Settings,
) -> None:
    settings = fresh_group(isolated)
    flood.publish(settings, flood.load("history", keys=4, per_key=50))  # batched: Tansu's
    runner = Runner(settings, [sums("from-now", start="latest")], signals=False)  # watermark
    thread = threading.Thread(target=runner.run)  # under-reports the end of such a topic
    thread.start()
    try:
        wait_for(
            lambda: runner.lanes and all(lane.stats.partitions for lane in runner.lanes),
            timeout=60,
            what="both lanes assigned",
        )
        flood.publish(settings, flood.load("after", keys=4, per_key=25))
        wait_for(lambda: flood.count_effects(settings) >= 100, timeout=30, what="new events")
    finally:
        runner.stop.set()
        thread.join(30)
    flood.check_exactly_once(settings, keys=4, per_key=25)  # history n=26..50 would show
    assert _one(settings, "SELECT start_position FROM processors WHERE name = 'from-now'") == (
        "latest"
    )
    # the start is stored and the chosen offsets committed: a restart applies nothing more
    _run(settings, [sums("from-now")])
    assert flood.count_effects(settings) == 100


def test_the_stored_start_wins_over_a_changed_declaration(
    isolated: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = fresh_group(isolated)
    identity.register(settings, [sums("kept", start="latest")]).close()  # registered, never run
    flood.publish(settings, flood.load("before", keys=2, per_key=20))
    with caplog.at_level(logging.WARNING, logger="supplybus.runtime"):
        _run(settings, [sums("kept")])  # declares the default, earliest
    assert flood.count_effects(settings) == 0
    assert "declares start earliest but was registered with latest" in caplog.text


def test_a_start_at_a_time_is_refused_on_tansu_and_honoured_elsewhere(isolated: Settings) -> None:
    settings = fresh_group(isolated)
    flood.publish(settings, flood.load("old", keys=2, per_key=10))
    at = datetime.now(UTC)
    processor = sums("timed", start=at)
    if is_tansu(make_admin(settings)):
        with pytest.raises(ConfigError, match="ListOffsets by timestamp"):
            Runner(settings, [processor], until_idle=1.5, signals=False).run()
        assert _one(settings, "SELECT count(*) FROM processors") == 0  # nothing registered
        return
    flood.publish(settings, flood.load("new", keys=2, per_key=10))
    _run(settings, [processor])
    assert flood.count_effects(settings) == 20


def test_two_runners_starting_at_once_register_once(isolated: Settings) -> None:
    settings = fresh_group(isolated)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def register() -> None:
        barrier.wait()
        try:
            identity.register(settings, [sums("twin")]).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=register) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert _one(settings, "SELECT count(*) FROM processors WHERE name = 'twin'") == 1


def test_a_renamed_processor_in_code_is_refused_unless_it_is_new(
    isolated: Settings, tmp_path: Path
) -> None:
    settings = fresh_group(isolated)
    flood.publish(settings, flood.load("guard", keys=2, per_key=20))
    _run(settings, [sums("sums-a")])
    with pytest.raises(ConfigError, match="run `supplybus processors rename sums-a sums-b` first"):
        Runner(settings, [sums("sums-b")], until_idle=1.5, signals=False).run()
    env = _env(settings, tmp_path) | {"SUPPLYBUS_TEST_PROCESSOR": "sums-b"}
    refused = run_cli("run", "tests.processors:keyed_sums", "--until-idle", env=env)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: processor sums-b is not registered, but sums-a")
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert _one(settings, "SELECT count(*) FROM processors WHERE name = 'sums-b'") == 0
    new = run_cli(
        "run", "tests.processors:keyed_sums", "--new", "--until-idle", "--idle-seconds", "1",
        env=env,
    )  # fmt: skip
    assert new.returncode == 0, new.stderr
    assert flood.count_effects(settings) == 80  # a new processor: it applied the history too
    assert _one(settings, "SELECT start_position FROM processors WHERE name = 'sums-b'") == (
        "earliest"
    )


def test_rename_carries_offsets_ledger_dead_letters_and_holds_over(
    isolated: Settings, tmp_path: Path
) -> None:
    settings = fresh_group(isolated)
    env = _env(settings, tmp_path)
    records = flood.load("rename", keys=4, per_key=50)
    records[9]["reason"] = "reject"  # K0001's n=3: dead-lettered, holds K0001's n=4..50
    flood.publish(settings, records)
    _run(settings, [sums("sums-a")])
    applied = flood.count_effects(settings)
    assert applied == 152
    before = _offsets(settings, "sums-a")
    assert sum(o for _, _, o in before["routine"]) == 200

    done = run_cli("processors", "rename", "sums-a", "sums-b", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    assert (
        "renamed sums-a to sums-b: 152 ledger rows, 1 dead letters, 1 key holds, 47 held events"
        in done.stdout
    )
    assert _offsets(settings, "sums-b") == before
    counts = "SELECT count(*) FROM {} WHERE processor = %s"
    for table, rows in (("processed_events", 152), ("dead_letters", 1), ("held_events", 47)):
        assert _one(settings, counts.format(table), "sums-b") == rows
        assert _one(settings, counts.format(table), "sums-a") == 0

    listed = run_cli("processors", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["name"] == "sums-b" and row["renamed_from"] == "sums-a"
    assert row["consumes"] == ["StockMovement"] and row["start"] == "earliest"
    assert sum(p["offset"] for p in row["committed"]["routine"]) == 200
    table = run_cli("processors", "list", env=env)
    assert "sums-b" in table.stdout and "routine 200" in table.stdout, table.stdout

    flood.publish(settings, flood.load("renamed", keys=4, per_key=25))
    runner = _run(settings, [sums("sums-b")])
    # the new events once (K0001's wait behind its hold, which came over too), history never
    assert flood.count_effects(settings) == applied + 75
    assert _one(settings, counts.format("held_events"), "sums-b") == 47 + 25
    assert _duplicate_effects(settings) == 0
    assert sum(lane.stats.duplicates for lane in runner.lanes) == 0  # nothing re-delivered
    again = run_cli("processors", "rename", "sums-a", "sums-b", "--yes", env=env)
    assert (again.returncode, again.stdout.strip()) == (0, "sums-a is already renamed to sums-b")


def test_rename_refusals(isolated: Settings, tmp_path: Path) -> None:
    settings = fresh_group(isolated)
    env = _env(settings, tmp_path)
    flood.publish(settings, flood.load("refuse", keys=2, per_key=10))
    _run(settings, [sums("one"), sums("two")])  # started together: both are what they say
    groups = {n: f"{settings.group_prefix}.{n}" for n in ("one", "used")}
    copy_offsets(settings, groups["used"], committed(settings, groups["one"]))

    def refused(old: str, new: str) -> str:
        result = run_cli("processors", "rename", old, new, "--yes", env=env)
        assert result.returncode == 2, result.stdout + result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        return result.stderr

    assert "ghost is not a registered processor" in refused("ghost", "three")
    assert "two already exists" in refused("one", "two")
    assert "the consumer groups of used have committed offsets" in refused("one", "used")
    live = Runner(settings, [sums("one")], signals=False)
    thread = threading.Thread(target=live.run)
    thread.start()
    try:
        wait_for(lambda: live.registration is not None, timeout=30, what="the runner registered")
        assert "a runner of one is live" in refused("one", "three")
    finally:
        live.stop.set()
        thread.join(30)
    assert _one(settings, "SELECT count(*) FROM processed_events WHERE processor = 'one'") == 20


def test_an_interrupted_rename_blocks_both_names_and_finishes_when_run_again(
    isolated: Settings, tmp_path: Path
) -> None:
    settings = fresh_group(isolated)
    flood.publish(settings, flood.load("interrupted", keys=2, per_key=10))
    _run(settings, [sums("old")])
    with connect(settings, autocommit=True) as conn:  # the command died after the offsets
        identity.mark_rename(conn, "old", "new")
    old_group, new_group = (f"{settings.group_prefix}.{n}" for n in ("old", "new"))
    copy_offsets(settings, new_group, committed(settings, old_group))
    for name, says in (("old", "a rename to new was interrupted"), ("new", "the rename of old")):
        with pytest.raises(ConfigError, match=says):
            Runner(settings, [sums(name)], until_idle=1.5, signals=False).run()
    done = run_cli("processors", "rename", "old", "new", "--yes", env=_env(settings, tmp_path))
    assert done.returncode == 0, done.stderr
    with connect(settings) as conn:
        row = conn.cursor(row_factory=dict_row).execute("SELECT * FROM processors").fetchone()
    assert row is not None
    assert (row["name"], row["renamed_from"], row["renaming_to"]) == ("new", "old", None)
    _run(settings, [sums("new")])
    assert flood.count_effects(settings) == 20
