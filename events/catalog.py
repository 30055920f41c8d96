"""The event catalog: schemas + topic catalog + codec, joined.

``prepare`` turns an event record into what goes on the wire: validated, encoded, with its
topic (by event type and priority lane), key and routing headers. The publisher and the
processor runtime's outbox both use it, so every event leaves supplybus the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from supplybus.config import Settings
from supplybus.errors import FieldError, ValidationError
from supplybus.events.codec import Codec, event_type_of
from supplybus.events.domain_checks import check_domain
from supplybus.events.framing import make_codec
from supplybus.events.headers import routing_headers
from supplybus.events.schema_store import SchemaStore, default_store
from supplybus.events.topics import TopicCatalog, load_catalog
from supplybus.events.validation import validate

Check = Literal["full", "domain", "none"]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An encoded event ready for Kafka (or for the outbox)."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    envelope: Mapping[str, Any]


class EventCatalog:
    def __init__(self, store: SchemaStore, topics: TopicCatalog, codec: Codec) -> None:
        self.store = store
        self.topics = topics
        self.codec = codec

    @classmethod
    def from_settings(cls, settings: Settings) -> EventCatalog:
        store = default_store()
        return cls(
            store,
            load_catalog(settings.topic_catalog),
            make_codec(store, settings.schema_registry_url),
        )

    def conform(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Validate (schema and domain checks) and convert to Avro Python values."""
        event_type = event_type_of(record)
        sv = self.store.latest(event_type)
        conformed = validate(sv, record)
        if conformed["envelope"]["schema_version"] != sv.version:
            conformed["envelope"]["schema_version"] = sv.version
        if conformed["envelope"]["event_type"] != sv.event_type:
            raise ValidationError([FieldError("envelope.event_type", sv.event_type)])
        return conformed

    def domain_errors(self, event_type: str, record: Mapping[str, Any]) -> list[FieldError]:
        """The domain checks (compiled per schema) of a decoded record of ``event_type``:
        consumed events pass the same checks as published ones."""
        return check_domain(self.store.latest(event_type), record)

    def prepare(self, record: Mapping[str, Any], *, check: Check = "full") -> Outgoing:
        """Validated, encoded, routed.

        ``check``: "full" walks the schema (converting JSON values) and runs the domain checks;
        "domain" is for records built in Python (processors' emitted events): the domain checks
        run, and the encoder's strict mode enforces the schema; "none" only encodes.
        """
        if check == "full":
            conformed = self.conform(record)
        else:
            sv = self.store.latest(event_type_of(record))
            conformed = dict(record)
            conformed["envelope"] = {**record["envelope"], "schema_version": sv.version}
            if check == "domain":
                errors = check_domain(sv, conformed)
                if errors:
                    raise ValidationError(errors, context=sv.event_type)
        envelope = conformed["envelope"]
        topic = self.topics.topic_for(envelope["event_type"], str(envelope.get("priority")))
        return Outgoing(
            topic=topic.name,
            key=topic.key_for(conformed).encode(),
            value=self.codec.encode(conformed),
            headers=routing_headers(envelope, self.codec.fingerprint_of(envelope["event_type"])),
            envelope=envelope,
        )
