"""The Confluent wire format through ``confluent_kafka.schema_registry``.

``00`` + 4-byte big-endian schema id + the Avro body (used when SCHEMA_REGISTRY_URL is set).
Subjects follow the record-name strategy (``supplybus.inventory.StockMovement``), because a
supplybus topic carries several event types. Schemas are registered on first use; ids are
cached both ways. A writer schema fetched by id is found in the schema store by its
fingerprint (the newest version with it), and resolved like a single-object record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from io import BytesIO
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro.schema import SchemaParseException

from supplybus.errors import DecodeError, ServiceUnavailable
from supplybus.events.codec import Decoded, Resolver, event_type_of, write_body
from supplybus.events.schema_store import SchemaStore, SchemaVersion, fingerprint

MAGIC = b"\x00"


class ConfluentCodec:
    """Magic byte 0 + 4-byte big-endian schema id + Avro body."""

    framing = "confluent"

    def __init__(self, store: SchemaStore, url: str) -> None:
        self.store = store
        self.client = SchemaRegistryClient.new_client({"url": url})
        self._resolver = Resolver(store)
        self._id_of: dict[tuple[str, int], int] = {}
        self._by_id: dict[int, SchemaVersion] = {}

    def fingerprint_of(self, event_type: str) -> bytes:
        return self.store.latest(event_type).fingerprint

    def schema_id(self, sv: SchemaVersion) -> int:
        found = self._id_of.get((sv.event_type, sv.version))
        if found is None:
            try:
                found = int(
                    self.client.register_schema(sv.full_name, Schema(json.dumps(sv.raw), "AVRO"))
                )
            except (SchemaRegistryError, OSError) as exc:
                raise ServiceUnavailable(
                    f"schema registry refused {sv.full_name} v{sv.version}: {exc}"
                ) from exc
            self._id_of[(sv.event_type, sv.version)] = found
            self._by_id[found] = sv
        return found

    def encode(self, record: Mapping[str, Any]) -> bytes:
        sv = self.store.latest(event_type_of(record))
        out = BytesIO()
        out.write(MAGIC)
        out.write(self.schema_id(sv).to_bytes(4, "big"))
        write_body(sv, record, out)
        return out.getvalue()

    def _writer(self, schema_id: int) -> SchemaVersion:
        sv = self._by_id.get(schema_id)
        if sv is not None:
            return sv
        try:
            schema = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            raise DecodeError(f"schema id {schema_id} is unknown to the registry: {exc}") from exc
        if not schema.schema_str:
            raise DecodeError(f"schema id {schema_id} has no schema text in the registry")
        try:
            fp = fingerprint(json.loads(schema.schema_str))
        except (ValueError, SchemaParseException) as exc:
            raise DecodeError(f"schema id {schema_id} is not a valid Avro schema: {exc}") from exc
        sv = self.store.by_fp(fp)
        self._by_id[schema_id] = sv
        return sv

    def decode(self, data: bytes | None) -> Decoded:
        if data is None or len(data) < 5 or data[:1] != MAGIC:
            head = (data or b"")[:12].hex()
            raise DecodeError(
                f"not Confluent wire format: expected magic byte 00 and a schema id, "
                f"got {len(data or b'')} bytes starting {head or '(empty)'}"
            )
        writer = self._writer(int.from_bytes(data[1:5], "big"))
        body = BytesIO(data)
        body.seek(5)
        record = self._resolver.read(self._resolver.plan(writer), body)
        return Decoded(writer.event_type, writer.version, writer.fingerprint, record)
