"""masterdata: the read models of suppliers, items, facilities, locations, cost centers and
approvers (migration 0008), from the ``masterdata.*`` compacted topics.

Set-based: per event type and batch, one upsert of the master rows (as a JSON recordset),
then the child rows of the masters that changed are replaced. A master row keeps the newest
version by the envelope's ``(occurred_at, event_id)``: within a batch only the newest per key
is written, and the upsert's WHERE refuses a version older than (or the same as) the stored
one. Master data is re-delivered and reordered across partitions (compaction, replays), and
this rule makes the result independent of delivery order: the processor is commutative and
idempotent, so ``on_dead_letter="continue"``: a key's later upserts need not wait behind a
dead-lettered one; replaying that one later applies it only if it is still the newest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql

from supplybus.consumers.masterdata.readmodels import BY_EVENT_TYPE, Model, Part, Row
from supplybus.consumers.runtime.processor import Event, Processor, Record
from supplybus.errors import BusinessRuleError


def version_of(record: Mapping[str, Any]) -> tuple[Any, str]:
    """The order of versions of one master record: occurred_at, then event id."""
    envelope = record["envelope"]
    return envelope["occurred_at"], str(envelope["event_id"]).lower()


def newest(records: Iterable[Mapping[str, Any]], key: str) -> list[Mapping[str, Any]]:
    """The newest version of each key, in order of first appearance (pure)."""
    kept: dict[str, Mapping[str, Any]] = {}
    for record in records:
        held = kept.get(record[key])
        if held is None or version_of(record) > version_of(held):
            kept[record[key]] = record
    return list(kept.values())


def apply_upserts(events: Sequence[Event], conn: psycopg.Connection) -> list[Record]:
    by_type: dict[str, list[Mapping[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event.event_type, []).append(event.record)
    for event_type, records in by_type.items():
        model = BY_EVENT_TYPE[event_type]
        rows = [_master_row(model, r) for r in records]  # every version is checked
        children = {part.table: [_child_rows(part, r) for r in records] for part in model.parts}
        latest = {id(r) for r in newest(records, model.key)}
        keep = [i for i, r in enumerate(records) if id(r) in latest]
        changed = _upsert(conn, model, [rows[i] for i in keep])
        for part in model.parts:
            _replace(conn, model.key, part, changed, [children[part.table][i] for i in keep])
    return []


def _master_row(model: Model, record: Mapping[str, Any]) -> Row:
    occurred_at, event_id = version_of(record)
    return {**model.row(record), "occurred_at": occurred_at, "event_id": event_id}


def _child_rows(part: Part, record: Mapping[str, Any]) -> list[Row]:
    rows = list(part.rows(record))
    seen: set[tuple[Any, ...]] = set()
    for row in rows:
        pk = tuple(row[c] for c in part.primary_key)
        if pk in seen:
            shown = ", ".join(f"{c} {v}" for c, v in zip(part.primary_key, pk, strict=True))
            raise BusinessRuleError(f"{part.table}: {shown} appears twice in one upsert")
        seen.add(pk)
    return rows


def _recordset(columns: Mapping[str, str]) -> sql.Composed:
    return sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
        for name, kind in columns.items()
    )


def _names(columns: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


def _upsert(conn: psycopg.Connection, model: Model, rows: list[Row]) -> list[str]:
    """Insert or update the master rows; the keys written (a stale version writes nothing)."""
    columns = {**model.columns, "occurred_at": "timestamptz", "event_id": "uuid"}
    table = sql.Identifier(model.table)
    query = sql.SQL(
        "INSERT INTO {table} ({names}) SELECT {names} FROM jsonb_to_recordset(%s::jsonb)"
        " AS x({recordset})"
        " ON CONFLICT ({key}) DO UPDATE SET {updates}, updated_at = now()"
        " WHERE ({table}.occurred_at, {table}.event_id) < (EXCLUDED.occurred_at, EXCLUDED.event_id)"
        " RETURNING {key}"
    ).format(
        table=table,
        names=_names(columns),
        recordset=_recordset(columns),
        key=sql.Identifier(model.key),
        updates=sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
            for c in columns
            if c != model.key
        ),
    )
    return [k for (k,) in conn.execute(query, (_json(rows),)).fetchall()]


def _replace(
    conn: psycopg.Connection, key: str, part: Part, changed: list[str], rows: list[list[Row]]
) -> None:
    """The child rows of the changed masters, replaced by those of their new version."""
    if not changed:
        return
    table, key_id = sql.Identifier(part.table), sql.Identifier(key)
    conn.execute(sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(table, key_id), (changed,))
    query = sql.SQL(
        "INSERT INTO {table} ({names}) SELECT {names} FROM jsonb_to_recordset(%s::jsonb)"
        " AS x({recordset}) WHERE {key} = ANY(%s)"
    ).format(
        table=table,
        names=_names(part.columns),
        recordset=_recordset(part.columns),
        key=key_id,
    )
    conn.execute(query, (_json([row for group in rows for row in group]), changed))


def _json(rows: list[Row]) -> str:
    """Rows as JSON: decimals and dates as strings, so nothing passes through a float."""
    return json.dumps(rows, default=str)


processor = Processor(
    name="masterdata",
    consumes=tuple(BY_EVENT_TYPE),
    handle=apply_upserts,
    description="Read models of suppliers, items, facilities, locations, cost centers, approvers.",
    on_dead_letter="continue",  # newest version wins whatever the order: see the docstring
)
