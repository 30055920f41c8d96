"""Kafka headers that carry an event's routing fields, so that tools route without decoding."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from supplybus.events.envelope import traceparent

EVENT_ID = "sb-event-id"
EVENT_TYPE = "sb-event-type"
FINGERPRINT = "sb-fingerprint"
CORRELATION_ID = "sb-correlation-id"
CAUSATION_ID = "sb-causation-id"
PRIORITY = "sb-priority"
TRACEPARENT = "traceparent"


def routing_headers(envelope: Mapping[str, Any], fingerprint: bytes) -> list[tuple[str, bytes]]:
    headers = [
        (EVENT_ID, str(envelope["event_id"]).encode()),
        (EVENT_TYPE, str(envelope["event_type"]).encode()),
        (FINGERPRINT, fingerprint.hex().encode()),
        (CORRELATION_ID, str(envelope["correlation_id"]).encode()),
        (PRIORITY, str(envelope.get("priority", "ROUTINE")).encode()),
        (TRACEPARENT, traceparent(envelope).encode()),
    ]
    if envelope.get("causation_id"):
        headers.append((CAUSATION_ID, str(envelope["causation_id"]).encode()))
    return headers
