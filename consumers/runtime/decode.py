"""Decoding a consumed batch into events to apply and failures to dead-letter (pure).

Every record a foreign producer can write ends as an event or a failure, never as an
exception: bad framing or bytes, an unknown writer schema, an event type its topic does not
carry (per the topic catalog), an event id that is not a UUID, and a record that fails the
same domain checks as published events (quantities, units, currencies, GTINs).
Records of types this processor does not consume are skipped (their offsets still commit).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Message

from supplybus.consumers.runtime.deadletter import Failure
from supplybus.consumers.runtime.processor import Event
from supplybus.errors import ContractError, FieldError, PermanentError, ValidationError
from supplybus.events.catalog import EventCatalog
from supplybus.events.codec import Decoded


@dataclass
class DecodedBatch:
    events: list[Event] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    skipped: int = 0
    consumer_errors: list[KafkaError] = field(default_factory=list)


class BatchDecoder:
    """Decodes batches for one processor (the set of event types it consumes)."""

    def __init__(self, catalog: EventCatalog, consumes: Sequence[str]) -> None:
        self._decode: Callable[[bytes | None], Decoded] = catalog.codec.decode
        self._domain_errors = catalog.domain_errors
        self._carried: Mapping[str, frozenset[str]] = {
            t.name: frozenset(t.event_types) for t in catalog.topics.topics
        }
        self._consumes = frozenset(consumes)

    def __call__(self, msgs: Sequence[Message]) -> DecodedBatch:
        batch = DecodedBatch()
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                batch.consumer_errors.append(err)
                continue
            try:
                event = self._event(msg)
            except PermanentError as exc:
                batch.failures.append(Failure.of_message(msg, exc))
                continue
            if event is None:
                batch.skipped += 1
            else:
                batch.events.append(event)
        return batch

    def _event(self, msg: Message) -> Event | None:
        topic = str(msg.topic())
        decoded = self._decode(msg.value())
        carried = self._carried.get(topic)
        if carried is not None and decoded.event_type not in carried:
            raise ContractError(
                f"a {decoded.event_type} on topic {topic}, which carries "
                f"{', '.join(sorted(carried)) or 'no event types'} (see the topic catalog)"
            )
        if decoded.event_type not in self._consumes:
            return None
        record = decoded.record
        envelope = cast(dict[str, Any], record.get("envelope") or {})
        errors = _envelope_errors(envelope, decoded.event_type)
        errors += self._domain_errors(decoded.event_type, record)
        if errors:
            raise ValidationError(errors, context=f"consumed {decoded.event_type}")
        where = cast(tuple[int, int], (msg.partition(), msg.offset()))
        return Event(decoded.event_type, record, topic, *where, msg)


#: The spellings of a UUID that both Python and PostgreSQL read (braces, case, hyphens).
_UUID = re.compile(
    r"\{?[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\}?"
)


def _envelope_errors(envelope: Mapping[str, Any], event_type: str) -> list[FieldError]:
    errors: list[FieldError] = []
    event_id = envelope.get("event_id")
    if not isinstance(event_id, str) or _UUID.fullmatch(event_id) is None:
        errors.append(FieldError("envelope.event_id", "a UUID", event_id))
    if envelope.get("event_type") != event_type:
        errors.append(
            FieldError(
                "envelope.event_type",
                f"{event_type} (the writer schema's type)",
                envelope.get("event_type"),
            )
        )
    return errors
