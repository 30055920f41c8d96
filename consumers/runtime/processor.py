"""The processor contract: a name, the event types it consumes, and a handler.

A handler receives the batch's fresh events (duplicates already skipped by the ledger) and the
open database transaction; it writes its effects with that connection and returns the events
it emits (full records with an envelope, see ``supplybus.events.envelope.caused_by``). The
runtime commits ledger, effects and outbox rows together, then the Kafka offsets.

A handler raises ``PermanentError`` (for example ``BusinessRuleError``) for an event that can
never succeed: the runtime isolates it and dead-letters it; the rest of the batch commits. It
raises ``TransientError`` (or lets a ``ConnectionError``/``TimeoutError`` of its own calls out)
to have the batch retried; ``consumers/runtime/faults.py`` says how every error is classified.
Emitted events must have distinct ids (``caused_by`` with an emitter and a discriminator) and
pass the domain checks: otherwise the processor is at fault, not its input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import psycopg
from confluent_kafka import Message

from supplybus.consumers.runtime.budget import DeadLetterBudget
from supplybus.consumers.runtime.start import Start

Record = Mapping[str, Any]
OnDeadLetter = Literal["hold_key", "continue"]


@dataclass(frozen=True, slots=True)
class Event:
    """A decoded event and where it came from (the Kafka message is kept for dead letters)."""

    event_type: str
    record: dict[str, Any]
    topic: str
    partition: int
    offset: int
    message: Message | None = field(default=None, repr=False)

    @property
    def key(self) -> bytes | None:
        return self.message.key() if self.message is not None else None

    @property
    def raw_value(self) -> bytes | None:
        return self.message.value() if self.message is not None else None

    @property
    def headers(self) -> list[tuple[str, bytes | None]]:
        found = self.message.headers() if self.message is not None else None
        return cast(list[tuple[str, bytes | None]], found or [])

    @property
    def timestamp_ms(self) -> int:
        return self.message.timestamp()[1] if self.message is not None else 0

    @property
    def envelope(self) -> dict[str, Any]:
        return self.record["envelope"]  # type: ignore[no-any-return]

    @property
    def event_id(self) -> str:
        return str(self.record["envelope"]["event_id"])


BatchHandler = Callable[[Sequence[Event], psycopg.Connection], Iterable[Record]]
EventHandler = Callable[[Event, psycopg.Connection], Iterable[Record]]


@dataclass(frozen=True)
class HoldAlert:
    """When a key held behind a dead letter needs an operator: more than ``max_events`` events
    held, or held for longer than ``max_age_s``. Past it the runtime alerts (metric
    ``supplybus_hold_alerts`` and a log line) and keeps holding: nothing is dropped."""

    max_events: int = 1000
    max_age_s: float = 3600.0

    def exceeded(self, events: int, age_s: float) -> bool:
        return events > self.max_events or age_s > self.max_age_s


@dataclass(frozen=True)
class Processor:
    """A stream processor. ``name`` is its consumer group and its ledger namespace; it is
    stored on the first run, and renamed only with `supplybus processors rename` (ADR 0007).
    ``start`` says where a new processor begins: "earliest", "latest" or an aware datetime;
    once registered, the stored start wins."""

    name: str
    consumes: tuple[str, ...]
    handle: BatchHandler
    setup: Callable[[psycopg.Connection], None] | None = None
    description: str = ""
    batch_size: int = field(default=1000)
    dead_letter_budget: DeadLetterBudget = field(default_factory=DeadLetterBudget)
    #: "hold_key": a dead-lettered event holds the later events of its key until it is
    #: resolved (per-key order; consumers/runtime/hold.py). "continue": later events flow on,
    #: for commutative processors whose effects do not depend on order (e.g. stock sums).
    on_dead_letter: OnDeadLetter = "hold_key"
    hold_alert: HoldAlert = field(default_factory=HoldAlert)
    start: Start = "earliest"

    def accepts(self, event_type: str) -> bool:
        return event_type in self.consumes


def per_event(handler: EventHandler) -> BatchHandler:
    """A batch handler that calls ``handler`` for each event in order."""

    def handle(events: Sequence[Event], conn: psycopg.Connection) -> list[Record]:
        emitted: list[Record] = []
        for event in events:
            emitted.extend(handler(event, conn))
        return emitted

    handle.__name__ = getattr(handler, "__name__", "handle")
    return handle
