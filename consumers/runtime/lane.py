"""One consumer loop: a processor's routine or critical lane.

consume a batch -> decode (``decode.py``) -> apply in one transaction (``apply.py``; transient
errors retried with the batch kept and consumption paused) -> commit the batch's offsets
(``offsets.py``) -> account (``accounting.py``). Offsets are committed only after the
transaction committed; a crash in between re-delivers the batch, and the ledger skips it.

The routine lane decodes batch N+1 while its database thread applies batch N; transactions
and offset commits still happen one batch after another, in order. When a stop comes while
batch N waits on a retry, N is abandoned: nothing of it and nothing after it is applied or
committed (N+1 is dropped unapplied), and the lane reports how many records it left; they are
consumed again at the next start.

Between batches the routine lane also releases the held events of keys whose dead letters
were resolved (``hold.py``) and reports what is held. (This module is a little over 300
lines: the consume loop, the overlap with the database thread, the rebalance callbacks and
the releases share the one in-flight batch, and stay together so that its life is readable
in one place; the pure steps live in decode.py, offsets.py, retry.py and accounting.py.)
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from supplybus import crashpoints
from supplybus.adapters.kafka import (
    leaves_group_on_close,
    make_consumer,
    release,
    release_frames,
)
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.runtime import hold
from supplybus.consumers.runtime.accounting import LaneStats, account, report_holds, report_lag
from supplybus.consumers.runtime.apply import BatchApplier, Outcome
from supplybus.consumers.runtime.decode import BatchDecoder, DecodedBatch
from supplybus.consumers.runtime.faults import is_transient
from supplybus.consumers.runtime.offsets import commit_offsets
from supplybus.consumers.runtime.priority import PriorityGate
from supplybus.consumers.runtime.processor import Processor
from supplybus.consumers.runtime.retry import retry_paused
from supplybus.consumers.runtime.start import format_start, start_partitions
from supplybus.errors import SupplybusError
from supplybus.events.catalog import EventCatalog
from supplybus.events.topics import LaneName
from supplybus.metrics import Metrics

log = logging.getLogger("supplybus.runtime")


@dataclass
class _InFlight:
    """A batch whose transaction is running on the lane's database thread."""

    future: Future[Outcome]
    msgs: list[Message]
    batch: DecodedBatch
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
        self.unapplied = 0  # records left unapplied by a stop during a retry
        self.decoder = BatchDecoder(catalog, processor.consumes)
        self.applier = BatchApplier(processor, catalog, self._dlq_topic)
        self._conn: psycopg.Connection | None = None
        self._next_lag_at = 0.0
        self._next_release_at = 0.0
        #: The routine lane releases the held events of keys whose dead letters were resolved
        #: (both lanes' events of a key are held together, in order, per processor).
        self.releases_held = lane == "routine" and processor.on_dead_letter == "hold_key"
        self._pending: _InFlight | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"{processor.name}-{lane}-db")
        suffix = ".critical" if lane == "critical" else ""
        self.group_id = f"{settings.group_prefix}.{processor.name}{suffix}"

    @property
    def abandoned(self) -> bool:
        return self.unapplied > 0

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
            if isinstance(exc, SupplybusError) and exc.code == "DEAD_LETTER_BUDGET":
                self.metrics.lane_halted.labels(self.processor.name, exc.code).inc()
            log.exception("lane stopped by an error", extra=self._ctx())
            release_frames(exc)  # the consumer must not outlive the lane (see below)
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
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        log.info("lane started on %s", ", ".join(self.topics), extra=self._ctx())
        try:
            while not self.stop.is_set() and not self.abandoned:
                if self.lane == "routine":
                    self.gate.wait_clear()
                msgs = consumer.consume(self.processor.batch_size, timeout=0.2)
                if time.monotonic() >= self._next_lag_at:
                    self._report_lag(consumer)
                if self.releases_held and time.monotonic() >= self._next_release_at:
                    self._release_held(consumer)
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
            # Without LeaveGroup the consumer must be destroyed now, not whenever the cyclic
            # garbage collector runs: a retried batch's error keeps the frames that hold it in
            # a cycle (error -> traceback -> frame -> future -> error), and a live consumer
            # would hold its partitions until max.poll.interval.ms (5 minutes).
            gc.collect()
            log.info(
                "lane stopped (%s)",
                "left the group" if leave else "expires from the group",
                extra=self._ctx(),
            )

    def _report_lag(self, consumer: Consumer, every_s: float = 10.0) -> None:
        self._next_lag_at = time.monotonic() + every_s
        report_lag(consumer, self.metrics, self.processor.name)
        if self.releases_held and self._finish(consumer):
            try:
                held = self._worker.submit(self._held_keys).result()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                return
            report_holds(held, self.processor, self.metrics)

    def _held_keys(self) -> list[hold.HeldKey]:
        conn = self._connection()
        with conn.transaction():
            return hold.held(conn, self.processor.name)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # a partition the group never committed starts at the processor's start (ADR 0007)
        started = start_partitions(self.settings, consumer, partitions, self.processor.start)
        self.stats.assigned = True
        self.stats.partitions.update((tp.topic, tp.partition) for tp in partitions)
        self.stats.last_record_at = time.monotonic()
        log.info("assigned %d partition(s)", len(partitions), extra=self._ctx())
        if started:
            log.info(
                "%d partition(s) never committed start at %s",
                len(started),
                format_start(self.processor.start),
                extra=self._ctx(),
            )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._finish(consumer)  # commit finished work before the partitions move
        self.stats.partitions.difference_update((tp.topic, tp.partition) for tp in partitions)

    def _handle(self, consumer: Consumer, msgs: list[Message]) -> None:
        """Decode this batch while the previous one is applied, then hand this one over.

        Batch N+1 is submitted only once batch N committed and its offsets were committed; if
        N was abandoned (a stop during its retry), N+1 is dropped unapplied. The critical lane
        does not overlap: it finishes each batch at once.
        """
        started = time.perf_counter()
        self.stats.busy = True  # from here until a finish leaves nothing in flight
        batch = self.decoder(msgs)
        for err in batch.consumer_errors:
            log.warning("consumer error: %s", err.str(), extra=self._ctx())
        if not self._finish(consumer):
            self.unapplied += len(msgs)
            return
        self.stats.busy = True
        future = self._worker.submit(self._apply_once, batch)
        self._pending = _InFlight(future, msgs, batch, started)
        if self.lane == "critical":
            self._finish(consumer)

    def _release_held(self, consumer: Consumer, every_s: float = 1.0) -> None:
        """Apply, in order, the held events of keys no longer held (between batches)."""
        self._next_release_at = time.monotonic() + every_s
        if not self._finish(consumer):
            return
        started = time.perf_counter()
        try:
            outcome = self._worker.submit(self._release_once).result()
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._on_transient(exc)  # they stay held; the next round tries again
            return
        if outcome is not None:
            self.stats.last_record_at = time.monotonic()
            self._account(outcome, 0, started)
            log.info("released %d held event(s)", len(outcome.applied), extra=self._ctx())

    def _release_once(self) -> Outcome | None:
        return self.applier.release(self._connection(), self.decoder)

    def _apply_once(self, batch: DecodedBatch) -> Outcome:
        return self.applier.apply(self._connection(), batch.events, batch.failures)

    def _finish(self, consumer: Consumer) -> bool:
        """Wait for the batch in flight, retry it while the failure is transient, commit its
        offsets. False when the batch was abandoned (stopped before it could be applied)."""
        pending, self._pending = self._pending, None
        if pending is None:
            self.stats.busy = False
            return not self.abandoned
        try:
            try:
                outcome: Outcome | None = pending.future.result()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self._on_transient(exc)
                outcome = retry_paused(
                    consumer,
                    self.stop,
                    lambda: self._apply_once(pending.batch),
                    self._on_transient,
                )
            if outcome is None:
                self.unapplied += len(pending.msgs)
                log.error(
                    "stopped while a batch of %d record(s) waited on a retry: nothing of it or "
                    "after it was committed; it is consumed again at the next start",
                    len(pending.msgs),
                    extra=self._ctx(),
                )
                return False
            crashpoints.reached("after-db-commit")
            self._commit(consumer, pending.msgs)
            self._account(outcome, pending.batch.skipped, pending.started)
            self.stats.last_record_at = time.monotonic()  # quiet counts from the last commit
            return True
        finally:
            self.stats.busy = self._pending is not None

    def _account(self, outcome: Outcome, skipped: int, started: float) -> None:
        seconds = time.perf_counter() - started
        account(self.stats, self.metrics, self.processor.name, self.lane, outcome, skipped, seconds)

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.settings)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _on_transient(self, exc: BaseException | None) -> None:
        self._drop_connection()
        self.metrics.retries.labels(self.processor.name).inc()
        log.warning("transient failure, retrying the batch: %s", str(exc), extra=self._ctx())

    def _commit(self, consumer: Consumer, msgs: list[Message]) -> None:
        try:
            consumer.commit(offsets=commit_offsets(msgs), asynchronous=False)
        except KafkaException as exc:  # e.g. rebalanced meanwhile: the ledger covers re-delivery
            log.warning(
                "offset commit failed (will be re-delivered and skipped): %s",
                str(exc),
                extra=self._ctx(),
            )
        crashpoints.reached("after-offset-commit")
