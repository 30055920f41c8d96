"""Dead letters: a PostgreSQL record with the original bytes and lineage, plus an outbox row
that the relay publishes to the source topic's dead-letter topic.

Both are written in the batch's transaction: if they cannot be written, the transaction fails
and the offsets are not committed, so nothing is ever dropped. A dead letter's identity is a
digest of the record (topic, partition, offset, timestamp, key, value): a re-delivery of the
same record adds an attempt; a new record at an offset reused after a broker reset is a new
dead letter. Its stable id travels as header ``sb-dlq-id``: the DLQ topic is at-least-once
(a relay crash after the broker's ack re-sends), and consumers dedupe on that id.

Whatever a foreign producer wrote must be storable: header values may be null, text fields
may hold NUL characters (PostgreSQL text cannot: they are written as ``\\x00``), and an event
id that is not a UUID is kept only in the original bytes.
"""

from __future__ import annotations

import hashlib
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import psycopg
from confluent_kafka import Message

from supplybus.consumers.runtime.dlq_store import LogEntry
from supplybus.consumers.runtime.dlq_store import log as log_dead_letter
from supplybus.errors import SupplybusError
from supplybus.producers import outbox

H_ID = "sb-dlq-id"
H_TOPIC = "sb-dlq-original-topic"
H_PARTITION = "sb-dlq-original-partition"
H_OFFSET = "sb-dlq-original-offset"
H_TIMESTAMP = "sb-dlq-original-timestamp"
H_PROCESSOR = "sb-dlq-processor"
H_ERROR_CLASS = "sb-dlq-error-class"
H_ERROR_CODE = "sb-dlq-error-code"
H_MESSAGE = "sb-dlq-error-message"
H_STACK = "sb-dlq-stack-digest"
H_ATTEMPTS = "sb-dlq-attempts"
H_FIRST = "sb-dlq-first-failure"
H_LAST = "sb-dlq-last-failure"
H_CORRELATION = "sb-correlation-id"
_ID_NAMESPACE = uuid.UUID("0b9e3c52-7a51-4c1e-8f0e-d1e5a1d7c0de")

Headers = Sequence[tuple[str, bytes | None]]


@dataclass(frozen=True)
class Failure:
    """A record that cannot be applied, with where it came from and why."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    error: BaseException
    event_id: str | None = None
    event_type: str | None = None
    correlation_id: str | None = None

    @classmethod
    def of_message(cls, msg: Message, error: BaseException, **event: str | None) -> Failure:
        return cls(
            str(msg.topic()),
            int(msg.partition() or 0),
            int(msg.offset() or 0),
            msg.timestamp()[1],
            msg.key(),
            msg.value(),
            cast(Headers, msg.headers() or []),
            error,
            **event,
        )

    @property
    def error_code(self) -> str:
        return self.error.code if isinstance(self.error, SupplybusError) else "UNEXPECTED"

    @property
    def digest(self) -> str:
        """The record's identity: where it was read, when it was written, its bytes."""
        h = hashlib.sha256()
        for part in (
            self.topic.encode(),
            str(self.partition).encode(),
            str(self.offset).encode(),
            str(self.timestamp_ms).encode(),
            self.key,
            self.value,
        ):
            h.update(b"-" if part is None else len(part).to_bytes(8, "big") + part)
        return h.hexdigest()

    def dead_letter_id(self, processor: str) -> str:
        return str(uuid.uuid5(_ID_NAMESPACE, f"{processor}\x1f{self.digest}"))


def stack_digest(error: BaseException) -> str:
    """Groups failures of the same code path: a hash of the frames' files and functions."""
    frames = traceback.extract_tb(error.__traceback__)
    shape = "|".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.name}" for f in frames)
    return hashlib.sha1(f"{type(error).__name__}|{shape}".encode()).hexdigest()[:12]


def _text(value: str | None, limit: int = 4000) -> str | None:
    return None if value is None else value[:limit].replace("\x00", "\\x00")


def _uuid_or_none(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value)) if value is not None else None
    except ValueError:
        return None


_UPSERT = """
INSERT INTO dead_letters (processor, topic, partition, "offset", record_timestamp, key, value,
    headers, event_id, event_type, correlation_id, error_class, error_code, message,
    stack_digest, dlq_topic, record_digest, dead_letter_id)
VALUES (%s, %s, %s, %s, to_timestamp(%s / 1000.0), %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s,
    %s, %s, %s, %s)
ON CONFLICT (processor, record_digest) DO UPDATE
    SET attempts = dead_letters.attempts + 1, last_failed_at = now(),
        error_class = EXCLUDED.error_class, error_code = EXCLUDED.error_code,
        message = EXCLUDED.message, stack_digest = EXCLUDED.stack_digest
RETURNING id, attempts, first_failed_at, last_failed_at, (xmax = 0) AS inserted, status
"""


def record(conn: psycopg.Connection, processor: str, dlq_topic: str, failure: Failure) -> bool:
    """Store the dead letter and queue it for the DLQ topic (first time only); True while it
    is open (not already resolved by an operator: a late re-delivery of a resolved record)."""
    message = _text(str(failure.error)) or type(failure.error).__name__
    digest = stack_digest(failure.error)
    dead_letter_id = failure.dead_letter_id(processor)
    event_id = _uuid_or_none(failure.event_id)
    correlation_id = _text(failure.correlation_id, 200)
    row = conn.execute(
        _UPSERT,
        (
            processor,
            failure.topic,
            failure.partition,
            failure.offset,
            failure.timestamp_ms,
            failure.key,
            failure.value,
            outbox.encode_headers(failure.headers),
            event_id,
            _text(failure.event_type, 200),
            correlation_id,
            type(failure.error).__name__,
            failure.error_code,
            message,
            digest,
            dlq_topic,
            failure.digest,
            dead_letter_id,
        ),
    ).fetchone()
    if row is None:  # pragma: no cover - RETURNING always yields the row
        raise RuntimeError("dead letter upsert returned nothing")
    _, attempts, first, last, inserted, status = row
    if not inserted:  # failing again (a re-delivery, a replay): the failure history
        detail = {"attempt": attempts, "error_code": failure.error_code, "message": message}
        entry = LogEntry(dead_letter_id, processor, "failed", "failed-again", detail)
        log_dead_letter(conn, [entry])
    else:
        lineage = [
            (H_ID, dead_letter_id),
            (H_TOPIC, failure.topic),
            (H_PARTITION, str(failure.partition)),
            (H_OFFSET, str(failure.offset)),
            (H_TIMESTAMP, str(failure.timestamp_ms)),
            (H_PROCESSOR, processor),
            (H_ERROR_CLASS, type(failure.error).__name__),
            (H_ERROR_CODE, failure.error_code),
            (H_MESSAGE, message[:1000]),
            (H_STACK, digest),
            (H_ATTEMPTS, str(attempts)),
            (H_FIRST, first.isoformat()),
            (H_LAST, last.isoformat()),
        ]
        original = [(k, v) for k, v in failure.headers if not k.startswith("sb-dlq-")]
        if correlation_id and all(k != H_CORRELATION for k, _ in original):
            lineage.append((H_CORRELATION, correlation_id))
        outbox.append_raw(
            conn,
            source=processor,
            topic=dlq_topic,
            key=failure.key,
            value=failure.value,
            headers=[*original, *((k, v.encode()) for k, v in lineage)],
            event_id=event_id,
            event_type=_text(failure.event_type, 200),
            correlation_id=correlation_id,
        )
    return bool(status == "open")
