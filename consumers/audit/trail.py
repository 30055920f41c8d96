"""The audit trail in PostgreSQL (migration 0009): append inside a handler's transaction, read
an entity's history, stream every chain for verification.

``append`` is set-based (a fixed number of statements per call, whatever the batch size):
it creates missing heads, locks the heads of the entities concerned in one sorted order (so
two transactions appending to one entity queue instead of forking its chain, and cannot
deadlock each other on heads), skips entries already recorded (same entity, event id and
action: a re-applied batch appends nothing), then inserts the new rows and moves the heads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from supplybus.consumers.audit.chain import (
    GENESIS,
    AuditEntry,
    AuditRow,
    Head,
    Problem,
    canonical_time,
    extend,
    verify_chain,
)
from supplybus.errors import ProcessorError

Entity = tuple[str, str]

_CREATE_HEADS = """
INSERT INTO audit_heads (entity_type, entity_id, seq, hash)
SELECT t, i, 0, %s FROM unnest(%s::text[], %s::text[]) AS u(t, i) ORDER BY t, i
ON CONFLICT DO NOTHING
"""
_LOCK_HEADS = """
SELECT entity_type, entity_id, seq, hash FROM audit_heads
WHERE (entity_type, entity_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
ORDER BY entity_type, entity_id FOR UPDATE
"""
_RECORDED = """
SELECT entity_type, entity_id, event_id, action FROM audit_log
WHERE (entity_type, entity_id, event_id, action)
   IN (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]))
"""
_COLUMNS = (
    "entity_type, entity_id, seq, at, actor, action, reason, rule_ids, rule_version, detail,"
    " event_id, correlation_id, prev_hash, hash"
)
_INSERT = f"""
INSERT INTO audit_log ({_COLUMNS})
SELECT {_COLUMNS} FROM jsonb_to_recordset(%s::jsonb) AS r(
    entity_type text, entity_id text, seq bigint, at timestamptz, actor text, action text,
    reason text, rule_ids text[], rule_version text, detail jsonb, event_id text,
    correlation_id text, prev_hash text, hash text)
"""
_MOVE_HEADS = """
UPDATE audit_heads h SET seq = u.s, hash = u.h
FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[]) AS u(t, i, s, h)
WHERE h.entity_type = u.t AND h.entity_id = u.i
"""


def append(conn: psycopg.Connection, entries: Iterable[AuditEntry]) -> list[AuditRow]:
    """Append ``entries`` (in order per entity) to their chains; returns the rows appended
    (entries already recorded are skipped). Runs in the caller's transaction."""
    batch = list(entries)
    if not batch:
        return []
    entities = sorted({e.entity for e in batch})
    types, ids = [t for t, _ in entities], [i for _, i in entities]
    conn.execute(_CREATE_HEADS, (GENESIS, types, ids))
    heads = {
        (t, i): Head(seq, h) for t, i, seq, h in conn.execute(_LOCK_HEADS, (types, ids)).fetchall()
    }
    columns = tuple([e.key[n] for e in batch] for n in range(4))
    recorded = {tuple(r) for r in conn.execute(_RECORDED, columns).fetchall()}
    fresh: dict[Entity, list[AuditEntry]] = {}
    for entry in batch:
        if entry.key not in recorded:
            recorded.add(entry.key)
            fresh.setdefault(entry.entity, []).append(entry)
    rows = [row for entity, new in fresh.items() for row in extend(heads[entity], new)]
    if not rows:
        return []
    conn.execute(_INSERT, (json.dumps([row_as_json(r) for r in rows]),))
    last = {r.entry.entity: r for r in rows}
    conn.execute(
        _MOVE_HEADS,
        (
            [t for t, _ in last],
            [i for _, i in last],
            [r.seq for r in last.values()],
            [r.hash for r in last.values()],
        ),
    )
    return rows


