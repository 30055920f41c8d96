"""The outbox relay: publishes outbox rows in id order with the idempotent producer.

One relay at a time per supplybus schema (a PostgreSQL advisory lock; a second relay waits
as a standby and takes over when the first one's session ends). Each round reads unsent rows
in order, produces them, waits for every acknowledgement, then marks the acknowledged prefix
sent. A crash between the broker's
acknowledgement and the mark re-publishes those rows: downstream ledgers skip them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import partial

import psycopg
from confluent_kafka import KafkaError, Message, Producer

from supplybus.adapters.kafka import make_producer, produce
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.errors import DeliveryError, TransientError
from supplybus.events import headers as h
from supplybus.metrics import Metrics
from supplybus.producers.outbox import decode_headers

log = logging.getLogger("supplybus.relay")
_LOCK_ID = 0x5B0B  # advisory lock (with the schema): one active relay per supplybus schema
_FETCH = """
SELECT id, topic, key, value, headers, event_id::text, event_type, correlation_id, causation_id,
       priority, traceparent
FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT %s
"""


@dataclass
class RelayStats:
    published: int = 0
    rounds: int = 0
    backlog: int = 0


class OutboxRelay:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        producer: Producer | None = None,
        batch_size: int = 5000,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.producer = producer or make_producer(settings)
        self.batch_size = batch_size
        self.stats = RelayStats()
        self.error: BaseException | None = None

    def run(self, stop: threading.Event, idle_sleep: float = 0.05) -> None:
        """Publish until ``stop`` is set; waits as a standby while another relay holds the lock.

        An unexpected error is kept in ``error`` and sets ``stop`` (the runner exits 1).
        """
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
                        stop.wait(idle_sleep)
                except DeliveryError as exc:  # rows stay unsent and go out again next round
                    log.warning("%s; retrying", exc)
                    stop.wait(1.0)
                except (psycopg.OperationalError, TransientError) as exc:
                    log.warning("relay: database unavailable, retrying: %s", exc)
                    conn.close()
                    stop.wait(1.0)
                    conn = self._connect_with_lock(stop)
        finally:
            if conn is not None:
                conn.close()
            self.producer.flush(10)

    def _connect_with_lock(self, stop: threading.Event) -> psycopg.Connection | None:
        while not stop.is_set():
            try:
                conn = connect(self.settings, autocommit=True)
            except TransientError as exc:
                log.warning("relay: %s", exc)
                stop.wait(1.0)
                continue
            row = conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOCK_ID, self.settings.db_schema)
            ).fetchone()
            if row and row[0]:
                return conn
            conn.close()
            stop.wait(1.0)  # another relay is active: stand by
        return None

    def publish_round(self, conn: psycopg.Connection) -> int:
        """Publish one batch of unsent rows; returns how many were marked sent."""
        rows = conn.execute(_FETCH, (self.batch_size,)).fetchall()
        self.stats.rounds += 1
        if not rows:
            self._backlog(conn, 0)
            return 0
        acked: dict[int, KafkaError | None] = {}

        def on_delivery(row_id: int, err: KafkaError | None, msg: Message) -> None:
            acked[row_id] = err

        for row in rows:
            (row_id, topic, key, value, extra, event_id, event_type, corr, cause, prio, trace) = row
            headers = decode_headers(extra)
            if event_id and event_type and not headers:
                headers = [(h.EVENT_ID, event_id.encode()), (h.EVENT_TYPE, event_type.encode())]
                headers += [
                    (n, v.encode())
                    for n, v in (
                        (h.CORRELATION_ID, corr),
                        (h.CAUSATION_ID, cause),
                        (h.PRIORITY, prio),
                        (h.TRACEPARENT, trace),
                    )
                    if v
                ]
            produce(self.producer, topic, value, key, headers, partial(on_delivery, row_id))
        remaining = self.producer.flush(30)
        done: list[int] = []
        for row in rows:  # mark the acknowledged prefix only: order is kept on re-send
            if row[0] in acked and acked[row[0]] is None:
                done.append(row[0])
            else:
                break
        if done:
            conn.execute("UPDATE outbox SET sent_at = now() WHERE id = ANY(%s)", (done,))
        self.stats.published += len(done)
        self.metrics.outbox_published.inc(len(done))
        if len(done) < len(rows):
            first_bad = next((e for e in acked.values() if e is not None), None)
            detail = first_bad.str() if first_bad else f"{remaining} unacknowledged"
            raise DeliveryError(
                f"relay: {len(rows) - len(done)} outbox row(s) not published: {detail}"
            )
        self._backlog(conn, None)
        return len(done)

    def _backlog(self, conn: psycopg.Connection, known: int | None) -> None:
        if known is None:
            row = conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()
            known = int(row[0]) if row else 0
        self.stats.backlog = known
        self.metrics.outbox_backlog.set(known)
