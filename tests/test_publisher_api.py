"""The Publisher API on the real broker: delivery reports, and a DeliveryError naming each
record the producer refused while the rest of the batch was delivered (at least once)."""

from __future__ import annotations

from collections import Counter

import pytest

from supplybus.adapters.kafka import make_producer
from supplybus.config import Settings
from supplybus.errors import DeliveryError
from supplybus.events.catalog import EventCatalog
from supplybus.ops.bench import publisher as bench
from supplybus.producers.publisher import Publisher
from tests import flood
from tests.helpers import read_all


def test_a_refused_record_is_named_and_the_others_are_delivered(isolated: Settings) -> None:
    catalog = EventCatalog.from_settings(isolated)
    topic = catalog.topics.topic_for("StockMovement")
    records = flood.load("dlv", keys=2, per_key=3)
    records[2] = flood.with_fields(records[2], reason="x" * 1500)  # over message.max.bytes
    pub = Publisher(catalog, make_producer(isolated, **{"message.max.bytes": 1200}))
    pub.publish_all(records)
    with pytest.raises(DeliveryError) as caught:
        pub.flush()
    err = caught.value
    assert err.delivered == 5 and len(err.failures) == 1
    failure = err.failures[0]
    assert failure.event_id == records[2]["envelope"]["event_id"] and failure.topic == topic.name
    assert "MSG_SIZE_TOO_LARGE" in failure.reason and failure.event_id in str(err)

    got = read_all(isolated, topic.name, topic.partitions, expect=5)
    sent = Counter(dict(m.headers())["sb-event-id"].decode() for m in got)
    assert sent == Counter(r["envelope"]["event_id"] for i, r in enumerate(records) if i != 2)

    again = pub.flush_report()  # nothing new: an empty, successful report
    assert again.ok and again.delivered == 0


def test_flush_report_counts_deliveries_without_raising(isolated: Settings) -> None:
    with Publisher.from_settings(isolated) as pub:
        pub.publish_all(flood.load("rep", keys=3, per_key=4))
        report = pub.flush_report()
        assert report.ok and report.delivered == 12
        pub.publish(flood.movement("rep", 9, 1))
        assert pub.flush_report().delivered == 1 and pub.flush() == 13


def test_bench_section_reports_the_publisher_next_to_raw_produce(isolated: Settings) -> None:
    section = bench.measure(isolated, n=2000, repeats=1)
    names = [row[0] for row in section.rows]
    assert any("raw" in n for n in names) and any("Publisher" in n for n in names)
    assert all(rate > 0 for _, rate, _, _ in section.rows)
