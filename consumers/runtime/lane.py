"""One consumer loop: a processor's routine or critical lane.

consume a batch -> decode -> apply in one transaction (retrying transient errors with the
batch kept and consumption paused) -> commit the batch's offsets. Offsets are committed only
after the transaction committed; a crash in between re-delivers the batch, and the ledger
skips what was applied. The routine lane decodes batch N+1 while its database thread applies
batch N; transactions and offset commits still happen one batch after another, in order.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, cast

import psycopg
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_when_event_set,
    wait_exponential_jitter,
)

from supplybus.adapters.kafka import leaves_group_on_close, make_consumer, release
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.runtime.apply import RETRYABLE, BatchApplier, Outcome
from supplybus.consumers.runtime.deadletter import Failure
from supplybus.consumers.runtime.processor import Event, Processor
from supplybus.errors import SupplybusError
from supplybus.events.catalog import EventCatalog
from supplybus.metrics import Metrics

LaneName = Literal["routine", "critical"]
#: End-to-end latency is observed for every LATENCY_SAMPLE-th applied event (per-event
#: observation cost 3 % of the pipeline; a 1-in-8 sample keeps the distribution).
LATENCY_SAMPLE = 8
log = logging.getLogger("supplybus.runtime")


class PriorityGate:
    """Routine lanes hold back while a critical lane has a batch in hand."""

    def __init__(self) -> None:
        self._busy = 0
        self._idle = threading.Condition()

    def enter(self) -> None:
        with self._idle:
            self._busy += 1

    def leave(self) -> None:
        with self._idle:
            self._busy -= 1
            if self._busy == 0:
                self._idle.notify_all()

    def wait_clear(self, timeout: float = 0.5) -> None:
        with self._idle:
            if self._busy:
                self._idle.wait(timeout)


@dataclass
class LaneStats:
    batches: int = 0
    applied: int = 0
    duplicates: int = 0
    dead: int = 0
    skipped: int = 0
    last_record_at: float = 0.0
    assigned: bool = False  # joined the group and received an assignment (maybe empty)


@dataclass
class _InFlight:
    """A batch whose transaction is running on the lane's database thread."""

    future: Future[Outcome]
    msgs: list[Message]
    events: list[Event]
    failures: list[Failure]
    skipped: int
    started: float