def row_as_json(row: AuditRow) -> dict[str, Any]:
    """One row as plain JSON values (times in the canonical form): stored and shown alike."""
    e = row.entry
    return {
        "entity_type": e.entity_type,
        "entity_id": e.entity_id,
        "seq": row.seq,
        "at": canonical_time(e.at),
        "actor": e.actor,
        "action": e.action,
        "reason": e.reason,
        "rule_ids": list(e.rule_ids),
        "rule_version": e.rule_version,
        "detail": dict(e.detail),
        "event_id": e.event_id,
        "correlation_id": e.correlation_id,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


def _row(r: Sequence[Any]) -> AuditRow:
    entry = AuditEntry(
        entity_type=r[0],
        entity_id=r[1],
        at=r[3],
        actor=r[4],
        action=r[5],
        reason=r[6],
        rule_ids=tuple(r[7]),
        rule_version=r[8],
        detail=r[9],
        event_id=r[10],
        correlation_id=r[11],
    )
    return AuditRow(entry, seq=int(r[2]), prev_hash=r[12], hash=r[13])


def history(
    conn: psycopg.Connection, entity_id: str, entity_type: str | None = None
) -> list[AuditRow]:
    """An entity's entries, oldest first (of every type with that id unless one is given)."""
    found = conn.execute(
        f"SELECT {_COLUMNS} FROM audit_log WHERE entity_id = %s"
        " AND (%s::text IS NULL OR entity_type = %s) ORDER BY entity_type, seq",
        (entity_id, entity_type, entity_type),
    ).fetchall()
    return [_row(r) for r in found]


@dataclass
class Report:
    """What a verification found: how much it read, and every problem."""

    entities: int = 0
    entries: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def verify(
    conn: psycopg.Connection,
    entity_type: str | None = None,
    *,
    on_chain: Callable[[int], None] | None = None,
    itersize: int = 5000,
) -> Report:
    """Check every chain (of one type, when given) in one read-only snapshot, streaming the
    rows through server-side cursors in key order; ``on_chain(entries)`` after each entity.
    The connection must hold no uncommitted writes (a read-only transaction is ended)."""
    report = Report()
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        wrote = conn.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()
        if wrote is not None and wrote[0] is not None:
            raise ProcessorError("audit verify needs a connection without uncommitted writes")
        conn.rollback()  # only reads: a snapshot of its own is what verification needs
    level, read_only = conn.isolation_level, conn.read_only
    conn.isolation_level, conn.read_only = psycopg.IsolationLevel.REPEATABLE_READ, True
    try:
        with conn.transaction():
            for entity, rows, head in _chains(conn, entity_type, itersize):
                report.entities += 1
                report.entries += len(rows)
                report.problems.extend(verify_chain(entity, rows, head))
                if head is None and rows:
                    last = rows[-1].seq
                    report.problems.append(Problem(*entity, last, "deleted", "its head is missing"))
                if on_chain is not None:
                    on_chain(len(rows))
    finally:
        conn.isolation_level, conn.read_only = level, read_only
    return report


def count(conn: psycopg.Connection, entity_type: str | None = None) -> int:
    """How many entries the trail holds (of one type, when given)."""
    row = conn.execute(
        "SELECT count(*) FROM audit_log WHERE %s::text IS NULL OR entity_type = %s",
        (entity_type, entity_type),
    ).fetchone()
    return int(row[0]) if row else 0


def _chains(
    conn: psycopg.Connection, entity_type: str | None, itersize: int
) -> Iterator[tuple[Entity, list[AuditRow], Head | None]]:
    """(entity, its rows, its head) for every entity with rows or a head, in key order: two
    server-side cursors in primary-key order ("C" collation: Python's string order), merged."""
    where = "WHERE %s::text IS NULL OR entity_type = %s"
    logs = conn.cursor(name="audit_log_scan")
    logs.itersize = itersize
    logs.execute(f"SELECT {_COLUMNS} FROM audit_log {where} ORDER BY 1, 2, 3", (entity_type,) * 2)
    heads_cur = conn.cursor(name="audit_heads_scan")
    heads_cur.itersize = itersize
    heads_cur.execute(
        f"SELECT entity_type, entity_id, seq, hash FROM audit_heads {where} ORDER BY 1, 2",
        (entity_type,) * 2,
    )
    heads = ((((t, i)), Head(int(s), h)) for t, i, s, h in heads_cur)
    rows = (_row(r) for r in logs)
    next_head = next(heads, None)
    next_row = next(rows, None)
    while next_head is not None or next_row is not None:
        candidates = [x[0] for x in (next_head,) if x is not None]
        if next_row is not None:
            candidates.append(next_row.entry.entity)
        entity = min(candidates)
        head: Head | None = None
        if next_head is not None and next_head[0] == entity:
            head = next_head[1]
            next_head = next(heads, None)
        chain: list[AuditRow] = []
        while next_row is not None and next_row.entry.entity == entity:
            chain.append(next_row)
            next_row = next(rows, None)
        yield entity, chain, head
    logs.close()
    heads_cur.close()
