"""Replaying dead letters through the processor that failed them, and only that processor.

``Replayer.replay(conn, ids)`` takes the dead letters in chunks, each chunk in ONE transaction:
the rows are locked (two replays of one dead letter run one after the other), their records
(the operator's corrected version where one was stored, ``dlq edit``) are decoded and applied by
the processor's ``BatchApplier`` ahead of the events held behind them, with the ledger: an event
already applied is reported as such and not applied again; one that fails again stays open with
one more attempt (its identity is the original record's, so its history grows); one applied is
marked replayed and its holds are lifted, and the events held behind it are then released in
order through the same processor. Each outcome goes to the dead-letter log.

Nothing is published to the source topic again: other consumers of the topic never see a
replay. ``dry_run`` does all of it inside a transaction that is rolled back, and logs only the
prediction. A crash mid-chunk rolls the chunk back; replaying again picks up what is still open.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import Message

from supplybus import crashpoints
from supplybus.consumers.runtime.apply import BatchApplier
from supplybus.consumers.runtime.budget import DeadLetterBudget
from supplybus.consumers.runtime.deadletter import Failure
from supplybus.consumers.runtime.decode import BatchDecoder
from supplybus.consumers.runtime.dlq_store import LogEntry, log
from supplybus.consumers.runtime.processor import Event, Processor
from supplybus.errors import SupplybusError
from supplybus.events.catalog import EventCatalog
from supplybus.producers.outbox import decode_headers

APPLIED, ALREADY, FAILED = "applied", "already-applied", "failed-again"
WOULD_APPLY, WOULD_FAIL = "would-apply", "would-fail"
NOT_OPEN, NOT_CONSUMED, WAITS = "not-open", "not-consumed", "waits"


@dataclass(frozen=True)
class Result:
    """What replaying one dead letter did (or, in a dry run, would do)."""

    dead_letter_id: str
    # applied, already-applied, failed-again, would-apply, would-fail, not-open, not-consumed,
    # waits (an earlier dead letter of its key is open)
    outcome: str
    message: str = ""


@dataclass
class _Row:
    dead_letter_id: str
    status: str
    original: Message
    replayed: Message  # the edited version when there is one


class _Rollback(Exception):
    """Ends a dry run's transaction."""


_LOCK = """
SELECT dead_letter_id::text, status, topic, partition, "offset",
       round(extract(epoch FROM record_timestamp) * 1000)::bigint, key, value, edited_value,
       headers
FROM dead_letters WHERE processor = %s AND dead_letter_id = ANY(%s::uuid[])
ORDER BY topic, partition, "offset"
FOR UPDATE
"""


