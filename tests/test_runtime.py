"""The processor runtime on the real broker and database, in-process (fast cases)."""

from __future__ import annotations

import threading

from confluent_kafka import Consumer, TopicPartition
from psycopg.rows import dict_row

from supplybus.adapters.kafka import make_producer
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.runtime import deadletter as dl
from supplybus.consumers.runtime import hold
from supplybus.consumers.runtime.processor import Processor
from supplybus.consumers.runtime.runner import Runner
from supplybus.events.catalog import EventCatalog
from tests import flood
from tests.helpers import read_all, wait_for
from tests.processors import keyed_sums
from tests.workers import fresh_group


def _run(settings: Settings, processors: list[Processor], *, relay: bool = True) -> Runner:
    runner = Runner(settings, processors, relay=relay, until_idle=1.5, signals=False)
    assert runner.run() == 0, [lane.error for lane in runner.lanes]
    return runner


def test_poison_and_invalid_events_are_dead_lettered_with_lineage(isolated: Settings) -> None:
    settings = fresh_group(isolated)
    catalog = EventCatalog.from_settings(settings)
    topic = catalog.topics.topic_for("StockMovement")
    records = flood.load("poison", keys=8, per_key=25)
    bad = next(r for r in records if r["item_id"] == "K0003" and r["reference_id"] == "7")
    bad["reason"] = "reject"
    flood.publish(settings, records[:100])
    producer = make_producer(settings)
    producer.produce(
        topic.name,
        b"\xc3\x01not-avro-at-all",
        b"K0005@LOC-1",
        headers=[("sb-correlation-id", b"poison-1")],
    )
    producer.flush(10)
    flood.publish(settings, records[100:])

    _run(settings, [keyed_sums()])

    # Per-key order: the later events of both poisoned keys are held, not applied over them;
    # every other key is complete.
    applied: dict[str, list[int]] = {}
    for key, n, _ in flood.effects(settings):
        applied.setdefault(key, []).append(n)
    assert applied["K0003"] == list(range(1, 7))
    assert applied["K0005"] == list(range(1, 13))  # published before the undecodable record
    assert all(applied[f"K{k:04d}"] == list(range(1, 26)) for k in (0, 1, 2, 4, 6, 7))
    with connect(settings) as conn:
        held = conn.execute(
            "SELECT convert_from(key, 'UTF8'), count(*) FROM held_events GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert held == [("K0003@LOC-1", 18), ("K0005@LOC-1", 13)]
    with connect(settings) as conn:
        rows = (
            conn.cursor(row_factory=dict_row)
            .execute("SELECT * FROM dead_letters ORDER BY error_class")
            .fetchall()
        )
        ledger = conn.execute("SELECT count(*) FROM processed_events").fetchone()
    assert ledger == (8 * 25 - 1 - 31,)  # neither the dead-lettered nor the held events
    assert [r["error_class"] for r in rows] == ["BusinessRuleError", "DecodeError"]
    business, poison = rows
    assert business["topic"] == poison["topic"] == topic.name
    assert business["error_code"] == "BUSINESS_RULE"
    assert "reason says reject" in business["message"]
    assert str(business["event_id"]) == bad["envelope"]["event_id"]
    assert poison["error_code"] == "DECODE" and poison["event_id"] is None
    assert bytes(poison["value"]) == b"\xc3\x01not-avro-at-all"
    assert bytes(poison["key"]) == b"K0005@LOC-1"
    assert {r["dlq_topic"] for r in rows} == {topic.dlq}
    assert {r["status"] for r in rows} == {"open"}

    dlq = read_all(settings, topic.dlq or "", 1, expect=2)
    assert len(dlq) == 2
    by_class = {dict(m.headers())[dl.H_ERROR_CLASS].decode(): m for m in dlq}
    poison_msg = by_class["DecodeError"]
    headers = dict(poison_msg.headers())
    assert poison_msg.value() == b"\xc3\x01not-avro-at-all"
    assert headers[dl.H_TOPIC].decode() == topic.name
    assert int(headers[dl.H_OFFSET]) == poison["offset"]
    assert int(headers[dl.H_PARTITION]) == poison["partition"]
    assert headers[dl.H_ID] == str(poison["dead_letter_id"]).encode()
    assert headers[dl.H_PROCESSOR] == b"keyed-sums" and headers[dl.H_ATTEMPTS] == b"1"
    assert headers[dl.H_CORRELATION] == b"poison-1"
    for name in (dl.H_TIMESTAMP, dl.H_STACK, dl.H_FIRST, dl.H_LAST, dl.H_MESSAGE, dl.H_ERROR_CODE):
        assert headers.get(name), name
    business_msg = by_class["BusinessRuleError"]
    assert catalog.codec.decode(business_msg.value()).record["reason"] == "reject"

    # The operator resolves both dead letters (skips them): the held events follow, in order.
    with connect(settings) as conn:
        for row in rows:
            hold.resolve(conn, str(row["dead_letter_id"]))
        conn.commit()
    _run(settings, [keyed_sums()])
    flood.check_exactly_once(settings, keys=8, per_key=25, skip={("K0003", 7)})

    # Re-delivery of everything (a new group starts from the beginning): nothing doubles.
    _run(fresh_group(settings), [keyed_sums()])
    flood.check_exactly_once(settings, keys=8, per_key=25, skip={("K0003", 7)})
    with connect(settings) as conn:
        attempts = conn.execute("SELECT attempts FROM dead_letters ORDER BY error_class").fetchall()
    assert attempts == [(2,), (2,)]
    assert len(read_all(settings, topic.dlq or "", 1, expect=3, timeout=3)) == 2


def test_emitted_events_are_published_once_and_resends_are_skipped(isolated: Settings) -> None:
    settings = fresh_group(isolated)
    catalog = EventCatalog.from_settings(settings)
    records = flood.load("emit", keys=5, per_key=10, reason="emit")
    flood.publish(settings, records)
    _run(settings, [keyed_sums()])
    risk = catalog.topics.topic_for("StockoutRisk")
    published = read_all(settings, risk.name, risk.partitions, expect=50)
    assert len(published) == 50
    decoded = [catalog.codec.decode(m.value()).record for m in published]
    causes = {r["envelope"]["causation_id"] for r in decoded}
    assert causes == {r["envelope"]["event_id"] for r in records}
    assert all(r["envelope"]["correlation_id"].startswith("emit-") for r in decoded)

    # Re-delivery of the inputs emits nothing new: the ledger skips them.
    _run(fresh_group(settings), [keyed_sums()])
    with connect(settings) as conn:
        assert conn.execute(
            "SELECT count(*) FROM outbox WHERE event_type = 'StockoutRisk'"
        ).fetchone() == (50,)
        # A relay crash after the broker acknowledged but before rows were marked sent:
        conn.execute("UPDATE outbox SET sent_at = NULL WHERE event_type = 'StockoutRisk'")
        conn.commit()
    _run(settings, [], relay=True)
    again = read_all(settings, risk.name, risk.partitions, expect=100)
    assert len(again) == 100  # re-sent once more ...
    ids = [catalog.codec.decode(m.value()).envelope["event_id"] for m in again]
    assert len(set(ids)) == 50  # ... with the same event ids, which downstream ledgers skip


def test_failed_dead_letter_write_commits_nothing(isolated: Settings) -> None:
    settings = fresh_group(isolated)
    catalog = EventCatalog.from_settings(settings)
    topic = catalog.topics.topic_for("StockMovement")
    flood.publish(settings, flood.load("dlqfail", keys=2, per_key=5))
    producer = make_producer(settings)
    producer.produce(topic.name, b"garbage", b"K0000@LOC-1")
    producer.flush(10)
    with connect(settings) as conn:  # the dead-letter table refuses every row
        conn.execute("ALTER TABLE dead_letters ADD CONSTRAINT refuse CHECK (false) NOT VALID")
        conn.commit()
    runner = Runner(settings, [keyed_sums()], until_idle=1.5, signals=False)
    assert runner.run() == 1  # the lane stops instead of dropping the record
    assert flood.count_effects(settings) == 0  # the whole batch was rolled back
    group = f"{settings.group_prefix}.keyed-sums"
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": group})
    committed = consumer.committed(
        [TopicPartition(topic.name, p) for p in range(topic.partitions)], timeout=10
    )
    consumer.close()
    assert all(tp.offset < 0 for tp in committed), committed  # no offset was committed


def test_metrics_are_served(isolated: Settings) -> None:
    import urllib.request

    from supplybus.metrics import Metrics
    from supplybus.ops.embedded import free_port

    settings = fresh_group(isolated)
    flood.publish(settings, flood.load("metrics", keys=3, per_key=10))
    metrics = Metrics()
    port = free_port()
    metrics.serve(port)
    runner = Runner(
        settings, [keyed_sums()], relay=True, until_idle=1.5, signals=False, metrics=metrics
    )
    assert runner.run() == 0, [lane.error for lane in runner.lanes]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    topic = EventCatalog.from_settings(settings).topics.topic_for("StockMovement").name
    assert (
        f'supplybus_events_processed_total{{event_type="StockMovement",processor="keyed-sums",'
        f'topic="{topic}"}} 30.0'
    ) in text
    for name in (
        "supplybus_batch_duration_seconds_count",
        "supplybus_end_to_end_latency_seconds",
        "supplybus_outbox_backlog",
        "supplybus_consumer_lag",
        "supplybus_lanes_unapplied_records",
        "supplybus_outbox_parked",
    ):
        assert name in text, name


def test_a_second_relay_stands_by_and_takes_over(isolated: Settings) -> None:
    from supplybus.producers.relay import OutboxRelay

    settings = fresh_group(isolated)
    flood.publish(settings, flood.load("relay", keys=3, per_key=10, reason="emit"))
    _run(settings, [keyed_sums()], relay=False)  # 30 emitted events wait in the outbox
    first_stop, second_stop = threading.Event(), threading.Event()
    first, second = OutboxRelay(settings), OutboxRelay(settings)
    t1 = threading.Thread(target=first.run, args=(first_stop,))
    t1.start()
    wait_for(lambda: first.stats.published == 30, timeout=20, what="the first relay publishing")
    t2 = threading.Thread(target=second.run, args=(second_stop,))
    t2.start()
    wait_for(lambda: second.stats.standby >= 2, timeout=20, what="the second relay standing by")
    assert second.stats.rounds == 0  # it never published while the first held the lock
    with connect(settings) as conn:  # new work arrives while the first relay goes away
        conn.execute("UPDATE outbox SET sent_at = NULL WHERE id IN (SELECT min(id) FROM outbox)")
        first_stop.set()
        t1.join(10)
        conn.commit()
    wait_for(lambda: second.stats.published >= 1, timeout=20, what="the second relay taking over")
    second_stop.set()
    t2.join(10)
    assert second.stats.published == 1
    assert first.error is None and second.error is None
