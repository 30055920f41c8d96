"""Publisher throughput (#20): validate + encode + produce, next to a raw confluent-kafka
produce of the same (pre-encoded) records in the same run, on a private copy of the catalog."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from supplybus.adapters.kafka import make_admin, make_producer, produce
from supplybus.config import Settings
from supplybus.events.catalog import EventCatalog
from supplybus.events.samples import sample_record
from supplybus.ops import services, topic_admin
from supplybus.ops.bench.report import Section, ratio
from supplybus.producers.publisher import Publisher

EVENTS = 50_000
GOAL = 0.8  # Publisher rate / raw produce rate, validation on


def _median_rate(n: int, work: Callable[[], None], repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        rates.append(n / (time.perf_counter() - started))
    return sorted(rates)[len(rates) // 2]


def measure(settings: Settings, n: int = EVENTS, repeats: int = 3) -> Section:
    """The section, measured on ``settings`` (whose catalog's topics exist)."""
    catalog = EventCatalog.from_settings(settings)
    sv = catalog.store.latest("StockMovement")
    records: list[dict[str, Any]] = [sample_record(sv, seed=i) for i in range(n)]
    encoded = [catalog.prepare(r) for r in records]
    section = Section(f"publisher (#20): {n:,} StockMovement, idempotent producer, acks=all")

    def raw() -> None:
        producer = make_producer(settings)
        for out in encoded:
            produce(producer, out.topic, out.value, out.key, out.headers, _ignore)
        producer.flush(60)

    def prepare_only() -> None:
        for r in records:
            catalog.prepare(r)

    def publisher() -> None:
        with Publisher(catalog, make_producer(settings)) as pub:
            pub.publish_all(records)

    base = section.add(
        "raw confluent-kafka produce (pre-encoded)", _median_rate(n, raw, repeats), note="baseline"
    )
    section.add("validate + encode only", _median_rate(n, prepare_only, repeats))
    pub = _median_rate(n, publisher, repeats)
    note = f"{ratio(pub, base)} of raw (goal >= {GOAL}x)"
    section.add("Publisher.publish_all + flush (validation on)", pub, note=note)
    return section


def _ignore(err: object, msg: object) -> None:
    if err is not None:
        raise KafkaException(err)


def run(n: int = EVENTS) -> Section:
    base = services.ensure_up(Settings.from_env())
    tmp = Path(tempfile.mkdtemp(prefix="supplybus-bench-pub-"))
    try:
        settings = topic_admin.apply_private(base, tmp, f"p{uuid.uuid4().hex[:8]}.")
        try:
            return measure(settings, n)
        finally:
            names = [t.name for t in EventCatalog.from_settings(settings).topics.topics]
            admin = make_admin(settings)
            for future in admin.delete_topics(names, operation_timeout=15).values():
                with contextlib.suppress(KafkaException):  # best effort: memory-only broker
                    future.result(timeout=20)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
