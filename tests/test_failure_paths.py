"""The runtime's failure paths on the real broker and database (issue: nothing lost, nothing
doubled, nothing wedged): a stop during a retry, records a foreign producer can write, the
dead-letter budget, SIGTERM with a batch in flight, crashes at chosen protocol points."""

from __future__ import annotations

import os
import random
import string
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from supplybus.adapters.kafka import make_producer
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.inventory.balances import processor as stock_balances
from supplybus.consumers.runtime import hold
from supplybus.consumers.runtime.budget import DeadLetterBudget
from supplybus.consumers.runtime.processor import Event, Record
from supplybus.consumers.runtime.runner import Runner
from supplybus.errors import DeadLetterBudgetExhausted, TransientError
from supplybus.events.catalog import EventCatalog
from supplybus.events.samples import sample_record
from supplybus.ops import embedded
from supplybus.ops.topic_admin import apply_private
from tests import flood
from tests.helpers import wait_for
from tests.processors import handle as keyed_handle
from tests.processors import keyed_sums
from tests.workers import Worker, WorkerFactory, fresh_group


def _committed(settings: Settings, processor: str, topic: str, partitions: int = 3) -> int:
    """Records committed by a processor's routine group on ``topic`` (sum of offsets)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"{settings.group_prefix}.{processor}",
        }
    )
    try:
        found = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
    finally:
        consumer.close()
    return sum(max(0, tp.offset) for tp in found)


def _topic(settings: Settings) -> str:
    return EventCatalog.from_settings(settings).topics.topic_for("StockMovement").name


def _rows(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    with connect(settings) as conn:
        return conn.execute(sql).fetchall()


class _DownAfterFirstBatch:
    """A handler whose database is 'down' (TransientError) from the second batch on, for as
    long as ``down`` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.down = threading.Event()
        self.failing = threading.Event()

    def after_failing(self, seconds: float, then: Callable[[], None]) -> threading.Thread:
        """A thread that calls ``then`` once the database has been 'down' for ``seconds``."""

        def wait_then() -> None:
            self.failing.wait(60)
            time.sleep(seconds)
            then()

        thread = threading.Thread(target=wait_then, daemon=True)
        thread.start()
        return thread

    def __call__(self, events: Sequence[Event], conn: psycopg.Connection) -> list[Record]:
        self.calls += 1
        if self.calls == 2:
            self.down.set()
        if self.down.is_set():
            self.failing.set()
            raise TransientError("database blip")
        return keyed_handle(events, conn)


def test_a_stop_during_a_retry_commits_nothing_after_the_abandoned_batch(
    isolated: Settings,
) -> None:
    settings = fresh_group(isolated)
    flood.publish(settings, flood.load("stopretry", keys=4, per_key=100))
    handler = _DownAfterFirstBatch()
    processor = replace(keyed_sums(), handle=handler, batch_size=50)
    runner = Runner(settings, [processor], until_idle=1.0, signals=False)
    stopper = handler.after_failing(2.5, runner.stop.set)
    code = runner.run()  # --until-idle must not call a retrying lane idle: only the stop ends it
    stopper.join()
    assert code == 3, "a run that stopped with work unapplied exits 3"
    applied = flood.count_effects(settings)
    assert 0 < applied < 400
    assert _committed(settings, processor.name, _topic(settings)) == applied, (
        "offsets were committed past the abandoned batch"
    )
    assert runner.metrics.unapplied.labels(processor.name, "routine")._value.get() > 0

    again = Runner(settings, [keyed_sums()], until_idle=1.5, signals=False)
    assert again.run() == 0
    flood.check_exactly_once(settings, keys=4, per_key=100)


def test_until_idle_waits_for_a_retrying_lane(isolated: Settings) -> None:
    settings = fresh_group(isolated)
    flood.publish(settings, flood.load("retryidle", keys=4, per_key=50))
    handler = _DownAfterFirstBatch()
    handler.after_failing(3.0, handler.down.clear)
    processor = replace(keyed_sums(), handle=handler, batch_size=50)
    runner = Runner(settings, [processor], until_idle=1.0, signals=False)
    assert runner.run() == 0
    assert runner.metrics.retries.labels(processor.name)._value.get() >= 1
    flood.check_exactly_once(settings, keys=4, per_key=50)


