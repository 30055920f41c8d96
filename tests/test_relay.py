"""The outbox relay on the real broker and database: stored headers published as they are,
rows that can never be published parked while the rows behind them go out once each."""

from __future__ import annotations

import shutil
import threading
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from confluent_kafka import Message

from supplybus.adapters.kafka import make_admin
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.runtime import deadletter as dl
from supplybus.errors import BusinessRuleError
from supplybus.events.catalog import EventCatalog, Outgoing
from supplybus.ops import embedded, migrate
from supplybus.producers import outbox
from supplybus.producers.relay import WITHHELD, OutboxRelay
from tests import flood
from tests.helpers import cli_env, drain_relay, read_all, run_cli, wait_for

SMALL = {"message.max.bytes": 4000}  # Tansu ignores topic limits: the producer's is the limit


def _emit(settings: Settings, records: list[dict[str, Any]]) -> list[Outgoing]:
    """Write events to the outbox the way a processor's emitted events are written."""
    catalog = EventCatalog.from_settings(settings)
    prepared = [catalog.prepare(r, check="domain") for r in records]
    with connect(settings) as conn:
        outbox.append(conn, "test", prepared)
    return prepared


def _raw(settings: Settings, topic: str, key: bytes, value: bytes) -> None:
    with connect(settings) as conn:
        outbox.append_raw(conn, source="test", topic=topic, key=key, value=value, headers=[])


def _relay(settings: Settings, **overrides: Any) -> OutboxRelay:
    """Run a relay (as the runner does) until nothing is pending, then stop it."""
    return drain_relay(settings, producer_overrides=overrides)


def _headers(msg: Message) -> outbox.Headers:
    return cast(outbox.Headers, msg.headers() or [])


def _header(msg: Message, name: str) -> bytes:
    value: bytes | None = dict(_headers(msg)).get(name)
    assert value is not None, f"header {name} missing"
    return value


def _ids(messages: list[Message]) -> Counter[str]:
    return Counter(_header(m, "sb-event-id").decode() for m in messages)


def test_a_row_too_large_is_parked_and_the_rows_behind_go_out_once(isolated: Settings) -> None:
    topic = EventCatalog.from_settings(isolated).topics.topic_for("StockMovement")
    records = flood.load("park", keys=2, per_key=6)
    _emit(isolated, records[:6])
    _raw(isolated, topic.name, b"K0001@LOC-1", b"x" * 10_000)  # same key as rows behind it
    _emit(isolated, records[6:])

    relay = _relay(isolated, **SMALL)

    published = read_all(isolated, topic.name, topic.partitions, expect=12)
    assert _ids(published) == Counter(r["envelope"]["event_id"] for r in records)
    for key in (b"K0000@LOC-1", b"K0001@LOC-1"):  # per-key order kept around the parked row
        got = [_header(m, "sb-event-id") for m in published if m.key() == key]
        want = [r["envelope"]["event_id"] for r in records if key.startswith(r["item_id"].encode())]
        assert [g.decode() for g in got] == want
    with connect(isolated) as conn:
        parked = outbox.parked(conn)
    assert [(p.topic, p.size, p.code) for p in parked] == [
        (topic.name, 10_000, "MSG_SIZE_TOO_LARGE")
    ]
    assert "10000 bytes" in parked[0].reason
    assert relay.metrics.registry.get_sample_value("supplybus_outbox_parked") == 1.0
    assert relay.stats.published == 12 and relay.stats.parked == 1

    # A restarted relay neither stops on the parked row nor publishes anything twice.
    more = flood.load("park2", keys=1, per_key=3)
    _emit(isolated, more)
    again = _relay(isolated, **SMALL)
    assert again.stats.published == 3 and again.stats.parked == 0
    everything = read_all(isolated, topic.name, topic.partitions, expect=15)
    assert _ids(everything) == Counter(r["envelope"]["event_id"] for r in records + more)
    with connect(isolated) as conn:
        assert [p.id for p in outbox.parked(conn)] == [parked[0].id]  # still there, still parked


