"""The transactional outbox: emitted events are written with the effects that caused them.

Every outbox statement lives here: processors ``append`` (and dead letters ``append_raw``)
inside their transaction; the relay reads ``pending`` rows, then ``mark_sent`` or ``park``
them. A row stores the exact Kafka record: topic, key, value and every header (the routing
headers of ``EventCatalog.prepare``, or a dead letter's lineage), so the relay rebuilds nothing.
A parked row could never be published (see producers/relay.py); it stays in the table,
listed by ``parked``, until an operator deals with it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from supplybus.events.catalog import Outgoing
from supplybus.events.envelope import traceparent

Headers = list[tuple[str, bytes | None]]  # a header may have no value
#: The outbox table: supplybus's own ``outbox`` (on the search_path) unless a caller names
#: another table with the same columns (a source system's, see producers/source_outbox.py).
OUTBOX: sql.Composable = sql.Identifier("outbox")

_COLUMNS = (
    "topic, key, value, headers, event_id, event_type, correlation_id, causation_id, priority,"
    " traceparent, source"
)


def encode_headers(headers: Sequence[tuple[str, bytes | None]]) -> str:
    """Headers as JSON [[name, base64 | null], ...]: lossless for binary and null values (a
    foreign producer may write a header without a value). A NUL in a name, which jsonb cannot
    hold, is written as the four characters ``\\x00``."""
    return json.dumps(
        [
            [k.replace("\x00", "\\x00"), None if v is None else base64.b64encode(v).decode()]
            for k, v in headers
        ]
    )


def decode_headers(stored: object) -> Headers:
    """The inverse of ``encode_headers`` (from the JSON text or the jsonb value)."""
    if not stored:
        return []
    pairs = json.loads(stored) if isinstance(stored, str) else stored
    if not isinstance(pairs, list):
        raise ValueError(f"outbox headers: expected [[name, base64], ...], got {stored!r:.80}")
    return [(str(k), None if v is None else base64.b64decode(v)) for k, v in pairs]


def append(
    conn: psycopg.Connection,
    source: str,
    items: Sequence[Outgoing],
    *,
    table: sql.Composable = OUTBOX,
) -> int:
    """Append prepared events (with their routing headers) to the outbox with COPY."""
    if not items:
        return 0
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(table, sql.SQL(_COLUMNS))
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for out in items:
            env = out.envelope
            copy.write_row(
                (
                    out.topic,
                    out.key,
                    out.value,
                    encode_headers(out.headers),
                    str(env["event_id"]),
                    env["event_type"],
                    env.get("correlation_id"),
                    env.get("causation_id"),
                    env.get("priority"),
                    traceparent(env),
                    source,
                )
            )
    return len(items)


def append_raw(
    conn: psycopg.Connection,
    *,
    source: str,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    event_id: str | None = None,
    event_type: str | None = None,
    correlation_id: str | None = None,
) -> None:
    """One outbox row with explicit headers (dead letters carry their lineage this way)."""
    conn.execute(
        f"INSERT INTO outbox ({_COLUMNS}) VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, NULL, NULL,"
        " NULL, %s)",
        (topic, key, value, encode_headers(headers), event_id, event_type, correlation_id, source),
    )


@dataclass(frozen=True, slots=True)
class Row:
    """One outbox row as the relay publishes it."""

    id: int
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers


def pending(conn: psycopg.Connection, limit: int, *, table: sql.Composable = OUTBOX) -> list[Row]:
    """The oldest rows neither sent nor parked, in id order."""
    rows = conn.execute(
        sql.SQL(
            "SELECT id, topic, key, value, headers FROM {}"
            " WHERE sent_at IS NULL AND parked_at IS NULL ORDER BY id LIMIT %s"
        ).format(table),
        (limit,),
    ).fetchall()
    return [
        Row(
            int(i),
            str(t),
            None if k is None else bytes(k),
            None if v is None else bytes(v),
            decode_headers(h),
        )
        for i, t, k, v, h in rows
    ]


def mark_sent(
    conn: psycopg.Connection, ids: Sequence[int], *, table: sql.Composable = OUTBOX
) -> None:
    if ids:
        conn.execute(
            sql.SQL("UPDATE {} SET sent_at = now() WHERE id = ANY(%s)").format(table),
            (list(ids),),
        )


def park(
    conn: psycopg.Connection,
    parks: Sequence[tuple[int, str, str]],
    *,
    table: sql.Composable = OUTBOX,
) -> None:
    """Park rows (id, error code, reason): the relay skips them from now on."""
    if parks:
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL(
                    "UPDATE {} SET parked_at = now(), park_code = %s, park_reason = %s"
                    " WHERE id = %s AND sent_at IS NULL"
                ).format(table),
                [(code, reason, row_id) for row_id, code, reason in parks],
            )


def backlog(conn: psycopg.Connection, *, table: sql.Composable = OUTBOX) -> tuple[int, int]:
    """(rows waiting to be published, rows parked)."""
    row = conn.execute(
        sql.SQL(
            "SELECT (SELECT count(*) FROM {t} WHERE sent_at IS NULL AND parked_at IS NULL),"
            " (SELECT count(*) FROM {t} WHERE parked_at IS NOT NULL)"
        ).format(t=table)
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


@dataclass(frozen=True, slots=True)
class Parked:
    """A parked row, for an operator: what it is, where it was going, and why it is parked."""

    id: int
    topic: str
    key: bytes | None
    size: int
    event_id: str | None
    event_type: str | None
    source: str
    created_at: datetime
    parked_at: datetime
    code: str
    reason: str


def parked(conn: psycopg.Connection, limit: int = 100) -> list[Parked]:
    """Parked rows, oldest first (values are not loaded: ``size`` is the value's length)."""
    with conn.cursor(row_factory=class_row(Parked)) as cur:
        return cur.execute(
            "SELECT id, topic, key, coalesce(octet_length(value), 0) AS size,"
            " event_id::text AS event_id, event_type, source, created_at, parked_at,"
            " park_code AS code, park_reason AS reason"
            " FROM outbox WHERE parked_at IS NOT NULL ORDER BY id LIMIT %s",
            (limit,),
        ).fetchall()
