"""One business transaction's causal chain, read from the database (no broker needed).

``trace(conn, correlation_id)`` gathers every fact that carries the correlation id: events the
processors emitted (``outbox``, dead-letter rows for the DLQ topics left out), the ledger rows
of the processors that applied them (``processed_events``), dead letters with their log
(``dead_letter_log``), held events and the dead letters they wait on, audit entries, and the
requisitions and purchase orders of the transaction; ``trace_model.assemble`` builds the tree.
An event a source system published directly has no outbox row: it is a root, known from the
ledger, a dead letter, a hold, an audit entry or the requisition it created.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

import psycopg

from supplybus.consumers.processors import BUILTIN, load_processor
from supplybus.errors import ConfigError
from supplybus.ops.trace_model import (
    Applied,
    AuditNote,
    DeadLetter,
    Emitted,
    Facts,
    Held,
    LogEntry,
    Trace,
    assemble,
    canonical,
)

_DLQ_ROW = (
    "EXISTS (SELECT 1 FROM dead_letters d WHERE d.correlation_id = o.correlation_id"
    " AND d.dlq_topic = o.topic AND d.processor = o.source"
    " AND d.event_id IS NOT DISTINCT FROM o.event_id)"
)


def trace(conn: psycopg.Connection, correlation_id: str) -> Trace:
    """The causal chain of ``correlation_id``; ConfigError when nothing carries it."""
    facts = read_facts(conn, correlation_id)
    if not (facts.emitted or facts.dead_letters or facts.held or facts.audit or facts.status):
        raise ConfigError(
            f"correlation id {correlation_id!r} is not known: no emitted event, dead letter, "
            "held event, audit entry or document carries it"
        )
    return assemble(facts)


def read_facts(conn: psycopg.Connection, correlation_id: str) -> Facts:
    """Every fact the database holds about ``correlation_id`` (a few indexed queries)."""
    emitted = _emitted(conn, correlation_id)
    dead = _dead_letters(conn, correlation_id)
    held = _held(conn, correlation_id)
    audit = _audit(conn, correlation_id)
    status, waiting, known = _documents(conn, correlation_id)
    consumers, registered = processor_types(conn)
    ids = {e.event_id for e in emitted} | {e.causation_id for e in emitted if e.causation_id}
    ids |= {d.event_id for d in dead if d.event_id} | {h.event_id for h in held}
    ids |= {a.event_id for a in audit} | set(known)
    waited = {w for h in held for w in h.waits_on} - {d.dead_letter_id for d in dead}
    return Facts(
        correlation_id=correlation_id,
        emitted=emitted,
        applied=_applied(conn, ids, sorted(set(consumers) | registered)),
        dead_letters=dead,
        held=held,
        audit=audit,
        known_types=known,
        consumers=consumers,
        registered=frozenset(registered),
        status=status,
        waiting=waiting,
        foreign={d.dead_letter_id: d for d in _dead_letters_by_id(conn, sorted(waited))},
    )


@cache
def builtin_types() -> dict[str, tuple[str, ...]]:
    """The event types each built-in processor consumes."""
    return {name: load_processor(name).consumes for name in BUILTIN}


def processor_types(conn: psycopg.Connection) -> tuple[dict[str, tuple[str, ...]], set[str]]:
    """(processor -> the event types it consumes, the processors that ever ran here): the
    built-in processors and every registered one (its stored declaration wins)."""
    consumers = dict(builtin_types())
    registered: set[str] = set()
    for name, types in conn.execute("SELECT name, consumes FROM processors").fetchall():
        registered.add(name)
        if types:
            consumers[name] = tuple(types)
    return consumers, registered


def _emitted(conn: psycopg.Connection, cid: str) -> list[Emitted]:
    rows = conn.execute(
        "SELECT o.event_id::text, o.event_type, o.topic, o.source, o.causation_id, o.created_at,"
        " o.sent_at, o.park_code || ': ' || o.park_reason FROM outbox o"
        f" WHERE o.correlation_id = %s AND o.event_id IS NOT NULL AND NOT {_DLQ_ROW}"
        " ORDER BY o.id",
        (cid,),
    ).fetchall()
    return [
        Emitted(i, t or "?", topic, src, canonical(c) if c else None, at, sent, parked)
        for i, t, topic, src, c, at, sent, parked in rows
    ]


_DEAD = """
SELECT d.dead_letter_id::text, d.processor, d.event_id::text, d.event_type, d.topic, d.key,
       d.error_code, d.message, d.status, d.attempts, d.first_failed_at,
       (SELECT count(*) FROM key_holds k JOIN held_events h
            ON h.processor = k.processor AND h.key = k.key
        WHERE k.dead_letter_id = d.dead_letter_id)
