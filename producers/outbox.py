"""The transactional outbox: emitted events are written with the effects that caused them."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

import psycopg

from supplybus.events.catalog import Outgoing
from supplybus.events.envelope import traceparent

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


def decode_headers(stored: object) -> list[tuple[str, bytes | None]]:
    if not stored:
        return []
    pairs = json.loads(stored) if isinstance(stored, str) else stored
    return [
        (str(k), None if v is None else base64.b64decode(v))
        for k, v in pairs  # type: ignore[union-attr]
    ]


def append(conn: psycopg.Connection, source: str, items: Sequence[Outgoing]) -> int:
    """Append prepared events to the outbox with COPY; returns how many."""
    if not items:
        return 0
    with conn.cursor() as cur, cur.copy(f"COPY outbox ({_COLUMNS}) FROM STDIN") as copy:
        for out in items:
            env = out.envelope
            copy.write_row(
                (
                    out.topic,
                    out.key,
                    out.value,
                    None,
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
