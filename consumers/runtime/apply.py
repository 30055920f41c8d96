"""Applying one batch in ONE PostgreSQL transaction: ledger, effects, outbox, dead letters.

The whole batch is tried first without savepoints. When it fails for an event's fault it is
rolled back and applied again in savepoints, split in halves recursively until the failing
event stands alone; it is dead-lettered and every other event commits. Transient errors abort
the whole transaction for the lane to retry; a processor's fault (its SQL, its tables, an
invalid or duplicated emitted event, the dead-letter budget) commits nothing and stops it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psycopg
from confluent_kafka import Message

from supplybus import crashpoints
from supplybus.consumers.runtime import deadletter, hold, ledger
from supplybus.consumers.runtime.budget import Window, spend
from supplybus.consumers.runtime.deadletter import Failure
from supplybus.consumers.runtime.decode import DecodedBatch
from supplybus.consumers.runtime.faults import Fault, blames_event, fault_of
from supplybus.consumers.runtime.processor import Event, Processor, Record
from supplybus.errors import DeadLetterBudgetExhausted, ProcessorError, ValidationError
from supplybus.events.catalog import EventCatalog, Outgoing
from supplybus.events.key_lanes import KeyLanes
from supplybus.producers import outbox

log = logging.getLogger("supplybus.runtime")


@dataclass
class Outcome:
    """What one batch did."""

    applied: list[Event] = field(default_factory=list)
    duplicates: int = 0
    emitted: int = 0
    dead: list[Failure] = field(default_factory=list)
    held: list[Event] = field(default_factory=list)  # behind a dead letter of their key


class BatchApplier:
    """Applies batches for one processor; ``dlq_topic_of`` maps a source topic to its DLQ."""

    def __init__(
        self, processor: Processor, catalog: EventCatalog, dlq_topic_of: Callable[[str], str]
    ) -> None:
        self.processor = processor
        self.catalog = catalog
        self.dlq_topic_of = dlq_topic_of
        self.windows: dict[str, Window] = {}  # dead-letter budget per topic, as committed
        self._blocks: hold.KeyBlocks | None = None  # the current transaction's held keys
        self._clean = True  # no dead letter in any budget window (the fast path)

    def apply(
        self,
        conn: psycopg.Connection,
        events: Sequence[Event],
        failures: Sequence[Failure],
        *,
        ahead_of_holds: bool = False,
    ) -> Outcome:
        """One transaction: dead letters for ``failures``, then ``events`` applied once each.

        ``ahead_of_holds``: apply even events whose key is held (a dead letter's own record,
        replayed before the events held behind it).
        """
        try:
            return self._run(conn, events, failures, isolate=False, ahead=ahead_of_holds)
        except Exception as exc:  # noqa: BLE001 - classified by the call below
            self._raise_unless_events_fault(exc)
            log.info("batch failed as a whole; isolating the failing event(s)")
        return self._run(conn, events, failures, isolate=True, ahead=ahead_of_holds)

    def replay(
        self,
        conn: psycopg.Connection,
        dead_letter_id: str,
        decode: Callable[[Sequence[Message]], DecodedBatch],
    ) -> Outcome:
        """One transaction: a dead letter's original record is applied again, ahead of the
        events its key holds. Applied (or found already applied): the dead letter is marked
        replayed and its hold lifted, so the held events follow in order. Failing again: it
        stays open with one more attempt."""
        with conn.transaction():
            msg = hold.dead_letter_message(conn, self.processor.name, dead_letter_id)
            batch = decode([msg])
            outcome = self.apply(conn, batch.events, batch.failures, ahead_of_holds=True)
            if not outcome.dead:
                hold.resolve(conn, dead_letter_id, "replayed")
            return outcome

    def release(
        self, conn: psycopg.Connection, decode: Callable[[Sequence[Message]], DecodedBatch]
    ) -> Outcome | None:
        """One transaction: the held events of keys whose dead letters were all resolved are
        taken (in the order they were held) and applied like a batch (a failure holds the key
        again). None when nothing was releasable."""
        with conn.transaction():
            msgs = hold.take_released(conn, self.processor.name)
            if not msgs:
                return None
            batch = decode(msgs)
            outcome = self.apply(conn, batch.events, batch.failures)
            crashpoints.reached("mid-release")
            return outcome

    def _run(
        self,
        conn: psycopg.Connection,
        events: Sequence[Event],
        failures: Sequence[Failure],
        *,
        isolate: bool,
        ahead: bool = False,
    ) -> Outcome:
        outcome = Outcome()
        with conn.transaction():
            self._blocks = self._start_blocks(conn, [] if ahead else events)
            for failure in failures:
                self._dead_letter(conn, failure, outcome)
            if not isolate:
                self._claim_and_handle(conn, list(events), outcome)
            else:
                self._apply(conn, list(events), outcome)
                self._check_not_every_event(events, outcome)
            windows = self._spend_budget(events, failures, outcome)
        self.windows = windows
        self._clean = all(w.consecutive == 0 and not any(w.recent) for w in windows.values())
        return outcome

    def _start_blocks(
        self, conn: psycopg.Connection, events: Sequence[Event]
    ) -> hold.KeyBlocks | None:
        if self.processor.on_dead_letter != "hold_key":
            return None
        keys = {e.key for e in events if e.key is not None}
        return hold.KeyBlocks(hold.held_keys(conn, self.processor.name, keys), {})

    def _spend_budget(
        self, events: Sequence[Event], failures: Sequence[Failure], outcome: Outcome
    ) -> dict[str, Window]:
        if not outcome.dead and self._clean:
            return self.windows  # nothing dead, now or in any window: the budget is untouched
        dead = {(f.topic, f.partition, f.offset) for f in outcome.dead}
        where = sorted(
            {(e.topic, e.partition, e.offset) for e in events}
            | {(f.topic, f.partition, f.offset) for f in failures}
        )
        flags: dict[str, list[bool]] = defaultdict(list)
        for spot in where:
            flags[f"{spot[0]}[{spot[1]}]"].append(spot in dead)
        budget = self.processor.dead_letter_budget
        windows, exhausted = spend(self.windows, flags, budget)
        if exhausted is not None:
            raise DeadLetterBudgetExhausted(
                f"processor {self.processor.name}: dead-letter budget exhausted on {exhausted} "
                f"({budget.describe()}); this batch was not committed and the lane halted. "
                "Look at the dead letters, fix the cause and restart, or raise the budget "
                "(supplybus run --dead-letter-budget)"
            )
        return windows

    def _check_not_every_event(self, events: Sequence[Event], outcome: Outcome) -> None:
        unexplained = [f for f in outcome.dead if f.event_id and not blames_event(f.error)]
        tried = len(events) - len(outcome.held)
        if tried > 1 and len(unexplained) == tried:
            raise ProcessorError(
                f"processor {self.processor.name} failed on every event of a batch of "
                f"{len(events)} ({type(unexplained[0].error).__name__}: "
                f"{unexplained[0].error}); nothing was committed"
            ) from unexplained[0].error

    def _claim_and_handle(
        self, conn: psycopg.Connection, events: list[Event], outcome: Outcome
    ) -> None:
        if self._blocks is not None:
            events, held = self._blocks.split(events)
            hold.park(conn, self.processor.name, held)
            outcome.held.extend(held)
        fresh = ledger.claim(conn, self.processor.name, events)
        emitted = self._prepare(list(self.processor.handle(fresh, conn))) if fresh else []
        outbox.append(conn, self.processor.name, emitted)
        outcome.applied.extend(fresh)
        outcome.duplicates += len(events) - len(fresh)
        outcome.emitted += len(emitted)

    def _prepare(self, records: Sequence[Record]) -> list[Outgoing]:
        """Emitted events, checked: an invalid or repeated one is the processor's fault."""
        prepared: list[Outgoing] = []
        seen: set[str] = set()
        lanes = KeyLanes(self.catalog.topics)
        for record in records:
            try:
                out = self.catalog.prepare(record, check="domain")
            except ValidationError as exc:
                raise ProcessorError(
                    f"processor {self.processor.name} emitted an invalid event: {exc}"
                ) from exc
            switched = lanes.check(out.topic, out.key)
            if switched is not None:
                raise ProcessorError(
                    f"processor {self.processor.name} emitted events of one key on both lanes: "
                    f"{switched} (derive envelopes with caused_by, which inherits priority)"
                )
            event_id = str(out.envelope["event_id"])
            if event_id in seen:
                raise ProcessorError(
                    f"processor {self.processor.name} emitted two events with id {event_id} "
                    f"({out.envelope['event_type']}) for one batch: give each emitted event "
                    "its own discriminator (envelope.caused_by(..., discriminator=...))"
                )
            seen.add(event_id)
            prepared.append(out)
        return prepared

    def _raise_unless_events_fault(self, exc: Exception) -> None:
        """Re-raise a transient error as it is and a processor's fault as ProcessorError; return
        only for an error that an event may explain (the caller isolates it)."""
        fault = fault_of(exc)
        if fault is Fault.TRANSIENT:
            raise exc
        if fault is Fault.PROCESSOR:
            raise self._broken(exc) from exc

    def _broken(self, exc: BaseException) -> ProcessorError:
        if isinstance(exc, ProcessorError):
            return exc
        return ProcessorError(
            f"processor {self.processor.name}: {type(exc).__name__}: {exc} "
            "(its tables or SQL are wrong; nothing was committed)"
        )

    def _apply(self, conn: psycopg.Connection, events: list[Event], outcome: Outcome) -> None:
        """Apply ``events`` in a savepoint; on failure bisect until the culprit stands alone."""
        if not events:
            return
        part = Outcome()
        try:
            with conn.transaction():  # a savepoint: undone as a whole on failure
                self._claim_and_handle(conn, events, part)
        except Exception as exc:  # noqa: BLE001 - classified by the call below
            self._raise_unless_events_fault(exc)
            crashpoints.reached("mid-bisection")
            if len(events) == 1:
                self._dead_letter(conn, _failure_of(events[0], exc), outcome, whole_key=True)
                return
            middle = len(events) // 2
            self._apply(conn, events[:middle], outcome)
            self._apply(conn, events[middle:], outcome)
            return
        outcome.applied.extend(part.applied)
        outcome.duplicates += part.duplicates
        outcome.emitted += part.emitted
        outcome.held.extend(part.held)

    def _dead_letter(
        self,
        conn: psycopg.Connection,
        failure: Failure,
        outcome: Outcome,
        *,
        whole_key: bool = False,
    ) -> None:
        """Dead-letter ``failure``; with per-key hold, hold its key's later events
        (``whole_key``: every event of the key still to come in this batch)."""
        name = self.processor.name
        still_open = deadletter.record(conn, name, self.dlq_topic_of(failure.topic), failure)
        outcome.dead.append(failure)
        if self._blocks is None or failure.key is None or not still_open:
            return
        hold.hold_key(conn, name, failure.key, failure.dead_letter_id(name))
        if whole_key:
            self._blocks.keys.add(failure.key)
        else:
            where = (failure.topic, failure.partition, failure.offset)
            self._blocks.after.setdefault(failure.key, []).append(where)


def _failure_of(event: Event, error: BaseException) -> Failure:
    return Failure(
        topic=event.topic,
        partition=event.partition,
        offset=event.offset,
        timestamp_ms=event.timestamp_ms,
        key=event.key,
        value=event.raw_value,
        headers=event.headers,
        error=error,
        event_id=event.event_id,
        event_type=event.event_type,
        correlation_id=str(event.envelope.get("correlation_id")),
    )
