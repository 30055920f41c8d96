"""Avro single-object encoding (Avro specification), the default framing.

``C3 01`` + the 8-byte CRC-64-AVRO fingerprint of the writer schema (little-endian) + the Avro
binary body. The encoder writes with the newest version of the event type; the decoder finds
the writer by fingerprint in the schema store (several versions may share one fingerprint:
they encode alike, and the newest of them is taken).
"""

from __future__ import annotations

from collections.abc import Mapping
from io import BytesIO
from typing import Any

from supplybus.errors import DecodeError
from supplybus.events.codec import Decoded, Resolver, event_type_of, write_body
from supplybus.events.schema_store import SchemaStore

MAGIC = b"\xc3\x01"
HEADER_LEN = 10


class SingleObjectCodec:
    """Avro single-object encoding; writer schemas found by fingerprint in the schema store."""

    framing = "single-object"

    def __init__(self, store: SchemaStore) -> None:
        self.store = store
        self._resolver = Resolver(store)

    def fingerprint_of(self, event_type: str) -> bytes:
        return self.store.latest(event_type).fingerprint

    def encode(self, record: Mapping[str, Any]) -> bytes:
        sv = self.store.latest(event_type_of(record))
        out = BytesIO()
        out.write(MAGIC + sv.fingerprint)
        write_body(sv, record, out)
        return out.getvalue()

    def decode(self, data: bytes | None) -> Decoded:
        if data is None or len(data) < HEADER_LEN or data[:2] != MAGIC:
            head = (data or b"")[:12].hex()
            raise DecodeError(
                f"not Avro single-object encoding: expected marker c301 and a fingerprint, "
                f"got {len(data or b'')} bytes starting {head or '(empty)'}"
            )
        plan = self._resolver.plan_for(data[2:HEADER_LEN])
        body = BytesIO(data)
        body.seek(HEADER_LEN)
        record = self._resolver.read(plan, body)
        if body.tell() != len(data):
            raise DecodeError(
                f"{len(data) - body.tell()} trailing bytes after a {plan.writer.event_type} record"
            )
        writer = plan.writer
        return Decoded(writer.event_type, writer.version, writer.fingerprint, record)
