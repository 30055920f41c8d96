"""The idempotency ledger: one row per (processor, event) ever applied. Set-based SQL."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from supplybus.consumers.runtime.processor import Event

_CLAIM = """
INSERT INTO processed_events (processor, event_id, topic, partition, "offset")
SELECT %b, e.id, e.topic, e.part, e.off
FROM unnest(%b::text[]::uuid[], %b::text[], %b::int[], %b::bigint[]) AS e(id, topic, part, off)
ON CONFLICT DO NOTHING
RETURNING event_id::text
"""


def claim(conn: psycopg.Connection, processor: str, events: Sequence[Event]) -> list[Event]:
    """Record the events as applied; return those not applied before (in order, once each)."""
    if not events:
        return []
    first: dict[str, Event] = {}
    for event in events:
        first.setdefault(event.event_id, event)
    unique = list(first.values())
    rows = conn.execute(
        _CLAIM,
        (
            processor,
            [e.event_id for e in unique],
            [e.topic for e in unique],
            [e.partition for e in unique],
            [e.offset for e in unique],
        ),
    ).fetchall()
    fresh = {r[0] for r in rows}
    return [e for e in unique if e.event_id in fresh]
