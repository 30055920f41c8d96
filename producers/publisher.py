"""The publisher: validate, encode, route by the catalog, publish with the idempotent producer.

```python
from supplybus.producers.publisher import Publisher
with Publisher.from_settings(settings) as pub:
    pub.publish(record)          # ValidationError if the event is invalid: nothing is sent
    pub.publish_all(records)     # all or nothing: one invalid record and none is sent
    pub.flush()                  # DeliveryError if the broker did not acknowledge a record
    report = pub.flush_report()  # or: DeliveryReport(delivered, failed), without raising
```

Guarantees of ``publish_all``: validation is all or nothing (one invalid record and none is
enqueued). Delivery is at least once, per record: the idempotent producer (acks=all, ordered
retries) retries transient failures itself, so a record that still fails failed for good
(e.g. too large) while the others of the batch may have been acknowledged; Kafka has no
multi-record atomic produce that holds on every broker (transactions do not, see ADR 0003).
The caller learns of every failed record: ``flush`` raises ``DeliveryError`` whose
``failures`` name each one by event id, topic and reason; sending them again is safe, since
event ids are stable and consumers' ledgers skip copies. Records still unacknowledged when a
flush times out are counted in one failure without an event id (they may yet be delivered).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from supplybus.adapters.kafka import make_producer, produce
from supplybus.config import Settings
from supplybus.errors import (
    ConfigError,
    DeliveryError,
    DeliveryFailure,
    FieldError,
    ValidationError,
)
from supplybus.events.catalog import EventCatalog, Outgoing
from supplybus.events.headers import EVENT_ID
from supplybus.events.key_lanes import KeyLanes


@dataclass(frozen=True)
class DeliveryReport:
    """What a flush learned: records acknowledged since the last report, and each failure."""

    delivered: int
    failed: tuple[DeliveryFailure, ...]

    @property
    def ok(self) -> bool:
        return not self.failed


class Publisher:
    """Publishes canonical events; collects delivery failures until ``flush``."""

    def __init__(self, catalog: EventCatalog, producer: Producer) -> None:
        self.catalog = catalog
        self.producer = producer
        self.key_lanes = KeyLanes(catalog.topics)  # a key's events never change lanes
        self.delivered = 0  # acknowledged since this publisher started
        self._reported = 0  # ``delivered`` at the last report
        self._failures: list[DeliveryFailure] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> Publisher:
        return cls(EventCatalog.from_settings(settings), make_producer(settings))

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.flush()

    def prepare(self, record: Mapping[str, Any]) -> Outgoing:
        """Validated, encoded, routed; ValidationError also for a key that would change lanes."""
        out = self.catalog.prepare(record)
        switched = self.key_lanes.check(out.topic, out.key)
        if switched is not None:
            raise ValidationError([switched], context=str(out.envelope["event_type"]))
        return out

    def publish(self, record: Mapping[str, Any]) -> Outgoing:
        """Validate and enqueue one event; returns what was enqueued."""
        out = self.prepare(record)
        self.send(out)
        return out

    def publish_all(
        self, records: Sequence[Mapping[str, Any]], *, labels: Sequence[str] | None = None
    ) -> list[Outgoing]:
        """All or nothing: validate every record, then enqueue them all (see ``prepare_all``)."""
        prepared = prepare_all(self.catalog, records, labels=labels, key_lanes=self.key_lanes)
        self.send_all(prepared)
        return prepared

    def send(self, out: Outgoing) -> None:
        """Enqueue an already prepared event (waits for room when the queue is full). A record
        the producer refuses outright is a failure reported by the next flush, like the broker's."""
        try:
            produce(self.producer, out.topic, out.value, out.key, out.headers, self._on_delivery)
        except KafkaException as exc:  # refused locally (e.g. over message.max.bytes)
            err = exc.args[0]
            reason = f"{err.name()}: {err.str()}" if isinstance(err, KafkaError) else str(exc)
            event_id = str(out.envelope.get("event_id"))
            self._failures.append(DeliveryFailure(event_id, out.topic, reason))

    def send_all(self, prepared: Iterable[Outgoing]) -> None:
        """Enqueue prepared events, in order."""
        for out in prepared:
            self.send(out)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.delivered += 1
        else:
            event_id = dict(msg.headers() or []).get(EVENT_ID)
            self._failures.append(
                DeliveryFailure(
                    event_id.decode() if isinstance(event_id, bytes) else None,
                    str(msg.topic()),
                    f"{err.name()}: {err.str()}",
                )
            )

    def flush_report(self, timeout_s: float = 30.0) -> DeliveryReport:
        """Wait for every acknowledgement (up to ``timeout_s``); report, never raise."""
        remaining = self.producer.flush(timeout_s)
        if remaining:
            self._failures.append(
                DeliveryFailure(
                    None, "*", f"{remaining} record(s) not acknowledged within {timeout_s:g}s"
                )
            )
        failures, self._failures = tuple(self._failures), []
        report = DeliveryReport(self.delivered - self._reported, failures)
        self._reported = self.delivered
        return report

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for every acknowledgement; raise DeliveryError naming each failed record.
        Returns how many records were acknowledged since this publisher started."""
        report = self.flush_report(timeout_s)
        if report.failed:
            raise DeliveryError(
                f"{len(report.failed)} delivery failure(s); first: {report.failed[0]}",
                failures=report.failed,
                delivered=report.delivered,
            )
        return self.delivered


def prepare_all(
    catalog: EventCatalog,
    records: Sequence[Mapping[str, Any]],
    *,
    labels: Sequence[str] | None = None,
    key_lanes: KeyLanes | None = None,
) -> list[Outgoing]:
    """Every record validated, encoded and routed, or none: a ValidationError lists each bad
    record's field errors, prefixed with its label (default ``record <index>``, from 0).
    A key whose events would change lanes (within the batch, or against ``key_lanes``, which
    is updated only when the whole batch passes) is an error too.

    Needs no broker, so a caller can check a whole batch before connecting to one.
    """
    if labels is not None and len(labels) != len(records):
        raise ConfigError(f"labels: expected one per record ({len(records)}), got {len(labels)}")
    prepared: list[Outgoing] = []
    errors: list[FieldError] = []
    bad = 0
    lanes = key_lanes.fork() if key_lanes is not None else KeyLanes(catalog.topics)
    for index, record in enumerate(records):
        label = f"record {index}" if labels is None else labels[index]
        try:
            out = catalog.prepare(record)
            switched = lanes.check(out.topic, out.key)
            if switched is not None:
                raise ValidationError([switched])
            prepared.append(out)
        except ValidationError as exc:
            bad += 1
            errors.extend(
                FieldError(f"{label}: {e.path}" if e.path else label, e.expected, e.got)
                for e in exc.errors
            )
    if errors:
        context = f"{bad} of {len(records)} record(s) invalid; nothing was published"
        raise ValidationError(errors, context=context)
    if key_lanes is not None:
        key_lanes.adopt(lanes)
    return prepared
