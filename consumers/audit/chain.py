"""The audit trail's pure parts: entries, their canonical form, hashing, chain verification.

Canonical form (version 1) of a stored entry, the bytes its SHA-256 is taken over: a JSON
object with exactly the keys ``v`` (the form's version, 1), ``entity_type``, ``entity_id``,
``seq``, ``at``, ``actor``, ``action``, ``reason``, ``rule_ids`` (a list, in the order given),
``rule_version``, ``detail`` (an object of strings), ``event_id``, ``correlation_id`` and
``prev_hash``; keys sorted, no whitespace (separators ``,`` and ``:``), non-ASCII characters
as themselves, encoded as UTF-8. ``at`` is UTC in ISO 8601 with microseconds and a ``Z``
(``2026-11-29T09:15:53.000000Z``); ``seq`` is a JSON integer; every other value a string.
``prev_hash`` is the previous entry's hash of the same entity (``GENESIS``, 64 zeros, for the
first); hashes are lowercase hex. Anyone can recompute a hash from a row with this paragraph.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

FORM_VERSION = 1
GENESIS = "0" * 64

ProblemKind = Literal["edited", "deleted", "reordered"]


@dataclass(frozen=True)
class AuditEntry:
    """A state change to record: who did what to which entity, when, why, and which event
    caused it. ``at`` must be an aware datetime (the event's time, so that a re-applied
    event yields the same entry); ``detail`` holds strings only (exact round trips)."""

    entity_type: str
    entity_id: str
    action: str
    actor: str
    at: dt.datetime
    event_id: str
    correlation_id: str
    reason: str = ""
    rule_ids: tuple[str, ...] = ()
    rule_version: str = ""
    detail: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError(f"audit entry of {self.entity_id}: 'at' must be timezone-aware")
        if not self.entity_type or not self.entity_id or not self.action:
            raise ValueError("audit entry: entity_type, entity_id and action must not be empty")
        bad = [k for k, v in self.detail.items() if not isinstance(v, str)]
        if bad:
            raise ValueError(f"audit entry of {self.entity_id}: detail {bad[0]!r} must be a str")

    @property
    def entity(self) -> tuple[str, str]:
        return (self.entity_type, self.entity_id)

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What makes an entry unique: a re-applied event appends nothing."""
        return (self.entity_type, self.entity_id, self.event_id, self.action)


@dataclass(frozen=True)
class AuditRow:
    """A stored entry: the entry, its place in its entity's chain and its hashes."""

    entry: AuditEntry
    seq: int
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Head:
    """The newest entry of an entity: its sequence number and hash (``audit_heads``)."""

    seq: int = 0
    hash: str = GENESIS


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a chain, at one sequence number of one entity."""

    entity_type: str
    entity_id: str
    seq: int
    kind: ProblemKind
    detail: str

    def __str__(self) -> str:
        return f"{self.entity_type} {self.entity_id} seq {self.seq}: {self.kind} ({self.detail})"


def from_envelope(
    envelope: Mapping[str, Any],
    *,
    entity_type: str,
    action: str,
    entity_id: str | None = None,
    actor: str | None = None,
    reason: str = "",
    rule_ids: Sequence[str] = (),
    rule_version: str = "",
    detail: Mapping[str, str] | None = None,
) -> AuditEntry:
    """The entry for a state change caused by the event of ``envelope``: its id, correlation
    id and time; its entity and actor unless given."""
    return AuditEntry(
        entity_type=entity_type,
        entity_id=entity_id if entity_id is not None else str(envelope["entity_id"]),
        action=action,
        actor=actor if actor is not None else str(envelope["actor"]),
        at=envelope["occurred_at"],
        event_id=str(envelope["event_id"]),
        correlation_id=str(envelope["correlation_id"]),
        reason=reason,
        rule_ids=tuple(rule_ids),
        rule_version=rule_version,
        detail=dict(detail or {}),
    )


def canonical(entry: AuditEntry, seq: int, prev_hash: str) -> bytes:
    """The canonical form (module docstring) of ``entry`` at ``seq`` after ``prev_hash``."""
    body = {
        "v": FORM_VERSION,
        "entity_type": entry.entity_type,
        "entity_id": entry.entity_id,
        "seq": seq,
        "at": canonical_time(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "reason": entry.reason,
        "rule_ids": list(entry.rule_ids),
        "rule_version": entry.rule_version,
        "detail": dict(entry.detail),
        "event_id": entry.event_id,
        "correlation_id": entry.correlation_id,
        "prev_hash": prev_hash,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def canonical_time(at: dt.datetime) -> str:
    """``at`` in UTC, ISO 8601 with microseconds and ``Z``."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(entry: AuditEntry, seq: int, prev_hash: str) -> str:
    return hashlib.sha256(canonical(entry, seq, prev_hash)).hexdigest()


