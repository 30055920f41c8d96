"""Dead letters: a PostgreSQL record with the original bytes and lineage, plus an outbox row
that the relay publishes to the source topic's dead-letter topic.

Both are written in the batch's transaction: if they cannot be written, the transaction fails
and the offsets are not committed, so nothing is ever dropped.
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from supplybus.errors import SupplybusError
from supplybus.producers import outbox

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


@dataclass(frozen=True)
class Failure:
    """A record that cannot be applied, with where it came from and why."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    error: BaseException
    event_id: str | None = None
    event_type: str | None = None
    correlation_id: str | None = None

    @property
    def error_code(self) -> str:
        return self.error.code if isinstance(self.error, SupplybusError) else "UNEXPECTED"


def stack_digest(error: BaseException) -> str:
    """Groups failures of the same code path: a hash of the frames' files and functions."""
    frames = traceback.extract_tb(error.__traceback__)
    shape = "|".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.name}" for f in frames)
    return hashlib.sha1(f"{type(error).__name__}|{shape}".encode()).hexdigest()[:12]


_UPSERT = """
INSERT INTO dead_letters (processor, topic, partition, "offset", record_timestamp, key, value,
    headers, event_id, event_type, correlation_id, error_class, error_code, message,
    stack_digest, dlq_topic)
VALUES (%s, %s, %s, %s, to_timestamp(%s / 1000.0), %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s,
    %s, %s)
ON CONFLICT (processor, topic, partition, "offset") DO UPDATE
    SET attempts = dead_letters.attempts + 1, last_failed_at = now(),
        error_class = EXCLUDED.error_class, error_code = EXCLUDED.error_code,
        message = EXCLUDED.message, stack_digest = EXCLUDED.stack_digest
RETURNING id, attempts, first_failed_at, last_failed_at, (xmax = 0) AS inserted
"""


def record(conn: psycopg.Connection, processor: str, dlq_topic: str, failure: Failure) -> int:
    """Store the dead letter and queue it for the DLQ topic; returns its id."""
    message = str(failure.error)[:4000] or type(failure.error).__name__
    digest = stack_digest(failure.error)
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
            failure.event_id,
            failure.event_type,
            failure.correlation_id,
            type(failure.error).__name__,
            failure.error_code,
            message,
            digest,
            dlq_topic,
        ),
    ).fetchone()
    if row is None:  # pragma: no cover - RETURNING always yields the row
        raise RuntimeError("dead letter upsert returned nothing")
    dead_id, attempts, first, last, inserted = row
    if inserted:
        lineage = [
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
        if failure.correlation_id and all(k != H_CORRELATION for k, _ in original):
            lineage.append((H_CORRELATION, failure.correlation_id))
        outbox.append_raw(
            conn,
            source=processor,
            topic=dlq_topic,
            key=failure.key,
            value=failure.value,
            headers=[*original, *((k, v.encode()) for k, v in lineage)],
            event_id=failure.event_id,
            event_type=failure.event_type,
            correlation_id=failure.correlation_id,
        )
    return int(dead_id)
