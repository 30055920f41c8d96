"""The one exception hierarchy of supplybus.

Every error has a stable ``code`` (for logs, metrics and dead-letter headers) and an
``exit_code`` for the CLI. The tree::

    SupplybusError
    ├── ConfigError            bad settings, bad catalog or bad file: fix the input
    │   └── CatalogError       the topic catalog is invalid or names an unknown topic
    ├── TransientError         retry with backoff; the batch and its order are kept
    │   ├── ServiceUnavailable
    │   │   ├── BrokerUnavailable
    │   │   └── DatabaseUnavailable
    │   └── TargetUnavailable  an outbound target (the PO folder) cannot take a document now
    ├── PermanentError         the record can never succeed as it is: dead-letter it
    │   ├── DecodeError        bad bytes or an unknown writer schema
    │   ├── ValidationError    schema or domain check failed (carries field errors)
    │   ├── ContractError      an event type its topic does not carry (per the catalog)
    │   └── BusinessRuleError  a rule of the domain refused the event
    ├── MigrationError         a migration failed; the database is left as it was
    ├── EmbeddedServiceError   the embedded broker or database could not be started
    ├── DeliveryError          Kafka did not acknowledge a record (after its own retries)
    ├── ProcessorError         a processor's code or tables are broken: stop, commit nothing
    │   └── DeadLetterBudgetExhausted  too many dead letters: halt without committing
    └── StoppedWithWorkUnapplied  a stop came while a batch waited on a retry: not committed
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal


class SupplybusError(Exception):
    """Root of every error supplybus raises on purpose."""

    code: str = "SUPPLYBUS_ERROR"
    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(SupplybusError):
    """A setting, file or argument is not what supplybus expects. Fix it and run again."""

    code = "CONFIG"


class CatalogError(ConfigError):
    """The topic catalog is invalid, or a topic is not in it."""

    code = "CATALOG"


class TransientError(SupplybusError):
    """A failure that may go away by itself: retry with backoff, keep the batch and order."""

    code = "TRANSIENT"


class ServiceUnavailable(TransientError):
    """A service did not answer in time."""

    code = "SERVICE_UNAVAILABLE"


class BrokerUnavailable(ServiceUnavailable):
    """The Kafka broker did not answer. Check KAFKA_BOOTSTRAP_SERVERS or run `supplybus up`."""

    code = "BROKER_UNAVAILABLE"


class DatabaseUnavailable(ServiceUnavailable):
    """PostgreSQL did not answer. Check DATABASE_URL or run `supplybus up`."""

    code = "DATABASE_UNAVAILABLE"


class TargetUnavailable(TransientError):
    """An outbound target (supplier / ERP) cannot take a document now: it waits and is retried."""

    code = "TARGET_UNAVAILABLE"


@dataclass(frozen=True)
class FieldError:
    """One failed check: the field path, what was expected, what was found."""

    path: str
    expected: str
    got: object = None

    def __str__(self) -> str:
        where = self.path or "<event>"
        if self.got is None:
            return f"{where}: {self.expected}"
        shown = self.got if isinstance(self.got, int | float | Decimal) else repr(self.got)
        return f"{where}: {self.expected}, got {shown}"


class PermanentError(SupplybusError):
    """The record cannot succeed as it is; it goes to the dead-letter topic.

    ``partition`` and ``offset`` locate the record when it came from Kafka.
    """

    code = "PERMANENT"

    def __init__(
        self, reason: str, *, partition: int | None = None, offset: int | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.partition = partition
        self.offset = offset


class DecodeError(PermanentError):
    """The bytes are not a record supplybus can read (bad framing or unknown schema)."""

    code = "DECODE"


class ValidationError(PermanentError):
    """An event failed its schema or domain checks; ``errors`` names each field."""

    code = "VALIDATION"

    def __init__(self, errors: Sequence[FieldError], *, context: str = "") -> None:
        self.errors = tuple(errors)
        head = f"{context}: " if context else ""
        super().__init__(head + "; ".join(str(e) for e in self.errors))


class ContractError(PermanentError):
    """A record broke the topic contract (an event type its topic does not carry)."""

    code = "CONTRACT"


class BusinessRuleError(PermanentError):
    """A domain rule refused the event (for example an unknown item)."""

    code = "BUSINESS_RULE"


class MigrationError(SupplybusError):
    """A database migration failed; its transaction was rolled back."""

    code = "MIGRATION"


class EmbeddedServiceError(SupplybusError):
    """The embedded broker or database could not be started or stopped."""

    code = "EMBEDDED_SERVICE"


@dataclass(frozen=True)
class DeliveryFailure:
    """One record the broker did not acknowledge: its event id (when it carried one), topic,
    and the producer's reason (e.g. ``MSG_SIZE_TOO_LARGE: ...``)."""

    event_id: str | None
    topic: str
    reason: str

    def __str__(self) -> str:
        return f"{self.event_id or '<no event id>'} on {self.topic}: {self.reason}"


class DeliveryError(SupplybusError):
    """Kafka did not acknowledge records after the producer's own retries. ``failures`` names
    each failed record; the records not named were acknowledged (``delivered`` of them). Send
    the failed ones again: their event ids are stable, so consumers skip any copy."""

    code = "DELIVERY"

    def __init__(
        self, message: str, *, failures: Sequence[DeliveryFailure] = (), delivered: int = 0
    ) -> None:
        super().__init__(message)
        self.failures = tuple(failures)
        self.delivered = delivered


class ProcessorError(SupplybusError):
    """A processor failed in a way no single event explains (a missing table, a bug hitting
    every event). Nothing of the batch was committed; fix the processor and restart it."""

    code = "PROCESSOR"


class DeadLetterBudgetExhausted(ProcessorError):
    """More records were dead-lettered than the processor's budget allows (a bug, a schema
    deployed out of order, a wrong topic). The batch was not committed and the lane halted;
    a restart resumes there. Look at the dead letters, fix the cause, or raise the budget
    (``supplybus run --dead-letter-budget``)."""

    code = "DEAD_LETTER_BUDGET"


class StoppedWithWorkUnapplied(SupplybusError):
    """The run was stopped while a batch waited to be retried (database or broker down).
    Nothing of it, and nothing after it, was committed: it is consumed again at the next
    start."""

    code = "STOPPED_UNAPPLIED"
    exit_code = 3