def extend(head: Head, entries: Iterable[AuditEntry]) -> list[AuditRow]:
    """``entries`` (of one entity, in order) chained after ``head``."""
    rows: list[AuditRow] = []
    seq, prev = head.seq, head.hash
    for entry in entries:
        seq += 1
        row = AuditRow(entry, seq, prev, entry_hash(entry, seq, prev))
        rows.append(row)
        prev = row.hash
    return rows


def verify_chain(
    entity: tuple[str, str], rows: Sequence[AuditRow], head: Head | None = None
) -> list[Problem]:
    """Every problem of one entity's chain (``entity``: type, id), given its rows (in any
    order: the chain's order is ``seq``) and, when known, its head (which reveals deleted
    newest entries).

    Per row, at most: a gap before it (``deleted``: those sequence numbers are missing); its
    own hash recomputed from its fields (``reordered`` when it is right for another sequence
    number, that of the entry its ``prev_hash`` follows; ``edited`` otherwise); and, when both
    it and its predecessor are sound, the link ``prev_hash`` = the predecessor's hash
    (``deleted``: broken link, an entry was removed and the chain renumbered).
    """
    ordered = sorted(rows, key=lambda r: r.seq)
    written_as = _written_seqs(ordered)
    problems: list[Problem] = []

    def add(seq: int, kind: ProblemKind, detail: str) -> None:
        problems.append(Problem(entity[0], entity[1], seq, kind, detail))

    prev: AuditRow | None = None
    prev_sound = True
    for row in ordered:
        expected_seq = prev.seq + 1 if prev is not None else 1
        gap = row.seq != expected_seq
        if row.seq < expected_seq:
            add(row.seq, "reordered", f"seq {row.seq} appears twice")
        elif gap:
            add(expected_seq, "deleted", _missing(expected_seq, row.seq - 1))
        sound = entry_hash(row.entry, row.seq, row.prev_hash) == row.hash
        if not sound:
            was = written_as.get(row.hash, 0)
            if was > 0 and was != row.seq and entry_hash(row.entry, was, row.prev_hash) == row.hash:
                if row.prev_hash in written_as:
                    add(row.seq, "reordered", f"written as seq {was}")
                else:
                    add(row.seq, "deleted", f"renumbered from seq {was}, after a missing entry")
            else:
                add(row.seq, "edited", "hash mismatch")
        elif not gap and prev_sound:
            expected_prev = prev.hash if prev is not None else GENESIS
            if row.prev_hash != expected_prev:
                add(row.seq, "deleted", f"broken link: prev_hash does not match seq {row.seq - 1}")
        prev, prev_sound = row, sound
    last = prev.seq if prev is not None else 0
    if head is not None:
        if head.seq > last:
            add(last + 1, "deleted", _missing(last + 1, head.seq))
        elif head.seq < last:
            add(head.seq + 1, "edited", f"the entity's head ends at seq {head.seq}")
        elif prev is not None and prev_sound and head.hash != prev.hash:
            add(last, "edited", "hash differs from the entity's head")
    return problems


def _written_seqs(rows: Sequence[AuditRow]) -> dict[str, int]:
    """hash -> the sequence number its row was written with, as the links tell it: one more
    than that of the row its ``prev_hash`` names (1 after ``GENESIS``); -1 when a link is
    lost (an edited hash). After a missing row, the number is found by trying the next ones
    (a chain that was renumbered after a deletion)."""
    by_hash = {r.hash: r for r in rows}
    found: dict[str, int] = {GENESIS: 0}
    for row in rows:
        path: list[str] = []
        h = row.hash
        while h not in found and h in by_hash and len(path) <= len(rows):
            path.append(h)
            h = by_hash[h].prev_hash
        base = found.get(h, -1)
        if h not in found and h not in by_hash and path:  # its predecessor is missing
            bottom = by_hash[path[-1]]
            sound = entry_hash(bottom.entry, bottom.seq, bottom.prev_hash) == bottom.hash
            base = bottom.seq - 1 if sound else _seq_by_search(bottom) - 1
        for n, walked in enumerate(reversed(path), start=1):
            found[walked] = base + n if base >= 0 else -1
    return found


def _seq_by_search(row: AuditRow, tries: int = 1000) -> int:
    """The sequence number in (row.seq, row.seq + tries] whose hash is ``row``'s, or -1."""
    for seq in range(row.seq + 1, row.seq + tries + 1):
        if entry_hash(row.entry, seq, row.prev_hash) == row.hash:
            return seq
    return -1


def _missing(low: int, high: int) -> str:
    return f"seq {low} missing" if low == high else f"seq {low}..{high} missing"