def test_a_delivery_failure_does_not_republish_acknowledged_rows(isolated: Settings) -> None:
    topic = EventCatalog.from_settings(isolated).topics.topic_for("StockMovement")
    records = flood.load("deliv", keys=3, per_key=4)
    _emit(isolated, records[:5])
    _raw(isolated, "not a topic!", b"k", b"refused by the broker")  # fails in the delivery report
    _emit(isolated, records[5:])

    relay = _relay(isolated)  # runs several rounds after the failure

    assert relay.stats.rounds > 2 and relay.stats.parked == 1
    published = read_all(isolated, topic.name, topic.partitions, expect=len(records))
    assert _ids(published) == Counter(r["envelope"]["event_id"] for r in records)  # once each
    with connect(isolated) as conn:
        parked = outbox.parked(conn)
        unsent = conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()
    assert [(p.topic, p.code) for p in parked] == [("not a topic!", "TOPIC_EXCEPTION")]
    assert unsent == (1,)  # the parked row is never marked sent, nor deleted


def test_rows_wait_for_an_unreachable_broker_and_go_out_once(
    isolated: Settings, tmp_path: Path
) -> None:
    """A broker outage is transient: the round waits (the producer never gives up), no row
    is parked, reordered or sent twice."""
    port = embedded.free_port()
    private = replace(isolated, kafka_bootstrap_servers=f"127.0.0.1:{port}")
    topic = EventCatalog.from_settings(private).topics.topic_for("StockMovement")
    records = flood.load("outage", keys=2, per_key=5)
    _emit(private, records)
    relay, stop = OutboxRelay(private), threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,))
    thread.start()
    broker = None
    try:
        wait_for(lambda: len(relay.producer) == 10, timeout=15, what="records queued")
        broker = embedded.start_broker(tmp_path, port)  # the broker comes (back)
        wait_for(lambda: relay.stats.published == 10, timeout=60, what="rows published")
        stop.set()
        thread.join(15)
        assert relay.error is None and relay.stats.parked == 0
        partitions = len(make_admin(private).list_topics(topic.name).topics[topic.name].partitions)
        events = read_all(private, topic.name, partitions, expect=10)
        assert _ids(events) == Counter(r["envelope"]["event_id"] for r in records)
        for key in (b"K0000@LOC-1", b"K0001@LOC-1"):
            got = [_header(m, "sb-event-id").decode() for m in events if m.key() == key]
            assert got == [r["envelope"]["event_id"] for r in records if r["item_id"] in str(key)]
    finally:
        stop.set()
        thread.join(15)
        if broker is not None:
            embedded.stop_process(broker.pid)


def test_a_dead_letter_too_large_becomes_a_reference_record(isolated: Settings) -> None:
    topic = EventCatalog.from_settings(isolated).topics.topic_for("StockMovement")
    dlq = topic.dlq or ""
    big, small = b"\xc3\x01" + b"b" * 9_000, b"\xc3\x01small"
    with connect(isolated) as conn:
        for offset, value in ((7, big), (8, small)):
            failure = dl.Failure(
                topic=topic.name,
                partition=0,
                offset=offset,
                timestamp_ms=1_700_000_000_000,
                key=b"K0042@LOC-1",
                value=value,
                headers=[("sb-correlation-id", b"corr-big"), ("origin", None)],
                error=BusinessRuleError("refused"),
                correlation_id="corr-big",
            )
            dl.record(conn, "relay-test", dlq, failure)
        stored = conn.execute("SELECT headers FROM outbox ORDER BY id").fetchall()

    relay = _relay(isolated, **SMALL)

    assert relay.stats.withheld == 1 and relay.stats.parked == 0
    by_offset = {_header(m, dl.H_OFFSET): m for m in read_all(isolated, dlq, 1, expect=2)}
    assert sorted(by_offset) == [b"7", b"8"]
    reference, full = by_offset[b"7"], by_offset[b"8"]
    assert reference.value() is None and reference.key() == b"K0042@LOC-1"
    assert _headers(reference) == [*outbox.decode_headers(stored[0][0]), (WITHHELD, b"9002")]
    assert any(name == "sb-dlq-id" for name, _ in _headers(reference))
    assert full.value() == small and _headers(full) == outbox.decode_headers(stored[1][0])
    with connect(isolated) as conn:  # the bytes themselves stay in dead_letters
        kept = conn.execute('SELECT value FROM dead_letters WHERE "offset" = 7').fetchone()
    assert kept is not None and bytes(kept[0]) == big


