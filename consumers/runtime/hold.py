"""Per-key hold: a key's later events wait, in order, behind its dead letter.

Kafka keeps a key's events in order within a partition; a dead letter would break that order
if later events of the key were applied over it (an approval before its requisition, a receipt
before its PO). For a processor with ``on_dead_letter="hold_key"``, the runtime, in the batch's
transaction:

- records a hold ``(processor, key, dead letter id)`` when an event of key K is dead-lettered;
- parks every later event of K (this batch's and later batches', from either lane) in
  ``held_events`` with its original record, unapplied;
- releases them, in order, through the same ledger and handler (``take_released``) once every
  dead letter K waits on is resolved (``resolve``: replayed or skipped by an operator).

Events without a Kafka key cannot be ordered by key and are never held. Nothing here deletes
a held event except ``take_released``, inside the transaction that applies it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import psycopg
from confluent_kafka import Message

from supplybus.consumers.runtime.processor import Event
from supplybus.errors import ConfigError
from supplybus.producers.outbox import decode_headers, encode_headers

_HELD = """
SELECT key FROM key_holds WHERE processor = %(p)s AND key = ANY(%(keys)s)
UNION
SELECT key FROM held_events WHERE processor = %(p)s AND key = ANY(%(keys)s)
"""

_PARK = """
INSERT INTO held_events (processor, key, event_id, event_type, topic, partition, "offset",
    record_timestamp, value, headers, correlation_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s)
ON CONFLICT (processor, event_id) DO NOTHING
"""

_RELEASABLE = """
SELECT DISTINCT h.key FROM held_events h
WHERE h.processor = %s
  AND NOT EXISTS (SELECT 1 FROM key_holds k WHERE k.processor = h.processor AND k.key = h.key)
LIMIT %s
"""

_TAKE = """
DELETE FROM held_events WHERE processor = %s AND key = %s
RETURNING seq, topic, partition, "offset", record_timestamp, key, value, headers
"""


def held_keys(conn: psycopg.Connection, processor: str, keys: Iterable[bytes]) -> set[bytes]:
    """The keys among ``keys`` that are held (behind a dead letter, or with events waiting)."""
    wanted = list(set(keys))
    if not wanted:
        return set()
    rows = conn.execute(_HELD, {"p": processor, "keys": wanted}).fetchall()
    return {bytes(r[0]) for r in rows}


def hold_key(conn: psycopg.Connection, processor: str, key: bytes, dead_letter_id: str) -> None:
    conn.execute(
        "INSERT INTO key_holds (processor, key, dead_letter_id) VALUES (%s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (processor, key, dead_letter_id),
    )


def park(conn: psycopg.Connection, processor: str, events: Sequence[Event]) -> None:
    """Hold ``events`` (in the order given) unapplied; a re-delivered one is held once."""
    if not events:
        return
    with conn.cursor() as cur:
        cur.executemany(
            _PARK,
            [
                (
                    processor,
                    e.key,
                    e.event_id,
                    e.event_type,
                    e.topic,
                    e.partition,
                    e.offset,
                    e.timestamp_ms,
                    e.raw_value,
                    encode_headers(e.headers),
                    str(e.envelope.get("correlation_id")),
                )
                for e in events
            ],
        )


def resolve(conn: psycopg.Connection, dead_letter_id: str, status: str = "resolved") -> int:
    """Mark a dead letter resolved (or replayed) and lift the holds that wait on it; returns
    how many holds were lifted. Its key's events are released once no other hold remains."""
    conn.execute(
        "UPDATE dead_letters SET status = %s WHERE dead_letter_id = %s", (status, dead_letter_id)
    )
    return conn.execute(
        "DELETE FROM key_holds WHERE dead_letter_id = %s", (dead_letter_id,)
    ).rowcount


def take_released(conn: psycopg.Connection, processor: str, max_keys: int = 100) -> list[Message]:
    """Take the held events of keys no longer held (one key at a time across runners), as the
    Kafka messages they came from, in the order they were held. Call it inside the transaction
    that applies them: a rollback puts them back."""
    messages: list[Message] = []
    for (key,) in conn.execute(_RELEASABLE, (processor, max_keys)).fetchall():
        locked = conn.execute(
            "SELECT pg_try_advisory_xact_lock(hashtextextended(%s || encode(%s, 'hex'), 0))",
            (processor, key),
        ).fetchone()
        if not locked or not locked[0]:
            continue  # another runner is releasing this key
        rows = sorted(conn.execute(_TAKE, (processor, key)).fetchall())
        messages.extend(
            Message(
                topic=topic,
                partition=partition,
                offset=offset,
                key=bytes(k),
                value=None if value is None else bytes(value),
                headers=list[tuple[str, str | bytes | None]](decode_headers(headers)),
                timestamp=(1, timestamp),
            )
            for _, topic, partition, offset, timestamp, k, value, headers in rows
        )
    return messages


