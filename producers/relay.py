"""The outbox relay: publishes outbox rows in id order, exactly as they are stored.

One relay at a time per outbox table (a PostgreSQL advisory lock; a second relay waits as a
standby and takes over when the first one's session ends). The table is supplybus's own
``outbox`` unless an ``OutboxLocation`` names another database and table with the same
columns (a source system's outbox, producers/source_outbox.py). A round reads pending rows,
produces them with the idempotent producer, waits for EVERY delivery report, then records
each row's outcome:

- acknowledged: marked sent, never produced again. If the database is down at that moment,
  the acknowledged ids are kept and marked before anything else once it is back;
- a permanent error (``is_permanent``: too large, invalid topic, invalid record): the row
  is parked with its reason (metric ``outbox_parked``, an ERROR log line) and the rows
  behind it go on. A broker answers such an error for a whole batch, so a row that
  received it from the broker is first sent again alone: only a row that fails alone is
  parked. A dead letter too large for the producer's ``message.max.bytes`` (estimated
  before producing, or refused with a size error) is published as a reference record
  instead: same key and headers, plus ``sb-dlq-value-withheld: <size>``, and no value (its
  bytes stay in ``dead_letters``);
- any other error: the row stays pending and the next round (1 s later) sends it again.

Order per key: the producer never gives up on a retriable error (``message.timeout.ms=0``),
and the idempotent producer keeps a partition's order through its retries, so a transient
failure (broker down, leader moving) delays the rows behind it instead of opening a gap that
a later row of the same key would jump over. The price: while the broker is unreachable a
round waits, however long. The gaps left are deliberate: a parked row (its successors go
on), a row that shared a batch refused by the broker and is sent again alone after the
rows behind it, and a non-retriable error the classification does not know.

At least once: a crash (or a stop while the broker is down) between the broker's
acknowledgement and the mark re-publishes those rows; events carry ``sb-event-id`` and dead
letters their ``sb-dlq-*`` identity, so consumers skip the copies.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from psycopg import sql

from supplybus import crashpoints
from supplybus.adapters.kafka import produce, producer_config
from supplybus.adapters.postgres import connect, is_transient
from supplybus.config import Settings
from supplybus.errors import TransientError
from supplybus.metrics import Metrics
from supplybus.producers import outbox

log = logging.getLogger("supplybus.relay")
_LOCK_ID = 0x5B0B  # advisory lock (with the location's name): one active relay per outbox

#: librdkafka errors that a record meets again however often it is sent: the row is parked.
PERMANENT = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,  # over message.max.bytes (producer) or the topic's limit
        KafkaError.RECORD_LIST_TOO_LARGE,  # over the broker's segment size
        KafkaError.TOPIC_EXCEPTION,  # invalid topic name
        KafkaError.INVALID_RECORD,  # e.g. a record without key on a compacted topic
    }
)
#: Of those, the errors a broker answers for a whole batch (a neighbour may be the culprit).
_BATCH = frozenset(
    {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_RECORD}
)
_TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})

WITHHELD = "sb-dlq-value-withheld"
_DLQ_PREFIX = "sb-dlq-"
_RECORD_OVERHEAD = 36  # librdkafka's RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD
_DEFAULT_MAX_BYTES = 1_000_000  # librdkafka's default message.max.bytes


def is_permanent(err: KafkaError) -> bool:
    """True when sending the record again cannot succeed (the row is parked)."""
    return err.code() in PERMANENT and not err.fatal()


def record_size(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]]
) -> int:
    """An upper bound of a record's size as librdkafka checks it against message.max.bytes."""
    # per header: two varints (at most 5 bytes each), the name and the value
    heads = sum(10 + len(n.encode()) + len(v or b"") for n, v in headers)
    return _RECORD_OVERHEAD + len(key or b"") + len(value or b"") + heads


def _transient(exc: BaseException) -> bool:
    """A database error worth retrying (SQLSTATE classification of adapters/postgres.py)."""
    return isinstance(exc, TransientError) or is_transient(exc)


def _is_dead_letter(row: outbox.Row) -> bool:
    return any(name.startswith(_DLQ_PREFIX) for name, _ in row.headers)