def random_text(n: int) -> str:
    """Text that PostgreSQL cannot compress below its index row limit."""
    return "".join(random.Random(n).choices(string.ascii_letters, k=n))


def _produce(settings: Settings, topic: str, records: list[tuple[bytes | None, Any]]) -> None:
    producer = make_producer(settings)
    for key, (value, headers) in records:
        producer.produce(topic, value, key, partition=0, headers=headers)
    assert producer.flush(15) == 0


def test_every_record_a_foreign_producer_writes_ends_applied_or_dead_lettered(
    isolated: Settings,
) -> None:
    settings = fresh_group(isolated)
    catalog = EventCatalog.from_settings(settings)
    topic = _topic(settings)
    good = flood.load("foreign", keys=1, per_key=12)

    def bad(n: int, **changes: Any) -> bytes:
        return catalog.codec.encode(flood.with_fields(flood.movement("bad", 9, n), **changes))

    requisition = catalog.codec.encode(sample_record(catalog.store.latest("RequisitionSubmitted")))
    in_cases = good[0]["quantity"]["value"]
    poison: list[tuple[bytes | None, Any]] = [
        (bad(1, quantity__value=-7 * in_cases), [("x-null", None)]),  # domain check + null header
        (bad(2, quantity__uom="BOGUS"), [(b"\xff\xfe".decode("latin-1"), b"\xff")]),
        (bad(3, envelope__event_id="not-a-uuid"), []),
        (bad(4, item_id=random_text(9000)), []),  # valid, but too large for the balance index
        (bad(5, quantity__uom="CS", item_id="K0000"), []),  # K0000's balance is kept in EA
        (b"\xc3\x01not-avro", None),
        (requisition, []),  # a type this topic does not carry
    ]
    records: list[tuple[bytes | None, Any]] = []
    for i, record in enumerate(good):
        prepared = catalog.prepare(record)
        records.append((prepared.key, (prepared.value, prepared.headers)))
        if i and i <= len(poison):
            value, headers = poison[i - 1]
            key = b"K0000@LOC-1" if i != 4 else b"k" * 9000
            records.append((key, (value, headers)))
    # the CS movement must hit the balance of the good K0000 movements: same item and place
    _produce(settings, topic, records)

    _known_items(settings, "K0000")  # in EA only: stock-balances converts through the master
    # every record on its own: not held behind an earlier dead letter of its key (hold_key)
    judged = replace(stock_balances, on_dead_letter="continue")
    runner = Runner(settings, [judged], until_idle=1.5, signals=False)
    assert runner.run() == 0, [lane.error for lane in runner.lanes]
    dead = _rows(settings, "SELECT error_code, message, value FROM dead_letters ORDER BY id")
    assert len(dead) == len(poison), dead
    codes = [d[0] for d in dead]
    assert codes.count("VALIDATION") == 3 and "DECODE" in codes and "CONTRACT" in codes
    assert any("item K0000 has no unit 'CS'" in d[1] for d in dead)
    assert sorted(d[2] for d in dead) == sorted(p[0] or b"" for p in poison)  # bytes kept
    balance = _rows(settings, "SELECT on_hand, uom FROM stock_balances WHERE item_id='K0000'")
    assert balance == [(sum(r["quantity"]["value"] for r in good), "EA")]
    dlq = _rows(settings, "SELECT count(*) FROM outbox WHERE topic LIKE '%.dlq'")
    assert dlq == [(len(poison),)]


def _known_items(settings: Settings, *item_ids: str) -> None:
    """Items in the item master's read model, stocked in EA with no other unit."""
    with connect(settings) as conn:
        for item in item_ids:
            conn.execute(
                "INSERT INTO items (item_id, gtin, description, category, base_uom,"
                " lot_controlled, orderable, occurred_at, event_id)"
                " VALUES (%s, '00000000000000', 'test', 'MED_SURG', 'EA', false, true, now(),"
                " gen_random_uuid())",
                (item,),
            )
            conn.execute("INSERT INTO item_units VALUES (%s, 'EA', 1)", (item,))
        conn.commit()