def test_a_relay_crash_after_the_ack_duplicates_that_round_only(
    isolated: Settings, tmp_path: Path
) -> None:
    """Crash point relay-after-ack: predicted duplicates = the round in hand, 0 lost; the
    copies carry the same identity (sb-event-id, sb-dlq-id) for consumers to dedupe on."""
    topic = EventCatalog.from_settings(isolated).topics.topic_for("StockMovement")
    records = flood.load("crash", keys=2, per_key=5)
    _emit(isolated, records)
    with connect(isolated) as conn:
        failure = dl.Failure(
            topic.name, 0, 3, 1_700_000_000_000, b"k", b"bad", [], BusinessRuleError("no")
        )
        dl.record(conn, "relay-test", topic.dlq or "", failure)
    env = cli_env(isolated, tmp_path / "home")
    run = ("run", "relay", "--until-idle", "--idle-seconds", "0.5")
    crashed = run_cli(*run, env={**env, "SUPPLYBUS_CRASH_AT": "relay-after-ack"})
    assert crashed.returncode == 137, crashed.stderr
    with connect(isolated) as conn:
        assert conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone() == (11,)
    finished = run_cli(*run, env=env)
    assert finished.returncode == 0, finished.stderr

    events = read_all(isolated, topic.name, topic.partitions, expect=20)
    assert _ids(events) == Counter({r["envelope"]["event_id"]: 2 for r in records})
    dead = read_all(isolated, topic.dlq or "", 1, expect=2)
    assert len(dead) == 2 and len({_header(m, "sb-dlq-id") for m in dead}) == 1
    with connect(isolated) as conn:
        assert conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone() == (0,)


def test_emitted_events_carry_the_headers_of_published_ones(isolated: Settings) -> None:
    catalog = EventCatalog.from_settings(isolated)
    topic = catalog.topics.topic_for("StockMovement")
    published, emitted = flood.movement("hdr", 1, 1), flood.movement("hdr", 2, 1)
    for record in (published, emitted):
        record["envelope"]["causation_id"] = str(uuid.uuid4())
    flood.publish(isolated, [published])
    [out] = _emit(isolated, [emitted])

    _relay(isolated)

    by_id = {
        _header(m, "sb-event-id").decode(): _headers(m)
        for m in read_all(isolated, topic.name, topic.partitions, expect=2)
    }
    on_kafka_published = by_id[published["envelope"]["event_id"]]
    on_kafka_emitted = by_id[emitted["envelope"]["event_id"]]
    assert on_kafka_emitted == out.headers  # the relay publishes what the outbox stored
    assert [n for n, _ in on_kafka_emitted] == [n for n, _ in on_kafka_published]
    fingerprint = catalog.codec.fingerprint_of("StockMovement").hex().encode()
    assert dict(on_kafka_emitted)["sb-fingerprint"] == fingerprint
    assert dict(on_kafka_published)["sb-fingerprint"] == fingerprint


def test_rows_written_before_headers_were_stored_get_them(
    settings: Settings, tmp_path: Path
) -> None:
    """Migration 0004 gives legacy unsent rows the routing headers, fingerprint included."""
    earlier = [m for m in migrate.discover() if m.version < 4]
    for m in earlier:
        shutil.copy(m.path, tmp_path / m.path.name)
    migrate.migrate(settings, tmp_path)
    catalog = EventCatalog.from_settings(settings)
    record = flood.movement("legacy", 1, 1)
    record["envelope"]["causation_id"] = str(uuid.uuid4())
    out = catalog.prepare(record)
    with connect(settings) as conn:  # what `append` wrote before: no headers
        outbox.append(conn, "old", [out])
        conn.execute("UPDATE outbox SET headers = NULL")
    migrate.migrate(settings)
    with connect(settings) as conn:
        [row] = outbox.pending(conn, 10)
    assert row.headers == out.headers  # the routing headers, as `prepare` computes them today
    assert dict(row.headers)["sb-fingerprint"] == out.value[2:10].hex().encode()