class Replayer:
    """Replays ``processor``'s dead letters; ``actor`` names who did it in the log."""

    def __init__(
        self,
        processor: Processor,
        catalog: EventCatalog,
        actor: str,
        *,
        chunk: int = 1000,
    ) -> None:
        # an operator re-drives dead letters on purpose: the budget that halts a lane on a run
        # of them does not apply (each failure still goes back to its dead letter)
        unlimited = DeadLetterBudget(max_consecutive=2**62, max_in_window=2, window=1)
        self.processor = processor = dataclasses.replace(processor, dead_letter_budget=unlimited)
        self.catalog = catalog
        self.actor = actor
        self.chunk = chunk
        self.applier = BatchApplier(processor, catalog, self._dlq_topic)
        self.decoder = BatchDecoder(catalog, processor.consumes)

    def _dlq_topic(self, topic: str) -> str:
        dlq = self.catalog.topics.topic(topic).dlq
        if dlq is None:  # pragma: no cover - the catalog gives every stream topic a DLQ
            raise SupplybusError(f"topic {topic} has no dead-letter topic in the catalog")
        return dlq

    def replay(
        self,
        conn: psycopg.Connection,
        ids: Sequence[str],
        *,
        dry_run: bool = False,
        rate: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[Result]:
        """Replay ``ids`` (a dry run: predict), chunk by chunk; at most ``rate`` per second."""
        if self.processor.setup is not None:  # its tables, as at the start of a run
            self.processor.setup(conn)
        results: list[Result] = []
        size = self.chunk if rate is None else max(1, min(self.chunk, int(rate)))
        for chunk in _chunks(ids, size):
            started = time.monotonic()
            found = self._dry_run(conn, chunk) if dry_run else self._replay(conn, chunk)
            results.extend(found)
            if progress is not None:
                progress(len(chunk))
            if rate is not None:
                time.sleep(max(0.0, len(chunk) / rate - (time.monotonic() - started)))
        return results

    def _replay(self, conn: psycopg.Connection, ids: Sequence[str]) -> list[Result]:
        with conn.transaction():
            results = self._apply(conn, ids)
            crashpoints.reached("mid-replay")
            log(conn, [self._entry(r, "replay") for r in results])
            self._release(conn)
        return results

    def _dry_run(self, conn: psycopg.Connection, ids: Sequence[str]) -> list[Result]:
        found: list[Result] = []
        try:
            with conn.transaction():
                found = [_predicted(r) for r in self._apply(conn, ids)]
                self._release(conn)  # what would follow fails or not: still nothing kept
                raise _Rollback
        except _Rollback:
            pass
        with conn.transaction():
            log(conn, [self._entry(r, "dry-run") for r in found])
        return found

    def _apply(self, conn: psycopg.Connection, ids: Sequence[str]) -> list[Result]:
        rows = [_row(r) for r in conn.execute(_LOCK, (self.processor.name, list(ids)))]
        results = [_closed(r) for r in rows if r.status != "open"]
        rows = [r for r in rows if r.status == "open"]
        if self.processor.on_dead_letter == "hold_key":
            rows, waiting = self._first_of_each_key(conn, rows)
            results.extend(waiting)
        if not rows:
            return results
        by_place = {_place(r.original): r for r in rows}
        batch = self.decoder([r.replayed for r in rows])
        events = [  # the original record's identity, so that a failure extends its history
            dataclasses.replace(e, message=by_place[(e.topic, e.partition, e.offset)].original)
            for e in batch.events
        ]
        failures = [_as_original(f, by_place) for f in batch.failures]
        outcome = self.applier.apply(conn, events, failures, ahead_of_holds=True)
        dead = {(f.topic, f.partition, f.offset): f for f in outcome.dead}
        applied = {_place_of(e) for e in outcome.applied}
        decoded = {_place_of(e) for e in events} | set(dead)
        for place, row in by_place.items():
            if place not in decoded:  # an event type the processor does not consume
                results.append(Result(row.dead_letter_id, NOT_CONSUMED, self.processor.name))
                continue
            failure = dead.get(place)
            if failure is not None:
                results.append(Result(row.dead_letter_id, FAILED, str(failure.error)))
                continue
            done = APPLIED if place in applied else ALREADY
            results.append(Result(row.dead_letter_id, done))
        replayed = [r.dead_letter_id for r in results if r.outcome in (APPLIED, ALREADY)]
        conn.execute(
            "UPDATE dead_letters SET status = 'replayed' WHERE dead_letter_id = ANY(%s::uuid[])",
            (replayed,),
        )
        conn.execute("DELETE FROM key_holds WHERE dead_letter_id = ANY(%s::uuid[])", (replayed,))
        return results

    def _first_of_each_key(
        self, conn: psycopg.Connection, rows: list[_Row]
    ) -> tuple[list[_Row], list[Result]]:
        """Per-key order: a dead letter whose key waits on an earlier open dead letter (held by
        another one, or a second one of the key in this chunk) is not replayed now."""
        keys = sorted({k for r in rows if (k := r.original.key()) is not None})
        blockers: dict[bytes, str] = {}
        for key, other in conn.execute(
            "SELECT key, dead_letter_id::text FROM key_holds WHERE processor = %s"
            " AND key = ANY(%s) AND dead_letter_id <> ALL(%s::uuid[])",
            (self.processor.name, keys, [r.dead_letter_id for r in rows]),
        ):
            blockers.setdefault(bytes(key), other)
        kept: list[_Row] = []
        waiting: list[Result] = []
        for row in rows:
            key = row.original.key()
            blocker = blockers.get(key) if key is not None else None
            if blocker is not None:
                why = f"waits behind dead letter {blocker[:8]} of its key: replay that first"
                waiting.append(Result(row.dead_letter_id, WAITS, why))
                continue
            if key is not None:
                blockers[key] = row.dead_letter_id
            kept.append(row)
        return kept, waiting

    def _release(self, conn: psycopg.Connection) -> None:
        """The events held behind what was replayed, released in order (keys still held by
        another dead letter stay)."""
        while self.applier.release(conn, self.decoder) is not None:
            pass

    def _entry(self, result: Result, action: str) -> LogEntry:
        detail = {"processor": self.processor.name}
        if result.message:
            detail["message"] = result.message[:2000]
        return LogEntry(result.dead_letter_id, self.actor, action, result.outcome, detail)


def _closed(row: _Row) -> Result:
    """A dead letter that is not open: replayed before (so applied), parked or resolved."""
    if row.status == "replayed":
        return Result(row.dead_letter_id, ALREADY, "replayed before")
    return Result(row.dead_letter_id, NOT_OPEN, row.status)


def _predicted(result: Result) -> Result:
    kind = {APPLIED: WOULD_APPLY, ALREADY: ALREADY, FAILED: WOULD_FAIL}.get(
        result.outcome, result.outcome
    )
    return dataclasses.replace(result, outcome=kind)


def _row(r: Sequence[Any]) -> _Row:
    dlid, status, topic, partition, offset, timestamp, key, value, edited, headers = r

    def message(payload: bytes | None) -> Message:
        return Message(
            topic=str(topic),
            partition=int(partition),
            offset=int(offset),
            key=None if key is None else bytes(key),
            value=None if payload is None else bytes(payload),
            headers=list[tuple[str, str | bytes | None]](decode_headers(headers)),
            timestamp=(1, int(timestamp or 0)),
        )

    original = message(value)
    replayed = message(edited) if edited is not None else original
    return _Row(str(dlid), str(status), original, replayed)


def _place(msg: Message) -> tuple[str, int, int]:
    return str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)


def _place_of(event: Event) -> tuple[str, int, int]:
    return event.topic, event.partition, event.offset


def _as_original(failure: Failure, by_place: dict[tuple[str, int, int], _Row]) -> Failure:
    row = by_place[(failure.topic, failure.partition, failure.offset)]
    return dataclasses.replace(failure, value=row.original.value())


def _chunks(ids: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
