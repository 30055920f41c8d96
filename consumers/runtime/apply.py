"""Applying one batch in ONE PostgreSQL transaction: ledger, effects, outbox, dead letters.

The batch runs inside a savepoint. When the handler raises for one event, the savepoint is
rolled back and the batch is split in halves, recursively, until the failing event stands
alone; it is dead-lettered and every other event commits. Transient errors (a lost
connection) are not handled here: they abort the whole transaction for the caller to retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psycopg

from supplybus.consumers.runtime import deadletter, ledger
from supplybus.consumers.runtime.deadletter import Failure
from supplybus.consumers.runtime.processor import Event, Processor
from supplybus.errors import PermanentError, ProcessorError, TransientError
from supplybus.events.catalog import EventCatalog
from supplybus.producers import outbox

log = logging.getLogger("supplybus.runtime")

#: psycopg errors that mean "the connection or server is gone / try again", never the event.
TRANSIENT_DB_ERRORS: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
)
#: Everything the lane retries with the batch kept: ours and the database's transient errors.
RETRYABLE: tuple[type[Exception], ...] = (TransientError, *TRANSIENT_DB_ERRORS)
#: Errors that leave a batch as they are: retried as a whole, or stopping the lane.
PASS_THROUGH: tuple[type[Exception], ...] = (*RETRYABLE, ProcessorError)
#: Errors that mean the processor's SQL or tables are wrong: no event is to blame.
FATAL_DB_ERRORS: tuple[type[Exception], ...] = (
    psycopg.ProgrammingError,
    psycopg.NotSupportedError,
    psycopg.errors.InsufficientPrivilege,
)
#: Errors that blame the event itself (besides PermanentError): bad data hit a constraint.
EVENT_DB_ERRORS: tuple[type[Exception], ...] = (psycopg.DataError, psycopg.IntegrityError)


@dataclass
class Outcome:
    """What one batch did."""

    applied: list[Event] = field(default_factory=list)
    duplicates: int = 0
    emitted: int = 0
    dead: list[Failure] = field(default_factory=list)


class BatchApplier:
    """Applies batches for one processor; ``dlq_topic_of`` maps a source topic to its DLQ."""

    def __init__(
        self, processor: Processor, catalog: EventCatalog, dlq_topic_of: Callable[[str], str]
    ) -> None:
        self.processor = processor
        self.catalog = catalog
        self.dlq_topic_of = dlq_topic_of
        self.seen = 0  # records committed since start (applied, duplicate or dead-lettered)
        self.dead = 0

    def apply(
        self, conn: psycopg.Connection, events: Sequence[Event], failures: Sequence[Failure]
    ) -> Outcome:
        """One transaction: dead letters for ``failures``, then ``events`` applied once each.

        The whole batch is tried first without savepoints (two round trips fewer); only when
        it fails is it rolled back and applied again with each part in a savepoint.
        """
        try:
            return self._run(conn, events, failures, isolate=False)
        except PASS_THROUGH:
            raise
        except FATAL_DB_ERRORS as exc:
            raise self._broken(exc) from exc
        except Exception:  # noqa: BLE001 - isolate the failing event(s) below
            log.info("batch failed as a whole; isolating the failing event(s)")
        return self._run(conn, events, failures, isolate=True)

    def _run(
        self,
        conn: psycopg.Connection,
        events: Sequence[Event],
        failures: Sequence[Failure],
        *,
        isolate: bool,
    ) -> Outcome:
        outcome = Outcome()
        with conn.transaction():
            for failure in failures:
                self._dead_letter(conn, failure, outcome)
            if not isolate:
                self._claim_and_handle(conn, list(events), outcome)
            else:
                self._apply(conn, list(events), outcome)
                unexplained = [f for f in outcome.dead if not _blames_event(f.error)]
                if len(events) > 1 and len(unexplained) == len(events):
                    raise ProcessorError(
                        f"processor {self.processor.name} failed on every event of a batch of "
                        f"{len(events)} ({type(unexplained[0].error).__name__}: "
                        f"{unexplained[0].error}); nothing was committed"
                    ) from unexplained[0].error
            self._check_dlq_limit(len(events) + len(failures), len(outcome.dead))
        self.seen += len(events) + len(failures)
        self.dead += len(outcome.dead)
        return outcome

    def _check_dlq_limit(self, records: int, dead: int) -> None:
        limit = self.processor.dlq_limit
        seen, total_dead = self.seen + records, self.dead + dead
        if limit.max_ratio is None or seen < limit.min_records or not dead:
            return
        if total_dead / seen > limit.max_ratio:
            raise ProcessorError(
                f"processor {self.processor.name}: {total_dead} of {seen} records dead-lettered "
                f"since start, over its limit of {limit.max_ratio:.0%}; this batch was not "
                "committed (check the dead letters, fix the cause, restart)"
            )

    def _claim_and_handle(
        self, conn: psycopg.Connection, events: list[Event], outcome: Outcome
    ) -> None:
        fresh = ledger.claim(conn, self.processor.name, events)
        emitted = list(self.processor.handle(fresh, conn)) if fresh else []
        prepared = [self.catalog.prepare(r, check="domain") for r in emitted]
        outbox.append(conn, self.processor.name, prepared)
        outcome.applied.extend(fresh)
        outcome.duplicates += len(events) - len(fresh)
        outcome.emitted += len(prepared)

    def _broken(self, exc: BaseException) -> ProcessorError:
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
        except RETRYABLE:
            raise
        except FATAL_DB_ERRORS as exc:
            raise self._broken(exc) from exc
        except Exception as exc:  # noqa: BLE001 - any other failure is isolated to its event
            if len(events) == 1:
                self._dead_letter(conn, _failure_of(events[0], exc), outcome)
                return
            middle = len(events) // 2
            self._apply(conn, events[:middle], outcome)
            self._apply(conn, events[middle:], outcome)
            return
        outcome.applied.extend(part.applied)
        outcome.duplicates += part.duplicates
        outcome.emitted += part.emitted

    def _dead_letter(self, conn: psycopg.Connection, failure: Failure, outcome: Outcome) -> None:
        deadletter.record(conn, self.processor.name, self.dlq_topic_of(failure.topic), failure)
        outcome.dead.append(failure)


def _blames_event(error: BaseException) -> bool:
    return isinstance(error, (PermanentError, *EVENT_DB_ERRORS))


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