def test_the_dead_letter_budget_halts_a_lane_and_a_raised_budget_resumes_it(
    isolated: Settings,
) -> None:
    settings = fresh_group(isolated)
    topic = _topic(settings)
    _produce(settings, topic, [(b"k", (b"\xc3\x01bad" + bytes([n]), [])) for n in range(6)])
    runner = Runner(settings, [stock_balances], until_idle=1.5, signals=False)
    assert runner.run() == 1
    assert any(isinstance(lane.error, DeadLetterBudgetExhausted) for lane in runner.lanes)
    halted = runner.metrics.lane_halted.labels("stock-balances", "DEAD_LETTER_BUDGET")
    assert halted._value.get() == 1
    assert _rows(settings, "SELECT count(*) FROM dead_letters") == [(0,)]
    assert _committed(settings, "stock-balances", topic) == 0

    raised = replace(stock_balances, dead_letter_budget=DeadLetterBudget(max_consecutive=10))
    assert Runner(settings, [raised], until_idle=1.5, signals=False).run() == 0
    assert _rows(settings, "SELECT count(*) FROM dead_letters") == [(6,)]
    assert _committed(settings, "stock-balances", topic) == 6


def _busy_worker(
    settings: Settings, workers: WorkerFactory, tmp_path: Path, seconds_per_batch: float
) -> Worker:
    """`supplybus run tests.processors:slow_sums`, returned once a batch is in its handler."""
    mark = tmp_path / "in-flight"
    worker = workers(
        settings,
        "slow",
        args=("tests.processors:slow_sums",),
        env={"SUPPLYBUS_TEST_MARK": str(mark), "SUPPLYBUS_TEST_SLEEP": str(seconds_per_batch)},
    )
    worker.start()
    wait_for(mark.exists, timeout=60, what="a batch in flight")
    return worker


def test_sigterm_with_a_batch_in_flight_finishes_it_and_exits(
    isolated: Settings, workers: WorkerFactory, tmp_path: Path
) -> None:
    settings = fresh_group(isolated)
    flood.publish(settings, flood.load("sigterm", keys=4, per_key=100))
    worker = _busy_worker(settings, workers, tmp_path, seconds_per_batch=3)
    assert flood.count_effects(settings) == 0  # the first batch is in the handler, uncommitted
    assert worker.stop() == 0, worker.output()
    applied = flood.count_effects(settings)
    assert applied > 0, "the batch in hand was not finished"
    assert _committed(settings, "slow-sums", _topic(settings)) == applied


def test_crash_after_the_database_commit_redelivers_one_batch_that_the_ledger_skips(
    isolated: Settings, workers: WorkerFactory
) -> None:
    settings = fresh_group(isolated)
    flood.publish(settings, flood.load("crashpoint", keys=4, per_key=100))
    worker = workers(settings, "crash", env={"SUPPLYBUS_CRASH_AT": "after-db-commit"})
    worker.start()
    assert worker.wait(60) == 137, worker.output()
    first = flood.count_effects(settings)
    assert first > 0 and _committed(settings, "keyed-sums", _topic(settings)) == 0
    runner = Runner(settings, [keyed_sums()], until_idle=1.5, signals=False)
    assert runner.run() == 0
    assert sum(lane.stats.duplicates for lane in runner.lanes) == first  # predicted exactly
    flood.check_exactly_once(settings, keys=4, per_key=100)


def test_crash_in_the_middle_of_a_bisection_commits_nothing_and_loses_nothing(
    isolated: Settings, workers: WorkerFactory
) -> None:
    settings = fresh_group(isolated)
    records = flood.load("bisect", keys=4, per_key=50)
    records[37]["reason"] = "reject"
    flood.publish(settings, records)
    worker = workers(settings, "crash", env={"SUPPLYBUS_CRASH_AT": "mid-bisection"})
    worker.start()
    assert worker.wait(60) == 137, worker.output()
    runner = Runner(settings, [keyed_sums()], until_idle=1.5, signals=False)
    assert runner.run() == 0
    assert _rows(settings, "SELECT count(*), max(attempts) FROM dead_letters") == [(1, 1)]
    with connect(settings) as conn:  # the poison is skipped: its key's held events follow
        for (dead_letter_id,) in conn.execute("SELECT dead_letter_id::text FROM dead_letters"):
            hold.resolve(conn, dead_letter_id)
        conn.commit()
    assert Runner(settings, [keyed_sums()], until_idle=1.5, signals=False).run() == 0
    poisoned = (records[37]["item_id"], int(records[37]["reference_id"]))
    flood.check_exactly_once(settings, keys=4, per_key=50, skip={poisoned})


