"""Envelopes: identity, causality and priority carried by every event.

Helpers to start a business transaction (``new_envelope``), to derive the envelope of an event
caused by another (``caused_by``: same correlation id and priority, causation = parent id),
deterministic ids for resends, and the W3C ``traceparent`` derived from the ids.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Mapping
from typing import Any

PRIORITIES = ("CRITICAL", "HIGH", "ROUTINE")
_ID_NAMESPACE = uuid.UUID("6c1e4f4e-5b0d-4d7e-9a43-2f7b3f0e5a11")


def deterministic_id(*parts: object) -> str:
    """A UUIDv5 from the parts: the same input always yields the same event id."""
    return str(uuid.uuid5(_ID_NAMESPACE, "\x1f".join(str(p) for p in parts)))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_envelope(
    event_type: str,
    *,
    source_system: str,
    entity_id: str,
    actor: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    facility_id: str | None = None,
    priority: str = "ROUTINE",
    occurred_at: dt.datetime | None = None,
    event_id: str | None = None,
    schema_version: int = 1,
) -> dict[str, Any]:
    """A new envelope; the event id doubles as correlation id when none is given."""
    eid = event_id or str(uuid.uuid4())
    return {
        "event_id": eid,
        "event_type": event_type,
        "schema_version": schema_version,
        "occurred_at": occurred_at or utcnow(),
        "source_system": source_system,
        "correlation_id": correlation_id or eid,
        "causation_id": causation_id,
        "entity_id": entity_id,
        "facility_id": facility_id,
        "priority": priority,
        "actor": actor,
    }


def caused_by(
    parent: Mapping[str, Any],
    event_type: str,
    *,
    emitter: str,
    discriminator: str,
    source_system: str | None = None,
    actor: str | None = None,
    occurred_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """The envelope of an event caused by ``parent`` (an envelope).

    The id is deterministic in (parent id, emitter, event type, discriminator): a processor
    that runs again for the same input emits the same ids, so downstream ledgers skip the
    repeats, while two processors (``emitter``, e.g. the processor's name) emitting the same
    type for the same cause, or one handler emitting several events of a type per input
    (``discriminator``: e.g. the line number or the item id), get distinct ids.
    """
    if not emitter or not isinstance(discriminator, str):
        raise ValueError("caused_by needs an emitter and a discriminator (a string, maybe '')")
    source = source_system or emitter
    return new_envelope(
        event_type,
        source_system=source,
        entity_id=str(parent["entity_id"]),
        facility_id=parent.get("facility_id"),
        actor=actor or source,
        correlation_id=str(parent["correlation_id"]),
        causation_id=str(parent["event_id"]),
        priority=str(parent.get("priority", "ROUTINE")),
        occurred_at=occurred_at,
        event_id=deterministic_id(parent["event_id"], emitter, event_type, discriminator),
    )


def traceparent(envelope: Mapping[str, Any]) -> str:
    """W3C trace context: trace id from the correlation id, span id from the event id."""
    trace = _hex(str(envelope["correlation_id"]), 32)
    span = _hex(str(envelope["event_id"]), 16)
    return f"00-{trace}-{span}-01"


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _hex(value: str, width: int) -> str:
    if _CANONICAL_UUID.fullmatch(value):  # the common case, without parsing it
        return value.replace("-", "")[:width]
    try:
        digits = uuid.UUID(value).hex
    except ValueError:
        digits = hashlib.sha256(value.encode()).hexdigest()
    return digits[:width]