@dataclass(frozen=True)
class OutboxLocation:
    """Where an outbox lives: ``connect`` opens an autocommit connection to its database,
    ``table`` is the table (the columns of supplybus's ``outbox``), ``name`` keys the advisory
    lock that keeps one relay active per table."""

    connect: Callable[[], psycopg.Connection]
    table: sql.Composable
    name: str

    @classmethod
    def of(cls, settings: Settings) -> OutboxLocation:
        """supplybus's own outbox, in the settings' schema."""
        return cls(lambda: connect(settings, autocommit=True), outbox.OUTBOX, settings.db_schema)


@dataclass
class RelayStats:
    published: int = 0
    parked: int = 0
    withheld: int = 0
    retrying: int = 0  # rows left pending by the last round's transient errors
    rounds: int = 0  # rounds completed
    standby: int = 0  # times the lock was held by another relay (this one stood by)
    backlog: int = 0  # pending rows at the end of the last round


@dataclass
class _Report:
    error: KafkaError | None
    withheld: bool  # a dead letter's reference record (value withheld) was sent
    local: bool = False  # refused by produce() itself, not by the broker


@dataclass
class _Outcomes:
    """Outcomes not yet written to the database (kept across a database outage)."""

    sent: list[int] = field(default_factory=list)
    parked: list[tuple[int, str, str]] = field(default_factory=list)