FROM dead_letters d WHERE {where} ORDER BY d.first_failed_at, d.id
"""


def _dead_letters(conn: psycopg.Connection, cid: str) -> list[DeadLetter]:
    return _read_dead(conn, _DEAD.format(where="d.correlation_id = %s"), cid)


def _dead_letters_by_id(conn: psycopg.Connection, ids: Sequence[str]) -> list[DeadLetter]:
    if not ids:
        return []
    return _read_dead(conn, _DEAD.format(where="d.dead_letter_id = ANY(%s::uuid[])"), list(ids))


def _read_dead(conn: psycopg.Connection, query: str, param: object) -> list[DeadLetter]:
    rows = conn.execute(query, (param,)).fetchall()
    logs = _logs(conn, [r[0] for r in rows])
    return [
        DeadLetter(
            dead_letter_id=r[0],
            processor=r[1],
            event_id=r[2],
            event_type=r[3],
            topic=r[4],
            key=_text(r[5]),
            error_code=r[6],
            message=r[7],
            status=r[8],
            attempts=r[9],
            first_failed_at=r[10],
            held_behind=int(r[11]),
            log=tuple(logs.get(r[0], ())),
        )
        for r in rows
    ]


def _logs(conn: psycopg.Connection, ids: Sequence[str]) -> dict[str, list[LogEntry]]:
    """The workbench's log of each dead letter (empty until someone acts on it)."""
    found: dict[str, list[LogEntry]] = {}
    present = conn.execute("SELECT to_regclass('dead_letter_log') IS NOT NULL").fetchone()
    if ids and present and present[0]:  # before migration 0013 there is no log
        for i, at, actor, action, outcome in conn.execute(
            "SELECT dead_letter_id::text, at, actor, action, outcome FROM dead_letter_log"
            " WHERE dead_letter_id = ANY(%s::uuid[]) ORDER BY id",
            (list(ids),),
        ).fetchall():
            found.setdefault(i, []).append(LogEntry(at, actor, action, outcome))
    return found


def _held(conn: psycopg.Connection, cid: str) -> list[Held]:
    rows = conn.execute(
        "SELECT h.processor, h.event_id::text, h.event_type, h.topic, h.key, h.held_at,"
        " ARRAY(SELECT k.dead_letter_id::text FROM key_holds k WHERE k.processor = h.processor"
        "       AND k.key = h.key ORDER BY k.held_since)"
        " FROM held_events h WHERE h.correlation_id = %s ORDER BY h.seq",
        (cid,),
    ).fetchall()
    return [Held(p, i, t, topic, _text(k) or "", at, tuple(w)) for p, i, t, topic, k, at, w in rows]


def _audit(conn: psycopg.Connection, cid: str) -> list[AuditNote]:
    rows = conn.execute(
        "SELECT entity_type, entity_id, action, actor, reason, at, event_id, recorded_at"
        " FROM audit_log"
        " WHERE correlation_id = %s ORDER BY at, entity_type, entity_id, seq",
        (cid,),
    ).fetchall()
    return [
        AuditNote(t, e, a, who, why, at, canonical(i), rec)
        for t, e, a, who, why, at, i, rec in rows
    ]


