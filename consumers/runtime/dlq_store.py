"""The dead-letter workbench over the database (`supplybus dlq`): list, details, park, unpark,
skip, edit, and the log of everything that happened to each dead letter.

Plain functions over ``dead_letters``, ``dead_letter_log``, ``key_holds`` and ``held_events``
(migrations 0001, 0003, 0007, 0013). Every mutating function runs in one transaction (a
savepoint inside a caller's) and appends to ``dead_letter_log``; nothing is deleted. A dead
letter is named by its ``dead_letter_id`` or a unique prefix of at least 8 hex characters.
Status changes: open <-> parked (a parked dead letter keeps its key held: "not now"), open or
parked -> resolved (``skip``: its holds are lifted, the key's held events are released by the
running processor), -> replayed (the replay engine).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from supplybus.consumers.runtime import dlq_patch, hold
from supplybus.errors import ConfigError, SupplybusError
from supplybus.events import jsonio
from supplybus.events.catalog import EventCatalog
from supplybus.metrics import Metrics
from supplybus.producers.outbox import decode_headers

STATUSES = ("open", "parked", "replayed", "resolved")
_HEX = re.compile(r"[0-9a-f]{8,32}")


@dataclass(frozen=True)
class DlqFilter:
    """Which dead letters: every field given narrows the selection (status None: any)."""

    topic: str | None = None
    processor: str | None = None
    error_code: str | None = None
    status: str | None = "open"
    since: dt.datetime | None = None  # failed last at or after
    ids: Sequence[str] | None = None  # full dead-letter ids

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise ConfigError(f"status {self.status!r}: expected one of {', '.join(STATUSES)}")


@dataclass(frozen=True)
class GroupCount:
    processor: str
    topic: str
    error_code: str
    status: str
    count: int
    oldest: dt.datetime  # the first failure of the group's oldest dead letter


@dataclass(frozen=True)
class DeadLetterRow:
    """One dead letter as listed (message cut to 200 characters, no payload)."""

    id: int  # the keyset cursor (`rows(after_id=...)`)
    dead_letter_id: str
    processor: str
    topic: str
    partition: int
    offset: int
    event_type: str | None
    error_code: str
    message: str
    attempts: int
    first_failed_at: dt.datetime
    last_failed_at: dt.datetime
    status: str
    edited: bool


@dataclass(frozen=True)
class LogEntry:
    """One line of a dead letter's history (the correlation id is taken from the dead letter)."""

    dead_letter_id: str
    actor: str
    action: str  # replay, dry-run, park, unpark, skip, edit, failed
    outcome: str  # applied, already-applied, failed-again, would-apply, would-fail, done
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoggedEntry:
    at: dt.datetime
    actor: str
    action: str
    outcome: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class HeldBehind:
    """A key held behind the dead letter, with the events waiting on it."""

    key: bytes
    held_since: dt.datetime
    events: int


@dataclass(frozen=True)
class Details:
    """Everything about one dead letter (`dlq show`)."""

    row: dict[str, Any]  # every column of dead_letters
    headers: list[tuple[str, bytes | None]]
    log: list[LoggedEntry]
    held: list[HeldBehind]


# --- reading ---------------------------------------------------------------------------


def _where(f: DlqFilter) -> tuple[str, dict[str, Any]]:
    """The WHERE clause of a filter: only the conditions given (so indexes serve them)."""
    conditions, params = [], {}
    for column in ("status", "processor", "topic", "error_code"):
        value = getattr(f, column)
        if value is not None:
            conditions.append(f"{column} = %({column})s")
            params[column] = value
    if f.since is not None:
        conditions.append("last_failed_at >= %(since)s")
        params["since"] = f.since
    if f.ids is not None:
        conditions.append("dead_letter_id = ANY(%(ids)s::uuid[])")
        params["ids"] = list(f.ids)
    return " AND ".join(conditions) or "true", params