def dead_letter_message(conn: psycopg.Connection, processor: str, dead_letter_id: str) -> Message:
    """A dead letter's original record as the Kafka message it came from (locked for the
    transaction, so two replays of one dead letter run one after the other)."""
    row = conn.execute(
        """
        SELECT topic, partition, "offset",
               round(extract(epoch FROM record_timestamp) * 1000)::bigint, key, value, headers
        FROM dead_letters WHERE processor = %s AND dead_letter_id = %s FOR UPDATE
        """,
        (processor, dead_letter_id),
    ).fetchone()
    if row is None:
        raise ConfigError(f"no dead letter {dead_letter_id} of processor {processor}")
    topic, partition, offset, timestamp, key, value, headers = row
    return Message(
        topic=topic,
        partition=partition,
        offset=offset,
        key=None if key is None else bytes(key),
        value=None if value is None else bytes(value),
        headers=list[tuple[str, str | bytes | None]](decode_headers(headers)),
        timestamp=(1, int(timestamp or 0)),
    )


@dataclass(frozen=True)
class HeldKey:
    """One held key: the dead letters it waits on and the events waiting behind them."""

    processor: str
    key: bytes
    dead_letters: tuple[str, ...]  # ids of the open dead letters it waits on
    error_codes: tuple[str, ...]
    events: int
    oldest_age_s: float


_LIST = """
SELECT k.processor, k.key,
       array_agg(DISTINCT k.dead_letter_id::text) FILTER (WHERE k.dead_letter_id IS NOT NULL),
       array_agg(DISTINCT d.error_code) FILTER (WHERE d.error_code IS NOT NULL),
       coalesce(max(h.n), 0),
       coalesce(extract(epoch FROM now() - least(min(k.held_since), min(h.first))), 0)
FROM (SELECT processor, key, dead_letter_id, held_since FROM key_holds
      UNION ALL
      SELECT DISTINCT processor, key, NULL::uuid, NULL::timestamptz FROM held_events) k
LEFT JOIN dead_letters d ON d.dead_letter_id = k.dead_letter_id
LEFT JOIN (SELECT processor, key, count(*) AS n, min(held_at) AS first
           FROM held_events GROUP BY processor, key) h
       ON h.processor = k.processor AND h.key = k.key
WHERE %(p)s::text IS NULL OR k.processor = %(p)s
GROUP BY k.processor, k.key
ORDER BY 6 DESC NULLS LAST, 1, 2
LIMIT %(limit)s
"""


def held(
    conn: psycopg.Connection, processor: str | None = None, limit: int = 1000
) -> list[HeldKey]:
    """The held keys, oldest first: what `supplybus holds` lists and the alerts watch."""
    rows = conn.execute(_LIST, {"p": processor, "limit": limit}).fetchall()
    return [
        HeldKey(
            r[0], bytes(r[1]), tuple(r[2] or ()), tuple(r[3] or ()), int(r[4]), float(r[5] or 0)
        )
        for r in rows
    ]


@dataclass
class KeyBlocks:
    """Which events of one batch transaction are held: keys held before the batch, keys whose
    event was dead-lettered in it (every later event), and keys of records that could not be
    decoded (their later offsets in that partition, and the key's events on other topics)."""

    keys: set[bytes]
    after: dict[bytes, list[tuple[str, int, int]]]

    def blocks(self, event: Event) -> bool:
        key = event.key
        if key is None:
            return False
        if key in self.keys:
            return True
        return any(
            (event.topic, event.partition) != (topic, partition) or event.offset > offset
            for topic, partition, offset in self.after.get(key, ())
        )

    def split(self, events: Sequence[Event]) -> tuple[list[Event], list[Event]]:
        """(events to apply, events to hold), each in the order given."""
        go: list[Event] = []
        held: list[Event] = []
        for event in events:
            (held if self.blocks(event) else go).append(event)
        return go, held