class OutboxRelay:
    """Publishes the outbox. ``producer_overrides`` are librdkafka properties on top of the
    relay's (e.g. ``{"message.max.bytes": 4000}``)."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        *,
        producer_overrides: Mapping[str, Any] | None = None,
        batch_size: int = 5000,
        location: OutboxLocation | None = None,
    ) -> None:
        self.settings = settings
        self.location = location or OutboxLocation.of(settings)
        self.table = self.location.table
        self.metrics = metrics or Metrics()
        self.config = producer_config(settings, **{"message.timeout.ms": 0})
        self.config.update(producer_overrides or {})
        self.max_bytes = int(self.config.get("message.max.bytes", _DEFAULT_MAX_BYTES))
        self.producer = Producer(self.config)
        self.batch_size = batch_size
        self.stats = RelayStats()
        self.error: BaseException | None = None
        self._todo = _Outcomes()
        self._stop = threading.Event()

    def run(self, stop: threading.Event, idle_sleep: float = 0.05) -> None:
        """Publish until ``stop`` is set; waits as a standby while another relay holds the lock.

        An unexpected error is kept in ``error`` and sets ``stop`` (the runner exits 1).
        """
        self._stop = stop
        try:
            self._run(stop, idle_sleep)
        except BaseException as exc:
            self.error = exc
            log.exception("relay stopped by an error")
            stop.set()

    def _run(self, stop: threading.Event, idle_sleep: float) -> None:
        conn = self._connect_with_lock(stop)
        try:
            while conn is not None and not stop.is_set():
                try:
                    if self.publish_round(conn) == 0:
                        stop.wait(1.0 if self.stats.retrying else idle_sleep)
                except (psycopg.Error, TransientError) as exc:
                    if not _transient(exc):
                        raise
                    log.warning("relay: database unavailable, retrying: %s", exc)
                    conn.close()
                    stop.wait(1.0)
                    conn = self._connect_with_lock(stop)
        finally:
            if conn is not None:
                conn.close()
            self.producer.flush(1.0)  # rounds wait for their reports: nothing is left but
            # records of a round stopped while the broker was away (they stay pending)

    def _connect_with_lock(self, stop: threading.Event) -> psycopg.Connection | None:
        while not stop.is_set():
            conn: psycopg.Connection | None = None
            try:
                conn = self.location.connect()
                row = conn.execute(
                    "SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                    (_LOCK_ID, self.location.name),
                ).fetchone()
                if row and row[0]:
                    return conn
                self.stats.standby += 1
            except (psycopg.Error, TransientError) as exc:
                if not _transient(exc):
                    raise
                log.warning("relay: %s", exc)
            if conn is not None:
                conn.close()
            stop.wait(1.0)  # the database is away, or another relay is active: stand by
        return None

    def publish_round(self, conn: psycopg.Connection) -> int:
        """Publish one batch of pending rows; returns how many were sent or parked."""
        self._write(conn)  # outcomes a database outage kept from the previous round
        rows = outbox.pending(conn, self.batch_size, table=self.table)
        self.stats.retrying = 0
        if rows:
            reports: dict[int, _Report] = {}
            for row in rows:
                self._send(row, reports)
            self._wait()
            crashpoints.reached("relay-after-ack")
            if any(r.error is not None and r.error.fatal() for r in reports.values()):
                log.warning("relay: the producer failed for good; starting a new one")
                self.producer = Producer(self.config)  # its failed rows are sent again
            for row in rows:
                self._settle(row, reports.get(row.id), alone=False)
        done = len(self._todo.sent) + len(self._todo.parked)
        self._write(conn)
        self._backlog(conn)
        self.stats.rounds += 1  # counted once backlog is current: "rounds > 0" means it is
        return done

    def _send(
        self, row: outbox.Row, reports: dict[int, _Report], *, withheld: bool = False
    ) -> None:
        value, headers = row.value, row.headers
        if _is_dead_letter(row) and not withheld:
            withheld = record_size(row.key, value, headers) > self.max_bytes
        if withheld:
            value, headers = None, [*headers, (WITHHELD, str(len(row.value or b"")).encode())]

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            reports[row.id] = _Report(err, withheld)

        try:
            produce(self.producer, row.topic, value, row.key, headers, on_delivery)
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() in _TOO_LARGE and _is_dead_letter(row) and not withheld:
                self._send(row, reports, withheld=True)
            else:
                reports[row.id] = _Report(err, withheld, local=True)

    def _wait(self) -> None:
        """Serve delivery reports until every record has one (or stop, then 5 s at most)."""
        waited = 0
        while self.producer.flush(1.0) > 0:
            waited += 1
            if self._stop.is_set():
                self.producer.flush(5.0)
                return
            if waited % 30 == 0:
                log.warning(
                    "relay: %d record(s) unacknowledged for %d s (is the broker reachable?)",
                    len(self.producer),
                    waited,
                )

    def _alone(self, row: outbox.Row, withheld: bool) -> _Report | None:
        reports: dict[int, _Report] = {}
        self._send(row, reports, withheld=withheld)
        self._wait()
        return reports.get(row.id)

    def _settle(self, row: outbox.Row, report: _Report | None, *, alone: bool) -> None:
        if report is None:  # no report (stopping while the broker is away): stays pending
            return
        err = report.error
        if err is None:
            self._todo.sent.append(row.id)
            if report.withheld:
                self.stats.withheld += 1
                log.warning("relay: dead letter %d over message.max.bytes: reference sent", row.id)
        elif not is_permanent(err):
            self.stats.retrying += 1
            log.warning("relay: outbox row %d not published, retrying: %s", row.id, err.str())
        elif not alone and not report.local and err.code() in _BATCH:
            self._settle(row, self._alone(row, report.withheld), alone=True)
        elif err.code() in _TOO_LARGE and _is_dead_letter(row) and not report.withheld:
            self._settle(row, self._alone(row, True), alone=True)
        else:
            reason = f"{err.str()} (topic {row.topic}, value {len(row.value or b'')} bytes)"
            self._todo.parked.append((row.id, err.name(), reason))
            log.error("relay: outbox row %d parked, it can never be published: %s", row.id, reason)

    def _write(self, conn: psycopg.Connection) -> None:
        todo = self._todo
        if todo.sent or todo.parked:
            with conn.transaction():
                outbox.mark_sent(conn, todo.sent, table=self.table)
                outbox.park(conn, todo.parked, table=self.table)
            self.stats.published += len(todo.sent)
            self.stats.parked += len(todo.parked)
            self.metrics.outbox_published.inc(len(todo.sent))
            self._todo = _Outcomes()

    def _backlog(self, conn: psycopg.Connection) -> None:
        pending, parked = outbox.backlog(conn, table=self.table)
        self.stats.backlog = pending
        self.metrics.outbox_backlog.set(pending)
        self.metrics.outbox_parked.set(parked)