def summary(conn: psycopg.Connection, filters: DlqFilter) -> list[GroupCount]:
    """Counts by processor, topic, error code and status, largest first."""
    where, params = _where(filters)
    rows = conn.execute(
        "SELECT processor, topic, error_code, status, count(*), min(first_failed_at)"
        f" FROM dead_letters WHERE {where} GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC, 1, 2, 3, 4",
        params,
    ).fetchall()
    return [GroupCount(*r) for r in rows]


def rows(
    conn: psycopg.Connection, filters: DlqFilter, limit: int = 50, after_id: int | None = None
) -> list[DeadLetterRow]:
    """One page of dead letters in id order, after the row ``after_id`` (keyset paging)."""
    where, params = _where(filters)
    params.update(after=after_id or 0, limit=limit)
    found = conn.execute(
        'SELECT id, dead_letter_id::text, processor, topic, partition, "offset", event_type,'
        " error_code, left(message, 200), attempts, first_failed_at, last_failed_at, status,"
        f" edited_value IS NOT NULL FROM dead_letters WHERE {where} AND id > %(after)s"
        " ORDER BY id LIMIT %(limit)s",
        params,
    ).fetchall()
    return [DeadLetterRow(*r) for r in found]


def resolve_id(conn: psycopg.Connection, text: str) -> str:
    """The full dead-letter id named by ``text``: a UUID, or a unique prefix of >= 8 hex."""
    wanted = text.strip().lower()
    try:
        full = str(uuid.UUID(wanted))
    except ValueError:
        full = None
    if full is not None:
        if conn.execute("SELECT 1 FROM dead_letters WHERE dead_letter_id = %s", (full,)).fetchone():
            return full
        raise ConfigError(f"no dead letter {full}")
    digits = wanted.replace("-", "")
    if not _HEX.fullmatch(digits):
        raise ConfigError(
            f"dead letter id {text!r}: expected a UUID or at least 8 of its hex characters"
        )
    low = str(uuid.UUID(digits.ljust(32, "0")))
    high = str(uuid.UUID(digits.ljust(32, "f")))
    count, first = conn.execute(
        "SELECT count(*), min(dead_letter_id::text) FROM dead_letters"
        " WHERE dead_letter_id BETWEEN %s AND %s",
        (low, high),
    ).fetchone() or (0, None)
    if count == 0:
        raise ConfigError(f"no dead letter whose id starts with {text!r}")
    if count > 1:
        raise ConfigError(
            f"dead letter id {text!r} is ambiguous: {count} dead letters start with it "
            "(give more characters)"
        )
    return str(first)


def details(conn: psycopg.Connection, dead_letter_id: str) -> Details:
    """The dead letter (id or unique prefix), its headers, its log and the keys held behind it."""
    full = resolve_id(conn, dead_letter_id)
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute(
            "SELECT *, dead_letter_id::text AS dead_letter_id, event_id::text AS event_id"
            " FROM dead_letters WHERE dead_letter_id = %s",
            (full,),
        ).fetchone()
    if row is None:  # pragma: no cover - resolve_id found it
        raise ConfigError(f"no dead letter {full}")
    logged = conn.execute(
        "SELECT at, actor, action, outcome, detail FROM dead_letter_log"
        " WHERE dead_letter_id = %s ORDER BY id",
        (full,),
    ).fetchall()
    held = conn.execute(
        "SELECT k.key, k.held_since, (SELECT count(*) FROM held_events h"
        "  WHERE h.processor = k.processor AND h.key = k.key)"
        " FROM key_holds k WHERE k.dead_letter_id = %s ORDER BY k.held_since, k.key",
        (full,),
    ).fetchall()
    return Details(
        row=row,
        headers=list(decode_headers(row["headers"])),
        log=[LoggedEntry(*r) for r in logged],
        held=[HeldBehind(bytes(k), since, int(n)) for k, since, n in held],
    )


