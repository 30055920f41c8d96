"""The idempotency ledger: one row per (processor, event) ever applied. Set-based SQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import psycopg

from supplybus.consumers.runtime.processor import Event

# One row back: how many were new and, only when some were not, which ones were.
_CLAIM = """
WITH claimed AS (
    INSERT INTO processed_events (processor, event_id, topic, partition, "offset", key)
    SELECT %b, e.id, e.topic, e.part, e.off, e.key
    FROM unnest(%b::text[]::uuid[], %b::text[], %b::int[], %b::bigint[], %b::bytea[])
         AS e(id, topic, part, off, key)
    ON CONFLICT DO NOTHING
    RETURNING event_id
)
SELECT count(*), CASE WHEN count(*) < %b THEN array_agg(event_id::text) END FROM claimed
"""


def claim(conn: psycopg.Connection, processor: str, events: Sequence[Event]) -> list[Event]:
    """Record the events as applied; return those not applied before (in order, once each)."""
    if not events:
        return []
    first: dict[str, Event] = {}
    for event in events:
        first.setdefault(event.event_id, event)
    unique = list(first.values())
    row = conn.execute(
        _CLAIM,
        (
            processor,
            [e.event_id for e in unique],
            [e.topic for e in unique],
            [e.partition for e in unique],
            [e.offset for e in unique],
            [e.key for e in unique],
            len(unique),
        ),
    ).fetchone()
    if row is None or row[0] == len(unique):
        return unique  # the common case: nothing here was applied before
    # PostgreSQL answers canonical uuid text: compare in that form, whatever a producer wrote,
    # and keep one event per id (two spellings of one id in a batch are one event)
    fresh = set(row[1] or ())
    out: list[Event] = []
    for event in unique:
        canonical = str(uuid.UUID(event.event_id))
        if canonical in fresh:
            fresh.discard(canonical)
            out.append(event)
    return out