def test_until_idle_with_no_partitions_is_not_idle(
    isolated: Settings, workers: WorkerFactory, tmp_path: Path
) -> None:
    """A newcomer to a group whose partitions another member holds (busy on a long batch) must
    not call its empty assignment idle and exit 0 having applied nothing."""
    from tests.processors import slow_sums

    settings = fresh_group(isolated)
    flood.publish(settings, flood.load("holder", keys=4, per_key=100))
    _busy_worker(settings, workers, tmp_path, seconds_per_batch=30)
    newcomer = Runner(
        settings, [slow_sums()], until_idle=1.0, assignment_timeout=8.0, signals=False
    )
    started = time.monotonic()
    assert newcomer.run() == 1
    assert time.monotonic() - started >= 8.0
    assert newcomer.unassigned, "the run must name the groups that held no partitions"
    assert sum(lane.stats.applied for lane in newcomer.lanes) == 0


def test_a_stop_during_a_database_outage_exits_3_and_loses_nothing(
    isolated: Settings, services_home: Path
) -> None:
    if os.environ.get("DATABASE_URL"):
        pytest.skip("stops the embedded PostgreSQL; DATABASE_URL names an external one")
    settings = fresh_group(isolated)
    records = flood.load("outstop", keys=4, per_key=500)
    publisher = threading.Thread(
        target=flood.publish, args=(settings, records), kwargs={"per_second": 400}, daemon=True
    )
    publisher.start()
    processor = replace(keyed_sums(), batch_size=50)
    runner = Runner(settings, [processor], signals=False)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(runner.run()), daemon=True)
    thread.start()
    wait_for(lambda: flood.count_effects(settings) >= 200, timeout=60, what="progress")
    embedded.stop_postgres(services_home)
    try:
        retries = runner.metrics.retries.labels(processor.name)
        wait_for(lambda: retries._value.get() >= 1, timeout=30, what="a retry on the outage")
        runner.stop.set()  # SIGTERM while the database is down
        thread.join(20)
    finally:
        embedded.start_postgres(services_home)
    assert codes == [3], "a stop with a batch unapplied exits 3"
    applied = flood.count_effects(settings)
    assert _committed(settings, processor.name, _topic(settings)) == applied
    publisher.join(30)
    assert Runner(settings, [keyed_sums()], until_idle=1.5, signals=False).run() == 0
    flood.check_exactly_once(settings, keys=4, per_key=500)


def test_a_broker_reset_gives_each_bad_record_its_own_dead_letter(
    migrated: Settings, tmp_path: Path
) -> None:
    """Tansu keeps nothing across a restart: offsets start at 0 again. A new bad record at a
    reused offset is a new dead letter (its own bytes, its own DLQ record), never merged."""
    port = embedded.free_port()
    (tmp_path / "broker").mkdir()
    broker = embedded.start_broker(tmp_path / "broker", port)
    try:
        private = fresh_group(replace(migrated, kafka_bootstrap_servers=f"127.0.0.1:{port}"))
        private = apply_private(private, tmp_path, "reset.")
        _produce(private, _topic(private), [(b"k", (b"\xc3\x01first", []))])
        assert Runner(private, [stock_balances], until_idle=1.5, signals=False).run() == 0
        embedded.stop_process(broker.pid)
        broker = embedded.start_broker(tmp_path / "broker", port)  # empty: a reset
        private = apply_private(private, tmp_path, "")
        _produce(private, _topic(private), [(b"k", (b"\xc3\x01second", []))])
        assert Runner(private, [stock_balances], until_idle=1.5, signals=False).run() == 0
    finally:
        embedded.stop_process(broker.pid)
    dead = _rows(private, 'SELECT "offset", value, attempts FROM dead_letters ORDER BY id')
    assert dead == [(0, b"\xc3\x01first", 1), (0, b"\xc3\x01second", 1)]
    dlq = _rows(private, "SELECT value FROM outbox WHERE topic LIKE '%.dlq' ORDER BY id")
    assert dlq == [(b"\xc3\x01first",), (b"\xc3\x01second",)]