def decode(catalog: EventCatalog, value: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    """(the decoded record, None) or (None, why it does not decode)."""
    if value is None:
        return None, "no value (a tombstone)"
    try:
        return catalog.codec.decode(bytes(value)).record, None
    except SupplybusError as exc:
        return None, f"{exc.code}: {exc}"
    except Exception as exc:  # noqa: BLE001 - foreign bytes; show the reason, never crash
        return None, f"{type(exc).__name__}: {exc}"


# --- the log ---------------------------------------------------------------------------

_LOG = """
INSERT INTO dead_letter_log (dead_letter_id, actor, action, outcome, detail, correlation_id)
SELECT e.id, e.actor, e.action, e.outcome, e.detail, d.correlation_id
FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::jsonb[])
     WITH ORDINALITY AS e(id, actor, action, outcome, detail, n)
LEFT JOIN dead_letters d ON d.dead_letter_id = e.id
ORDER BY e.n
"""


def log(conn: psycopg.Connection, entries: Sequence[LogEntry]) -> None:
    """Append ``entries`` to dead_letter_log, in order, with each dead letter's correlation id."""
    if not entries:
        return
    conn.execute(
        _LOG,
        (
            [e.dead_letter_id for e in entries],
            [e.actor for e in entries],
            [e.action for e in entries],
            [e.outcome for e in entries],
            [jsonio.dumps(dict(e.detail)) for e in entries],
        ),
    )


# --- status changes --------------------------------------------------------------------


def _lock(conn: psycopg.Connection, ids: Sequence[str]) -> dict[str, str]:
    """Resolve ``ids`` and lock their rows; {full id: status}, in the order given."""
    full = list(dict.fromkeys(resolve_id(conn, i) for i in ids))
    found = conn.execute(
        "SELECT dead_letter_id::text, status FROM dead_letters"
        " WHERE dead_letter_id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE",
        (full,),
    ).fetchall()
    status: dict[str, str] = {str(i): str(s) for i, s in found}
    return {i: status[i] for i in full}


def _require(found: Mapping[str, str], allowed: Sequence[str], action: str) -> None:
    for dead_letter_id, status in found.items():
        if status not in allowed:
            raise ConfigError(
                f"dead letter {dead_letter_id} is {status}: only {' or '.join(allowed)} "
                f"dead letters can be {action}"
            )


def _reason(reason: str) -> str:
    if not reason.strip():
        raise ConfigError("--reason: say why (it is kept in the dead letter's log)")
    return reason.strip()


def park(conn: psycopg.Connection, ids: Sequence[str], reason: str, actor: str) -> list[str]:
    """open -> parked ("not now": the key stays held; replays by filter leave it alone)."""
    why = _reason(reason)
    with conn.transaction():
        found = _lock(conn, ids)
        _require(found, ("open",), "parked")
        conn.execute(
            "UPDATE dead_letters SET status = 'parked', status_reason = %s"
            " WHERE dead_letter_id = ANY(%s::uuid[])",
            (why, list(found)),
        )
        log(conn, [LogEntry(i, actor, "park", "done", {"reason": why}) for i in found])
    return list(found)


def unpark(conn: psycopg.Connection, ids: Sequence[str], actor: str) -> list[str]:
    """parked -> open."""
    with conn.transaction():
        found = _lock(conn, ids)
        _require(found, ("parked",), "unparked")
        conn.execute(
            "UPDATE dead_letters SET status = 'open', status_reason = NULL"
            " WHERE dead_letter_id = ANY(%s::uuid[])",
            (list(found),),
        )
        log(conn, [LogEntry(i, actor, "unpark", "done") for i in found])
    return list(found)


def skip(conn: psycopg.Connection, dead_letter_id: str, reason: str, actor: str) -> int:
    """open or parked -> resolved without applying it; its holds are lifted (the running
    processor releases the key's held events, in order). Returns the holds lifted."""
    why = _reason(reason)
    with conn.transaction():
        ((full, status),) = _lock(conn, [dead_letter_id]).items()
        _require({full: status}, ("open", "parked"), "skipped")
        lifted = hold.resolve(conn, full, "resolved")
        conn.execute(
            "UPDATE dead_letters SET status_reason = %s WHERE dead_letter_id = %s", (why, full)
        )
        detail = {"reason": why, "was": status, "holds_lifted": lifted}
        log(conn, [LogEntry(full, actor, "skip", "done", detail)])
    return lifted


@dataclass(frozen=True)
class Edit:
    """What `edit` stored: the changes {path: (old, new)} and the encoded record."""

    dead_letter_id: str
    changes: dict[str, tuple[Any, Any]]
    value: bytes
    record: dict[str, Any]


def edit(
    conn: psycopg.Connection,
    catalog: EventCatalog,
    dead_letter_id: str,
    sets: Sequence[tuple[str, str]],
    actor: str,
) -> Edit:
    """Apply FIELD=VALUE corrections to the dead letter's record (its current edited version,
    else the original), validate (schema and domain checks) and store the encoded record in
    ``edited_value``; the original bytes are never changed. The event id (the idempotency key),
    the event type, the key and the topic must stay what they were."""
    if not sets:
        raise ConfigError("nothing to edit: give --set FIELD=VALUE")
    with conn.transaction():
        ((full, status),) = _lock(conn, [dead_letter_id]).items()
        _require({full: status}, ("open", "parked"), "edited")
        topic, key, value, edited = conn.execute(
            "SELECT topic, key, value, edited_value FROM dead_letters WHERE dead_letter_id = %s",
            (full,),
        ).fetchone() or (None, None, None, None)
        base, why = decode(catalog, edited if edited is not None else value)
        if base is None:
            raise ConfigError(
                f"dead letter {full}: its bytes do not decode ({why}); only a decodable "
                "record can be edited"
            )
        event_type = str(base["envelope"]["event_type"])
        raw = catalog.store.latest(event_type).raw
        record, changes = dlq_patch.apply_sets(raw, base, sets)
        _check_identity(full, base, record)
        try:
            out = catalog.prepare(record, check="full")
        except SupplybusError as exc:
            raise ConfigError(f"dead letter {full}: edit refused: {exc}") from exc
        if key is not None and bytes(key) != out.key:
            raise ConfigError(
                f"dead letter {full}: edit refused: it changes the record's key from "
                f"{bytes(key).decode(errors='replace')!r} to {out.key.decode(errors='replace')!r}"
                " (holds and order are per key)"
            )
        if topic in catalog.topics.by_name and out.topic != topic:
            raise ConfigError(
                f"dead letter {full}: edit refused: the record would travel on {out.topic}, "
                f"not {topic} where it was read (a key's events never change lanes)"
            )
        stored = catalog.codec.decode(out.value).record  # the values as stored
        changes = {
            path: (old, dlq_patch.get_at(stored, dlq_patch.parse_path(path)))
            for path, (old, _) in changes.items()
        }
        conn.execute(
            "UPDATE dead_letters SET edited_value = %s, edited_at = now()"
            " WHERE dead_letter_id = %s",
            (out.value, full),
        )
        shown = {path: [old, new] for path, (old, new) in changes.items()}
        log(conn, [LogEntry(full, actor, "edit", "done", json.loads(jsonio.dumps(shown)))])
    return Edit(full, changes, out.value, stored)


def _check_identity(full: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    for name in ("event_id", "event_type"):
        old, new = before["envelope"].get(name), after["envelope"].get(name)
        if str(old) != str(new):
            raise ConfigError(
                f"dead letter {full}: envelope.{name} cannot change ({old} -> {new}): "
                + ("it is the idempotency key" if name == "event_id" else "it picks the schema")
            )


# --- metrics ---------------------------------------------------------------------------


def refresh_metrics(conn: psycopg.Connection, metrics: Metrics) -> None:
    """Set the gauges of open dead letters (per processor and error code) and the age of
    the oldest open one."""
    counts = conn.execute(
        "SELECT processor, error_code, count(*) FROM dead_letters WHERE status = 'open'"
        " GROUP BY 1, 2"
    ).fetchall()
    (oldest,) = conn.execute(
        "SELECT coalesce(extract(epoch FROM now() - min(first_failed_at)), 0)"
        " FROM dead_letters WHERE status = 'open'"
    ).fetchone() or (0,)
    metrics.dead_letters_open.clear()
    for processor, code, n in counts:
        metrics.dead_letters_open.labels(processor, code).set(n)
    metrics.dead_letter_oldest_age.set(float(oldest))
