"""What a committed batch adds to the lane's counters, metrics and logs (once per batch)."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException

from supplybus.consumers.runtime.apply import Outcome
from supplybus.consumers.runtime.hold import HeldKey
from supplybus.consumers.runtime.processor import Processor
from supplybus.metrics import Metrics

#: End-to-end latency is observed for every LATENCY_SAMPLE-th applied event (per-event
#: observation cost 3 % of the pipeline; a 1-in-8 sample keeps the distribution).
LATENCY_SAMPLE = 8
log = logging.getLogger("supplybus.runtime")


@dataclass
class LaneStats:
    batches: int = 0
    applied: int = 0
    duplicates: int = 0
    dead: int = 0
    skipped: int = 0
    held: int = 0  # events held behind a dead letter of their key
    last_record_at: float = 0.0
    assigned: bool = False  # joined the group and received an assignment (maybe empty)
    partitions: set[tuple[str, int]] = field(default_factory=set)  # currently assigned
    busy: bool = False  # a batch is in hand or waiting on a retry: never idle


def report_lag(consumer: Consumer, metrics: Metrics, processor: str) -> None:
    """Consumer lag per partition: high watermark minus position (approximate on Tansu,
    whose high watermark under-reports; exact on Apache Kafka). Never used for control."""
    gauge = metrics.consumer_lag
    for tp in consumer.position(consumer.assignment()):
        if tp.offset < 0:
            continue
        try:
            _, high = consumer.get_watermark_offsets(tp, cached=True)
        except KafkaException:
            continue
        gauge.labels(processor, tp.topic, str(tp.partition)).set(max(0, high - tp.offset))


def report_holds(held: list[HeldKey], processor: Processor, metrics: Metrics) -> None:
    """Gauges of what a processor holds, and an alert per key past its HoldAlert bound."""
    name = processor.name
    metrics.held_keys.labels(name).set(len(held))
    metrics.held_events.labels(name).set(sum(h.events for h in held))
    metrics.oldest_hold_age.labels(name).set(max((h.oldest_age_s for h in held), default=0))
    over = [h for h in held if processor.hold_alert.exceeded(h.events, h.oldest_age_s)]
    metrics.hold_alerts.labels(name).set(len(over))
    for h in over[:10]:
        log.warning(
            "key %r has held %d event(s) for %.0f s behind dead letter(s) %s: resolve them "
            "(replay or skip); nothing is dropped meanwhile",
            h.key.decode(errors="replace")[:80],
            h.events,
            h.oldest_age_s,
            ", ".join(h.dead_letters) or "(being released)",
            extra={"processor": name},
        )


def account(
    stats: LaneStats,
    metrics: Metrics,
    processor: str,
    lane: str,
    outcome: Outcome,
    skipped: int,
    seconds: float,
) -> None:
    stats.batches += 1
    stats.applied += len(outcome.applied)
    stats.duplicates += outcome.duplicates
    stats.dead += len(outcome.dead)
    stats.skipped += skipped
    m = metrics
    m.batch_duration.labels(processor, lane).observe(seconds)
    for (topic, event_type), n in Counter((e.topic, e.event_type) for e in outcome.applied).items():
        m.processed.labels(processor, topic, event_type).inc(n)
    if outcome.duplicates:
        m.duplicate.labels(processor, "*", "*").inc(outcome.duplicates)
    if outcome.emitted:
        m.emitted.labels(processor).inc(outcome.emitted)
    if outcome.held:
        stats.held += len(outcome.held)
        m.held.labels(processor).inc(len(outcome.held))
    now = dt.datetime.now(dt.UTC)
    latency = m.latency.labels(processor, lane)
    for event in outcome.applied[::LATENCY_SAMPLE]:
        occurred = event.envelope.get("occurred_at")
        if isinstance(occurred, dt.datetime):
            latency.observe(max(0.0, (now - occurred).total_seconds()))
    for failure in outcome.dead:
        m.failed.labels(processor, failure.topic, failure.event_type or "undecodable").inc()
        m.dead_lettered.labels(processor, failure.topic, failure.error_code).inc()
        log.warning(
            "dead-lettered %s[%d]@%d: %s",
            failure.topic,
            failure.partition,
            failure.offset,
            str(failure.error),
            extra={
                "processor": processor,
                "lane": lane,
                "event_id": failure.event_id,
                "correlation_id": failure.correlation_id,
            },
        )
