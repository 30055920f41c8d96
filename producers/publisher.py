"""The publisher: validate, encode, route by the catalog, publish with the idempotent producer.

```python
from supplybus.producers.publisher import Publisher
with Publisher.from_settings(settings) as pub:
    pub.publish(record)          # ValidationError if the event is invalid: nothing is sent
    pub.flush()                  # DeliveryError if the broker did not acknowledge a record
```
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from supplybus.adapters.kafka import make_producer, produce
from supplybus.config import Settings
from supplybus.errors import DeliveryError
from supplybus.events.catalog import EventCatalog, Outgoing


class Publisher:
    """Publishes canonical events; collects delivery failures until ``flush``."""

    def __init__(self, catalog: EventCatalog, producer: Producer) -> None:
        self.catalog = catalog
        self.producer = producer
        self.delivered = 0
        self._failures: list[str] = []

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
        return self.catalog.prepare(record)

    def publish(self, record: Mapping[str, Any]) -> Outgoing:
        """Validate and enqueue one event; returns what was enqueued."""
        out = self.prepare(record)
        self.send(out)
        return out

    def publish_all(self, records: Iterable[Mapping[str, Any]]) -> list[Outgoing]:
        """Validate every record first; enqueue only when all are valid (all-or-nothing)."""
        prepared = [self.prepare(r) for r in records]
        for out in prepared:
            self.send(out)
        return prepared

    def send(self, out: Outgoing) -> None:
        """Enqueue an already prepared event (waits for room when the queue is full)."""
        produce(self.producer, out.topic, out.value, out.key, out.headers, self._on_delivery)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.delivered += 1
        else:
            self._failures.append(f"{msg.topic()}: {err.str()}")

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for every acknowledgement; raise DeliveryError naming what failed."""
        remaining = self.producer.flush(timeout_s)
        if remaining:
            self._failures.append(f"{remaining} record(s) not acknowledged within {timeout_s:g}s")
        if self._failures:
            failures, self._failures = self._failures, []
            raise DeliveryError(f"{len(failures)} delivery failure(s); first: {failures[0]}")
        return self.delivered
