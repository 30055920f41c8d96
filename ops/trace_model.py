"""A traced transaction as plain data, and its assembly from the facts (pure functions).

``assemble(facts)`` turns what the database holds about one correlation id (``Facts``, read by
``supplybus.ops.tracing``) into a tree keyed by event id, children by causation, in causal order
(depth first, siblings by time), and a ``Stuck`` summary: open dead letters, held events,
events not yet applied by a processor that consumes their type, outbox rows not yet sent, and
what the business documents wait on. ``explain`` says it in a few lines; ``to_json`` gives the
same structure as JSON-ready values.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Emitted:
    """An outbox row: an event a processor (or a command) emitted."""

    event_id: str
    event_type: str
    topic: str
    source: str
    causation_id: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None
    parked: str | None  # "CODE: reason" when the relay parked it


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One line of a dead letter's log (replays, parks, skips, edits, failures again)."""

    at: dt.datetime
    actor: str
    action: str
    outcome: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    dead_letter_id: str
    processor: str
    event_id: str | None
    event_type: str | None
    topic: str
    key: str | None
    error_code: str
    message: str
    status: str  # open, parked, replayed, resolved
    attempts: int
    first_failed_at: dt.datetime
    held_behind: int  # events (of any transaction) held behind it
    log: tuple[LogEntry, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.status in ("open", "parked")


@dataclass(frozen=True, slots=True)
class Held:
    """An event held, unapplied, behind the dead letters of its key."""

    processor: str
    event_id: str
    event_type: str
    topic: str
    key: str
    held_at: dt.datetime
    waits_on: tuple[str, ...]  # dead letter ids; empty: resolved, released on the next batch


@dataclass(frozen=True, slots=True)
class AuditNote:
    entity_type: str
    entity_id: str
    action: str
    actor: str
    reason: str
    at: dt.datetime  # when it happened (business time: the event's occurred_at)
    event_id: str
    recorded_at: dt.datetime  # when it was stored (what timings compare)


@dataclass(frozen=True, slots=True)
class Applied:
    processor: str
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything the database holds about one correlation id (what ``assemble`` needs)."""

    correlation_id: str
    emitted: Sequence[Emitted] = ()
    applied: Mapping[str, Sequence[Applied]] = field(default_factory=dict)
    dead_letters: Sequence[DeadLetter] = ()
    held: Sequence[Held] = ()
    audit: Sequence[AuditNote] = ()
    known_types: Mapping[str, str] = field(default_factory=dict)  # event id -> type
    consumers: Mapping[str, Sequence[str]] = field(default_factory=dict)  # processor -> types
    registered: frozenset[str] = frozenset()  # processors that ever ran
    status: Sequence[str] = ()  # one line per business document
    waiting: Sequence[str] = ()  # what the documents wait on (approvals, deliveries)
    foreign: Mapping[str, DeadLetter] = field(default_factory=dict)  # waited-on, other trace


@dataclass(frozen=True, slots=True)
class Node:
    event_id: str
    event_type: str | None
    topic: str | None
    emitted_by: str | None  # None: published directly by a source system
    at: dt.datetime | None
    sent_at: dt.datetime | None
    parked: str | None
    causation_id: str | None
    depth: int
    children: tuple[str, ...]
    applied: tuple[Applied, ...]
    dead_letters: tuple[DeadLetter, ...]
    held: tuple[Held, ...]
    audit: tuple[AuditNote, ...]

    @property
    def unsent(self) -> bool:
        return self.emitted_by is not None and self.sent_at is None


@dataclass(frozen=True, slots=True)
class Unapplied:
    event_id: str
    event_type: str
    at: dt.datetime | None
    processors: tuple[str, ...]  # consume its type, have not applied, held or dead-lettered it
    never_ran: tuple[str, ...]  # among them, processors that never ran here


@dataclass(frozen=True, slots=True)
class Stuck:
    dead_letters: tuple[DeadLetter, ...]
    held: tuple[Held, ...]
    unapplied: tuple[Unapplied, ...]
    unsent: tuple[Node, ...]
    waiting: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.dead_letters or self.held or self.unapplied or self.unsent)


@dataclass(frozen=True, slots=True)
class Trace:
    correlation_id: str
    started_at: dt.datetime | None
    nodes: dict[str, Node]  # in causal order (depth first, siblings by time)
    roots: tuple[str, ...]
    status: tuple[str, ...]
    stuck: Stuck
    foreign: Mapping[str, DeadLetter]
    undecoded: tuple[DeadLetter, ...]  # dead letters of records without an event id


def canonical(event_id: str) -> str:
    """The canonical text of a uuid (as PostgreSQL answers it); any other id as it is."""
    try:
        return str(uuid.UUID(event_id))
    except ValueError:
        return event_id


def assemble(facts: Facts) -> Trace:
    """The tree and the stuck summary from ``facts`` (pure)."""
    emitted: dict[str, Emitted] = {}
    for e in sorted(facts.emitted, key=lambda e: e.created_at):
        emitted.setdefault(e.event_id, e)
    rank = {i: n for n, i in enumerate(emitted)}  # outbox order breaks ties in time
    ids = _all_ids(facts, emitted)
    parent = {i: e.causation_id for i, e in emitted.items() if e.causation_id in ids}
    kids: dict[str | None, list[str]] = {}
    for i in ids:
        kids.setdefault(parent.get(i), []).append(i)
    times = {i: _time_of(i, facts, emitted) for i in ids}
    far = dt.datetime.max.replace(tzinfo=dt.UTC)

    def order(i: str) -> tuple[dt.datetime, int, str]:
        return (times[i] or far, rank.get(i, -1), i)

    ordered: list[tuple[str, int]] = []
    seen: set[str] = set()

    def visit(i: str, depth: int) -> None:
        if i in seen:
            return
        seen.add(i)
        ordered.append((i, depth))
        for child in sorted(kids.get(i, ()), key=order):
            visit(child, depth + 1)

    roots = sorted(kids.get(None, ()), key=order)
    for root in roots:
        visit(root, 0)
    for stray in sorted(ids - seen, key=order):  # a causation cycle: never from caused_by
        roots.append(stray)
        visit(stray, 0)
    nodes = {i: _node(i, d, facts, emitted, kids, times[i]) for i, d in ordered}
    undecoded = tuple(d for d in facts.dead_letters if not d.event_id)
    first = [t for t in times.values() if t is not None] + [d.first_failed_at for d in undecoded]
    started = min(first, default=None)
    return Trace(
        correlation_id=facts.correlation_id,
        started_at=started,
        nodes=nodes,
        roots=tuple(roots),
        status=tuple(facts.status),
        stuck=_stuck(facts, nodes),
        foreign=facts.foreign,
        undecoded=undecoded,
    )


def _all_ids(facts: Facts, emitted: Mapping[str, Emitted]) -> set[str]:
    ids = set(emitted) | set(facts.applied) | set(facts.known_types)
    ids |= {e.causation_id for e in emitted.values() if e.causation_id}
    ids |= {d.event_id for d in facts.dead_letters if d.event_id}
    ids |= {h.event_id for h in facts.held} | {a.event_id for a in facts.audit}
    return ids


def _time_of(i: str, facts: Facts, emitted: Mapping[str, Emitted]) -> dt.datetime | None:
    if i in emitted:
        return emitted[i].created_at
    seen = [a.at for a in facts.applied.get(i, ())]
    seen += [d.first_failed_at for d in facts.dead_letters if d.event_id == i]
    seen += [h.held_at for h in facts.held if h.event_id == i]
    if not seen:  # known from the audit trail alone
        seen = [a.recorded_at for a in facts.audit if a.event_id == i]
    return min(seen, default=None)


def _node(
    i: str,
    depth: int,
    facts: Facts,
    emitted: Mapping[str, Emitted],
    kids: Mapping[str | None, list[str]],
    at: dt.datetime | None,
) -> Node:
    e = emitted.get(i)
    applied = tuple(sorted(facts.applied.get(i, ()), key=lambda a: (a.at, a.processor)))
    dead = tuple(d for d in facts.dead_letters if d.event_id == i)
    held = tuple(h for h in facts.held if h.event_id == i)
    kind = e.event_type if e else facts.known_types.get(i) or _type_from(dead, held)
    if kind is None:
        kind = _inferred_type(applied, facts.consumers)
    topics = [x.topic for x in dead] + [x.topic for x in held]
    topic = e.topic if e else next(iter(topics), None)
    return Node(
        event_id=i,
        event_type=kind,
        topic=topic,
        emitted_by=e.source if e else None,
        at=at,
        sent_at=e.sent_at if e else None,
        parked=e.parked if e else None,
        causation_id=e.causation_id if e else None,
        depth=depth,
        children=tuple(c for c in kids.get(i, ())),
        applied=applied,
        dead_letters=dead,
        held=held,
        audit=tuple(
            sorted((a for a in facts.audit if a.event_id == i), key=lambda a: a.recorded_at)
        ),
    )


def _type_from(dead: Iterable[DeadLetter], held: Iterable[Held]) -> str | None:
    return next((d.event_type for d in dead if d.event_type), None) or next(
        (h.event_type for h in held), None
    )


def _inferred_type(
    applied: Iterable[Applied], consumers: Mapping[str, Sequence[str]]
) -> str | None:
    """The one event type every processor that applied the event consumes, if just one."""
    common: set[str] | None = None
    for a in applied:
        types = set(consumers.get(a.processor, ()))
        common = types if common is None else common & types
    return next(iter(common)) if common is not None and len(common) == 1 else None


def _stuck(facts: Facts, nodes: Mapping[str, Node]) -> Stuck:
    unapplied: list[Unapplied] = []
    for n in nodes.values():
        if n.event_type is None or n.unsent:
            continue
        done = {a.processor for a in n.applied} | {d.processor for d in n.dead_letters}
        done |= {h.processor for h in n.held}
        due = tuple(sorted(p for p, types in facts.consumers.items() if n.event_type in types))
        missing = tuple(p for p in due if p not in done)
        if missing:
            never = tuple(p for p in missing if p not in facts.registered)
            unapplied.append(Unapplied(n.event_id, n.event_type, n.at, missing, never))
    return Stuck(
        dead_letters=tuple(d for d in facts.dead_letters if d.is_open),
        held=tuple(sorted(facts.held, key=lambda h: h.held_at)),
        unapplied=tuple(unapplied),
        unsent=tuple(n for n in nodes.values() if n.unsent),
        waiting=tuple(facts.waiting),
    )


# -- saying it -----------------------------------------------------------------------------


def short(event_id: str | None) -> str:
    return (event_id or "?")[:8]


def delta(at: dt.datetime | None, start: dt.datetime | None) -> str:
    """``+0.042s``, ``+12.3s``, ``+5m03s``, ``+2h10m``, ``+3d04h`` after ``start``."""
    if at is None or start is None:
        return "+?"
    s = (at - start).total_seconds()
    sign, s = ("-", -s) if s < 0 else ("+", s)
    if s < 10:
        text = f"{s:.3f}s"
    elif s < 60:
        text = f"{s:.1f}s"
    elif s < 3600:
        text = f"{int(s // 60)}m{int(s % 60):02d}s"
    elif s < 86400:
        text = f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    else:
        text = f"{int(s // 86400)}d{int(s % 86400 // 3600):02d}h"
    return sign + text


def explain(t: Trace) -> list[str]:
    """Where the transaction is and why it is stuck, one line per cause (most urgent first)."""
    st, lines = t.stuck, []
    for d in st.dead_letters:
        behind = f"; {d.held_behind} event(s) held behind it" if d.held_behind else ""
        parked = " (parked)" if d.status == "parked" else ""
        lines.append(
            f"dead letter {short(d.dead_letter_id)}{parked} at {d.processor}: {d.message}{behind}"
        )
    for h in st.held:
        what = f"{h.event_type} {short(h.event_id)} held at {h.processor} (key {h.key})"
        if not h.waits_on:
            lines.append(f"{what}: its dead letters are resolved; released on the next batch")
            continue
        causes = []
        for w in h.waits_on:
            other = t.foreign.get(w)  # a dead letter of another transaction
            causes.append(f"{short(w)} ({other.message})" if other else short(w))
        lines.append(f"{what} behind dead letter {', '.join(causes)}")
    for n in st.unsent:
        if n.parked:
            lines.append(f"{n.event_type} {short(n.event_id)} parked by the relay: {n.parked}")
        else:
            lines.append(
                f"{n.event_type} {short(n.event_id)} from {n.emitted_by} waits in the outbox"
                " (is the relay running?)"
            )
    for u in st.unapplied:
        never = f" ({', '.join(u.never_ran)} never ran here)" if u.never_ran else ""
        lines.append(
            f"{u.event_type} {short(u.event_id)} not yet applied by {', '.join(u.processors)}"
            f"{never}"
        )
    lines.extend(st.waiting)
    if not lines:
        where = f"{t.status[0]} " if t.status else ""
        lines.append(f"nothing stuck: {where}({len(t.nodes)} events)")
    return lines


def to_json(t: Trace) -> dict[str, Any]:
    """The trace as JSON-ready values (times in ISO 8601, ``delta`` from the start)."""

    def when(at: dt.datetime | None) -> str | None:
        return at.isoformat() if at is not None else None

    def dead(d: DeadLetter) -> dict[str, Any]:
        return {
            "dead_letter_id": d.dead_letter_id, "processor": d.processor,
            "event_id": d.event_id, "event_type": d.event_type, "topic": d.topic, "key": d.key,
            "error_code": d.error_code, "message": d.message, "status": d.status,
            "attempts": d.attempts, "first_failed_at": when(d.first_failed_at),
            "held_behind": d.held_behind,
            "log": [
                {"at": when(g.at), "actor": g.actor, "action": g.action, "outcome": g.outcome}
                for g in d.log
            ],
        }  # fmt: skip

    def held(h: Held) -> dict[str, Any]:
        return {
            "processor": h.processor, "event_id": h.event_id, "event_type": h.event_type,
            "topic": h.topic, "key": h.key, "held_at": when(h.held_at),
            "waits_on": list(h.waits_on),
        }  # fmt: skip

    def node(n: Node) -> dict[str, Any]:
        return {
            "event_id": n.event_id, "event_type": n.event_type, "topic": n.topic,
            "emitted_by": n.emitted_by, "at": when(n.at), "delta": delta(n.at, t.started_at),
            "sent_at": when(n.sent_at), "parked": n.parked, "causation_id": n.causation_id,
            "depth": n.depth, "children": list(n.children),
            "applied_by": [
                {"processor": a.processor, "at": when(a.at), "delta": delta(a.at, t.started_at)}
                for a in n.applied
            ],
            "dead_letters": [dead(d) for d in n.dead_letters],
            "held": [held(h) for h in n.held],
            "audit": [
                {"entity_type": a.entity_type, "entity_id": a.entity_id, "action": a.action,
                 "actor": a.actor, "reason": a.reason, "at": when(a.at),
                 "recorded_at": when(a.recorded_at)}
                for a in n.audit
            ],
        }  # fmt: skip

    st = t.stuck
    return {
        "correlation_id": t.correlation_id,
        "started_at": when(t.started_at),
        "status": list(t.status),
        "roots": list(t.roots),
        "events": [node(n) for n in t.nodes.values()],
        "undecoded_dead_letters": [dead(d) for d in t.undecoded],
        "stuck": {
            "stuck": bool(st),
            "summary": explain(t),
            "dead_letters": [dead(d) for d in st.dead_letters],
            "held": [held(h) for h in st.held],
            "unapplied": [
                {
                    "event_id": u.event_id,
                    "event_type": u.event_type,
                    "at": when(u.at),
                    "processors": list(u.processors),
                    "never_ran": list(u.never_ran),
                }
                for u in st.unapplied
            ],
            "unsent": [
                {
                    "event_id": n.event_id,
                    "event_type": n.event_type,
                    "emitted_by": n.emitted_by,
                    "parked": n.parked,
                }
                for n in st.unsent
            ],
            "waiting": list(st.waiting),
        },
    }
