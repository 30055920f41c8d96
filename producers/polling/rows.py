"""One source row as an event record (pure): its id, its envelope, its mapped fields."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from supplybus.events.envelope import deterministic_id
from supplybus.producers.files.mapping import FileMapping, map_row

SOURCE = "db-poll"  # outbox.source and the first part of every event id


@dataclass(frozen=True)
class Row:
    """A row as read: ``key`` as the source typed it (the next page's cursor), ``row_key`` as
    text (stored, and part of the event id), ``updated`` (updated mode) and the mapped cells."""

    key: Any
    row_key: str
    updated: dt.datetime | None
    cells: dict[str, object]


@dataclass(frozen=True)
class Reject:
    row_key: str
    updated: dt.datetime | None
    reason: str
    message: str  # may quote row values: stored in polling_rejects, never logged


def event_id(source: str, table: str, row_key: str, updated: dt.datetime | None) -> str:
    """The event id of one row version: the same row at the same updated-at, the same id."""
    stamp = "" if updated is None else updated.astimezone(dt.UTC).isoformat()
    return str(deterministic_id(SOURCE, source, table, row_key, stamp))


def record_of(
    mapping: FileMapping,
    row: Row,
    *,
    source: str,
    table: str,
    schema_version: int,
    now: dt.datetime,
) -> dict[str, Any]:
    """The event record of ``row`` (LineError when a cell cannot be mapped). Envelope fields
    the mapping leaves out: the id (``event_id``), ``occurred_at`` = the updated-at (else
    ``now``), ``actor`` "db-poll:<source>", ``priority`` ROUTINE."""
    eid = event_id(source, table, row.row_key, row.updated)
    envelope = {
        "event_type": mapping.event_type, "schema_version": schema_version,
        "occurred_at": row.updated or now, "causation_id": None, "facility_id": None,
        "priority": "ROUTINE", "actor": f"{SOURCE}:{source}",
        "event_id": eid, "correlation_id": eid,
    }  # fmt: skip
    event = map_row(mapping, row.cells)
    event["envelope"] = envelope | (event.get("envelope") or {})
    for target in mapping.line_ids:
        _put(event, target, deterministic_id(eid, target))
    return event


def _put(event: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = event
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