class Lane:
    """Runs one lane of one processor until ``stop`` is set (a thread target)."""

    def __init__(
        self,
        settings: Settings,
        processor: Processor,
        lane: LaneName,
        topics: Sequence[str],
        catalog: EventCatalog,
        metrics: Metrics,
        stop: threading.Event,
        gate: PriorityGate,
    ) -> None:
        self.settings = settings
        self.processor = processor
        self.lane = lane
        self.topics = list(topics)
        self.catalog = catalog
        self.metrics = metrics
        self.stop = stop
        self.gate = gate
        self.stats = LaneStats(last_record_at=time.monotonic())
        self.error: BaseException | None = None
        self.applier = BatchApplier(processor, catalog, self._dlq_topic)
        self._conn: psycopg.Connection | None = None
        self._next_lag_at = 0.0
        self._pending: _InFlight | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"{processor.name}-{lane}-db")
        suffix = ".critical" if lane == "critical" else ""
        self.group_id = f"{settings.group_prefix}.{processor.name}{suffix}"

    def _dlq_topic(self, topic: str) -> str:
        dlq = self.catalog.topics.topic(topic).dlq
        if dlq is None:  # pragma: no cover - the catalog gives every stream topic a DLQ
            raise SupplybusError(f"topic {topic} has no dead-letter topic in the catalog")
        return dlq

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc
            log.exception("lane stopped by an error", extra=self._ctx())
            self.stop.set()
        finally:
            self._drop_connection()

    def _ctx(self, **extra: Any) -> dict[str, Any]:
        return {"processor": self.processor.name, "lane": self.lane, **extra}

    def _run(self) -> None:
        overrides = {"fetch.wait.max.ms": 50} if self.lane == "critical" else {}
        consumer = make_consumer(self.settings, self.group_id, **overrides)
        leave = leaves_group_on_close(self.settings, consumer)
        consumer.subscribe(
            self.topics,
            on_assign=self._on_assign,
            on_revoke=lambda c, parts: self._finish(c),  # commit finished work before moving
            on_lost=lambda c, parts: self._finish(c),
        )
        log.info("lane started on %s", ", ".join(self.topics), extra=self._ctx())
        try:
            while not self.stop.is_set():
                if self.lane == "routine":
                    self.gate.wait_clear()
                msgs = consumer.consume(self.processor.batch_size, timeout=0.2)
                if time.monotonic() >= self._next_lag_at:
                    self._report_lag(consumer)
                if not msgs:
                    self._finish(consumer)
                    continue
                self.stats.last_record_at = time.monotonic()
                if self.lane == "critical":
                    self.gate.enter()
                try:
                    self._handle(consumer, msgs)
                finally:
                    if self.lane == "critical":
                        self.gate.leave()
            self._finish(consumer)
        finally:
            self._worker.shutdown(wait=True)
            release(consumer, leave_group=leave)
            del consumer
            log.info(
                "lane stopped (%s)",
                "left the group" if leave else "expires from the group",
                extra=self._ctx(),
            )

    def _report_lag(self, consumer: Consumer, every_s: float = 10.0) -> None:
        """Consumer lag per partition: high watermark minus position (approximate on Tansu,
        whose high watermark under-reports; exact on Apache Kafka). Never used for control."""
        self._next_lag_at = time.monotonic() + every_s
        gauge = self.metrics.consumer_lag
        for tp in consumer.position(consumer.assignment()):
            if tp.offset < 0:
                continue
            try:
                _, high = consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            lag = max(0, high - tp.offset)
            gauge.labels(self.processor.name, tp.topic, str(tp.partition)).set(lag)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.stats.assigned = True
        self.stats.last_record_at = time.monotonic()
        log.info("assigned %d partition(s)", len(partitions), extra=self._ctx())

    def _handle(self, consumer: Consumer, msgs: list[Message]) -> None:
        """Decode this batch while the previous one is applied, then hand this one over.

        Transactions still run one after another, in order: batch N+1 is submitted only once
        batch N committed and its offsets were committed. The critical lane does not overlap:
        it finishes each batch at once.
        """
        started = time.perf_counter()
        events, failures, skipped = self._decode(msgs)
        self._finish(consumer)
        future = self._worker.submit(self._apply_once, events, failures)
        self._pending = _InFlight(future, msgs, events, failures, skipped, started)
        if self.lane == "critical":
            self._finish(consumer)

    def _apply_once(self, events: list[Event], failures: list[Failure]) -> Outcome:
        return self.applier.apply(self._connection(), events, failures)

    def _finish(self, consumer: Consumer) -> None:
        """Wait for the batch in flight, retry it if the database failed, commit its offsets."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            outcome: Outcome | None = pending.future.result()
        except RETRYABLE as exc:
            self._on_transient(exc)
            outcome = self._retry(consumer, pending.events, pending.failures)
        if outcome is None:  # stopped while the database was unreachable: nothing committed
            return
        self._commit(consumer, pending.msgs)
        self._account(outcome, pending.skipped, time.perf_counter() - pending.started)

    def _decode(self, msgs: list[Message]) -> tuple[list[Event], list[Failure], int]:
        events: list[Event] = []
        failures: list[Failure] = []
        skipped = 0
        decode = self.catalog.codec.decode
        accepts = self.processor.consumes
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                log.warning("consumer error: %s", err.str(), extra=self._ctx())
                continue
            try:
                decoded = decode(msg.value())
            except SupplybusError as exc:
                headers = cast(list[tuple[str, bytes]], msg.headers() or [])
                failures.append(
                    Failure(
                        str(msg.topic()),
                        int(msg.partition() or 0),
                        int(msg.offset() or 0),
                        msg.timestamp()[1],
                        msg.key(),
                        msg.value(),
                        headers,
                        exc,
                    )
                )
                continue
            if decoded.event_type not in accepts:
                skipped += 1
                continue
            # a message without an error always has its topic, partition and offset
            where = cast(tuple[str, int, int], (msg.topic(), msg.partition(), msg.offset()))
            events.append(Event(decoded.event_type, decoded.record, *where, msg))
        return events, failures, skipped

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.settings)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _retry(
        self, consumer: Consumer, events: list[Event], failures: list[Failure]
    ) -> Outcome | None:
        """Pause the partitions and retry the batch with backoff; None when stopped first."""
        paused = consumer.assignment()
        consumer.pause(paused)
        retrying = Retrying(
            retry=retry_if_exception_type(RETRYABLE),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.5),
            stop=stop_when_event_set(self.stop),
            before_sleep=lambda state: self._on_transient(
                state.outcome.exception() if state.outcome else None
            ),
            sleep=self._sleep,
        )
        try:
            return retrying(lambda: self._apply_once(events, failures))
        except RetryError:
            return None
        finally:
            consumer.resume(paused)

    def _sleep(self, seconds: float) -> None:
        self.stop.wait(seconds)

    def _on_transient(self, exc: BaseException | None) -> None:
        self._drop_connection()
        self.metrics.retries.labels(self.processor.name).inc()
        log.warning("transient failure, retrying the batch: %s", exc, extra=self._ctx())

    def _commit(self, consumer: Consumer, msgs: list[Message]) -> None:
        last: dict[tuple[str, int], int] = {}
        for msg in msgs:
            if msg.error() is None:
                last[(str(msg.topic()), int(msg.partition() or 0))] = int(msg.offset() or 0)
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # e.g. rebalanced meanwhile: the ledger covers re-delivery
            log.warning(
                "offset commit failed (will be re-delivered and skipped): %s",
                exc,
                extra=self._ctx(),
            )

    def _account(self, outcome: Outcome, skipped: int, seconds: float) -> None:
        m, name = self.metrics, self.processor.name
        stats = self.stats
        stats.batches += 1
        stats.applied += len(outcome.applied)
        stats.duplicates += outcome.duplicates
        stats.dead += len(outcome.dead)
        stats.skipped += skipped
        m.batch_duration.labels(name, self.lane).observe(seconds)
        for (topic, event_type), n in Counter(
            (e.topic, e.event_type) for e in outcome.applied
        ).items():
            m.processed.labels(name, topic, event_type).inc(n)
        if outcome.duplicates:
            m.duplicate.labels(name, self.topics[0], "*").inc(outcome.duplicates)
        if outcome.emitted:
            m.emitted.labels(name).inc(outcome.emitted)
        now = dt.datetime.now(dt.UTC)
        latency = m.latency.labels(name, self.lane)
        for event in outcome.applied[::LATENCY_SAMPLE]:
            occurred = event.envelope.get("occurred_at")
            if isinstance(occurred, dt.datetime):
                latency.observe(max(0.0, (now - occurred).total_seconds()))
        for failure in outcome.dead:
            m.failed.labels(name, failure.topic, failure.event_type or "undecodable").inc()
            m.dead_lettered.labels(name, failure.topic, failure.error_code).inc()
            log.warning(
                "dead-lettered %s[%d]@%d: %s",
                failure.topic,
                failure.partition,
                failure.offset,
                failure.error,
                extra=self._ctx(event_id=failure.event_id, correlation_id=failure.correlation_id),
            )
