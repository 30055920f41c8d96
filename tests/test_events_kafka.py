"""Canonical events through the real broker: publish, consume, all-or-nothing CLI publish."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from supplybus.adapters.kafka import make_producer
from supplybus.config import Settings
from supplybus.errors import ValidationError
from supplybus.events import headers as h
from supplybus.events.catalog import EventCatalog
from supplybus.events.samples import sample_record
from supplybus.producers.publisher import Publisher
from tests.helpers import cli_env, read_all, read_topics, run_cli


def test_every_event_type_round_trips_through_kafka(isolated: Settings) -> None:
    catalog = EventCatalog.from_settings(isolated)
    records = {
        et: sample_record(catalog.store.latest(et), seed=11) for et in catalog.store.event_types
    }
    with Publisher.from_settings(isolated) as pub:
        sent = {et: pub.publish(r) for et, r in records.items()}
    topics = {out.topic: catalog.topics.topic(out.topic).partitions for out in sent.values()}
    msgs = read_topics(isolated, topics, expect=len(sent))
    assert sorted(catalog.codec.decode(m.value()).event_type for m in msgs) == sorted(sent)
    for msg in msgs:
        spec = catalog.topics.topic(msg.topic())
        decoded = catalog.codec.decode(msg.value())
        original = catalog.conform(records[decoded.event_type])
        assert json.dumps(decoded.record, default=str) == json.dumps(original, default=str)
        hdrs = dict(msg.headers())
        assert hdrs[h.EVENT_TYPE].decode() == decoded.event_type
        assert hdrs[h.FINGERPRINT].decode() == decoded.fingerprint.hex()
        assert hdrs[h.CORRELATION_ID].decode() == original["envelope"]["correlation_id"]
        assert hdrs[h.TRACEPARENT].decode().startswith("00-")
        assert msg.key().decode() == spec.key_for(original)


def test_critical_priority_goes_to_the_critical_lane(isolated: Settings) -> None:
    catalog = EventCatalog.from_settings(isolated)
    record = sample_record(catalog.store.latest("RequisitionSubmitted"), urgency="STAT")
    record["envelope"]["priority"] = "CRITICAL"
    out = catalog.prepare(record)
    assert out.topic.endswith("procurement.requisitions.v1.critical")


def _lines(catalog: EventCatalog, n: int, bad_at: int | None = None) -> str:
    rows = []
    for i in range(1, n + 1):
        rec = sample_record(catalog.store.latest("StockMovement"), seed=i)
        rec.pop("envelope")
        if i == bad_at:
            rec["quantity"]["value"] = "-3"
        rows.append(json.dumps(rec, default=str))
    return "\n".join(rows) + "\n"


def test_publish_with_one_bad_line_in_1000_publishes_nothing(
    isolated: Settings, tmp_path: Path
) -> None:
    catalog = EventCatalog.from_settings(isolated)
    path = tmp_path / "moves.jsonl"
    path.write_text(_lines(catalog, 1000, bad_at=637))
    result = run_cli(
        "publish",
        "StockMovement",
        "--file",
        str(path),
        "--entity-id",
        "ENT-1",
        env=cli_env(isolated, tmp_path / "home"),
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{path}: line 637: quantity.value: must be > 0, got -3.000" in result.stderr
    assert "nothing was published" in result.stderr
    assert "Traceback" not in result.stderr
    topic = catalog.topics.topic_for("StockMovement")
    assert read_all(isolated, topic.name, topic.partitions, expect=1, timeout=2) == []


def test_publish_then_consume_json_and_republish_keeps_ids(
    isolated: Settings, tmp_path: Path
) -> None:
    catalog = EventCatalog.from_settings(isolated)
    path = tmp_path / "moves.jsonl"
    path.write_text(_lines(catalog, 25))
    env = cli_env(isolated, tmp_path / "home")
    for _ in range(2):
        done = run_cli(
            "publish", "StockMovement", "--file", str(path), "--entity-id", "ENT-1", env=env
        )
        assert done.returncode == 0, done.stderr
        assert "published 25 StockMovement event(s)" in done.stdout
    topic = catalog.topics.topic_for("StockMovement").name
    consumed = run_cli(
        "consume", topic, "--from-beginning", "--json", "--idle-seconds", "2", env=env
    )
    assert consumed.returncode == 0, consumed.stderr
    rows = [json.loads(line) for line in consumed.stdout.splitlines()]
    assert len(rows) == 50
    ids = [r["event"]["envelope"]["event_id"] for r in rows]
    assert len(set(ids)) == 25  # the same file yields the same event ids: downstream dedupes
    assert {r["event_type"] for r in rows} == {"StockMovement"}


def test_publish_all_sends_nothing_when_one_record_is_invalid(isolated: Settings) -> None:
    catalog = EventCatalog.from_settings(isolated)
    sv = catalog.store.latest("StockMovement")
    records = [sample_record(sv, seed=i) for i in range(5)]
    records[1]["quantity"]["value"] = Decimal("-3")
    records[3]["quantity"]["uom"] = "PARSEC"
    with Publisher.from_settings(isolated) as pub, pytest.raises(ValidationError) as caught:
        pub.publish_all(records)
    assert [(e.path, e.expected) for e in caught.value.errors] == [
        ("record 1: quantity.value", "must be > 0"),
        ("record 3: quantity.uom", "a known unit of measure (EA, BX, CS, ...)"),
    ]
    assert str(caught.value).startswith("2 of 5 record(s) invalid; nothing was published")
    topic = catalog.topics.topic_for("StockMovement")
    assert read_all(isolated, topic.name, topic.partitions, expect=1, timeout=2) == []

    records[1]["quantity"]["value"], records[3]["quantity"]["uom"] = Decimal(1), "EA"
    with Publisher.from_settings(isolated) as pub:
        sent = pub.publish_all(records)
    got = read_all(isolated, topic.name, topic.partitions, expect=5)
    assert sorted(m.value() for m in got) == sorted(o.value for o in sent)


def test_consume_without_max_reads_past_500_and_max_stops_exactly(
    isolated: Settings, tmp_path: Path
) -> None:
    catalog = EventCatalog.from_settings(isolated)
    sv = catalog.store.latest("StockMovement")
    with Publisher.from_settings(isolated) as pub:
        sent = pub.publish_all([sample_record(sv, seed=i) for i in range(1234)])
    topic = sent[0].topic
    env = cli_env(isolated, tmp_path / "home")
    everything = run_cli("consume", topic, "--from-beginning", "--json", env=env)
    assert everything.returncode == 0, everything.stderr
    rows = [json.loads(line) for line in everything.stdout.splitlines()]
    assert len({(r["partition"], r["offset"]) for r in rows}) == len(rows) == 1234
    assert {r["event"]["envelope"]["event_id"] for r in rows} == {
        o.envelope["event_id"] for o in sent
    }
    capped = run_cli("consume", topic, "--from-beginning", "--json", "--max", "700", env=env)
    assert capped.returncode == 0, capped.stderr
    assert len(capped.stdout.splitlines()) == 700


def test_consume_shows_undecodable_records_without_crashing(
    isolated: Settings, tmp_path: Path
) -> None:
    catalog = EventCatalog.from_settings(isolated)
    topic = catalog.topics.topic_for("ItemUpserted").name
    producer = make_producer(isolated)
    producer.produce(topic, b"\xc3\x01garbage!", b"k1")
    producer.produce(
        topic, catalog.prepare(sample_record(catalog.store.latest("ItemUpserted"))).value, b"k2"
    )
    producer.flush(10)
    consumed = run_cli(
        "consume",
        topic,
        "--from-beginning",
        "--json",
        "--idle-seconds",
        "2",
        env=cli_env(isolated, tmp_path / "home"),
    )
    assert consumed.returncode == 0, consumed.stderr
    rows = [json.loads(line) for line in consumed.stdout.splitlines()]
    assert len(rows) == 2
    errors = [r for r in rows if "error" in r]
    assert len(errors) == 1 and "fingerprint" in errors[0]["error"]
    assert errors[0]["value_hex"].startswith("c301")


@pytest.mark.parametrize(
    "args", [["publish", "NoSuchEvent", "--file", "x.jsonl"], ["consume", "no.such.topic"]]
)
def test_unknown_names_are_one_line_errors(
    isolated: Settings, tmp_path: Path, args: list[str]
) -> None:
    result = run_cli(*args, env=cli_env(isolated, tmp_path / "home"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "unknown" in result.stderr