def _applied(
    conn: psycopg.Connection, ids: Iterable[str], processors: Sequence[str]
) -> dict[str, list[Applied]]:
    """Ledger rows of ``ids`` (by the ledger's key: processor, event id)."""
    uuids = sorted({i for i in ids if canonical(i) == i and _is_uuid(i)})
    found: dict[str, list[Applied]] = {}
    if uuids and processors:
        for p, i, at in conn.execute(
            "SELECT processor, event_id::text, processed_at FROM processed_events"
            " WHERE processor = ANY(%s) AND event_id = ANY(%s::uuid[])",
            (list(processors), uuids),
        ).fetchall():
            found.setdefault(i, []).append(Applied(p, at))
    return found


def _documents(conn: psycopg.Connection, cid: str) -> tuple[list[str], list[str], dict[str, str]]:
    """(a status line per requisition and purchase order, what they wait on, the event ids of
    the RequisitionSubmitted that created them)."""
    status: list[str] = []
    waiting: list[str] = []
    known: dict[str, str] = {}
    reqs = conn.execute(
        "SELECT requisition_id, status, total, currency, urgency, event_id::text"
        " FROM requisitions WHERE correlation_id = %s ORDER BY requisition_id",
        (cid,),
    ).fetchall()
    for rid, state, total, currency, urgency, event_id in reqs:
        status.append(f"requisition {rid} {state} {total} {currency} {urgency}")
        known[event_id] = "RequisitionSubmitted"
    rids = [r[0] for r in reqs]
    if not rids:
        return status, waiting, known
    now = conn.execute("SELECT now()").fetchone()
    for rid, step, roles, state, due in conn.execute(
        "SELECT requisition_id, step, roles, status, due_at FROM approval_steps"
        " WHERE requisition_id = ANY(%s) AND status IN ('PENDING', 'FALLBACK')"
        " ORDER BY requisition_id, step",
        (rids,),
    ).fetchall():
        waiting.append(_approval_wait(rid, step, roles, state, due, now[0] if now else None))
    for rid, step, n in conn.execute(
        "SELECT requisition_id, step, count(*) FROM approval_inbox WHERE requisition_id = ANY(%s)"
        " GROUP BY requisition_id, step ORDER BY requisition_id, step",
        (rids,),
    ).fetchall():
        waiting.append(f"{rid}: {n} decision(s) for step {step} wait for that step to open")
    for number, supplier, total, currency, state, delivery, attempts, error in conn.execute(
        "SELECT p.po_number, p.supplier_id, p.total, p.currency, p.status, d.status,"
        " d.attempts, d.last_error FROM purchase_orders p"
        " LEFT JOIN po_deliveries d ON d.po_id = p.po_id"
        " WHERE p.requisition_id = ANY(%s) ORDER BY p.po_number",
        (rids,),
    ).fetchall():
        status.append(f"PO {number} {state} {supplier} {total} {currency} delivery {delivery}")
        if delivery == "PENDING" and state != "CANCELLED":
            tried = f" after {attempts} attempt(s): {error}" if attempts and error else ""
            waiting.append(f"{number} not yet delivered to {supplier}{tried}")
    return status, waiting, known


def _approval_wait(
    rid: str, step: int, roles: Sequence[str], state: str, due: Any, now: Any
) -> str:
    who = "/".join(roles)
    if state == "FALLBACK":
        return f"{rid} approval step {step} ({who}) is in the FALLBACK queue: nobody can decide it"
    late = " (overdue)" if due is not None and now is not None and due < now else ""
    when = f", due {due.isoformat(timespec='minutes')}{late}" if due is not None else ""
    return f"{rid} waits for approval step {step} ({who}){when}"


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _text(key: bytes | memoryview | None) -> str | None:
    return None if key is None else bytes(key).decode(errors="replace")
