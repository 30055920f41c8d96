"""Avro codecs: single-object encoding (default) and the Confluent wire format.

Single-object encoding (Avro spec): ``C3 01`` + 8-byte CRC-64-AVRO fingerprint of the writer
schema (little-endian) + the Avro binary body. Decoding finds the writer schema by its
fingerprint and resolves it against the newest version of the same event type, so records
written with an older compatible schema stay readable.

Confluent wire format (when SCHEMA_REGISTRY_URL is set): ``00`` + 4-byte schema id + body; the
writer schema is fetched from the registry by id (cached) and resolved the same way.

Decoded values: decimals are ``Decimal``, timestamps aware ``datetime`` (UTC), dates ``date``;
uuids stay ``str`` (same bytes on the wire, and much cheaper than ``uuid.UUID`` objects).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Protocol

import fastavro

from supplybus.errors import DecodeError, FieldError, ValidationError
from supplybus.events.schema_store import SchemaStore, SchemaVersion

MAGIC = b"\xc3\x01"
HEADER_LEN = 10
CONFLUENT_MAGIC = b"\x00"


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoded record: its type, the writer's version and fingerprint, and its fields."""

    event_type: str
    version: int
    fingerprint: bytes
    record: dict[str, Any]

    @property
    def envelope(self) -> dict[str, Any]:
        return self.record["envelope"]  # type: ignore[no-any-return]


class Codec(Protocol):
    """Turns event records into bytes and back. ``encode`` takes the full record."""

    framing: str

    def encode(self, record: Mapping[str, Any]) -> bytes: ...

    def decode(self, data: bytes | None) -> Decoded: ...

    def fingerprint_of(self, event_type: str) -> bytes: ...


def _without_uuid(schema: Any) -> Any:
    """The schema with logicalType uuid removed: decodes to str instead of uuid.UUID."""
    if isinstance(schema, dict):
        if schema.get("logicalType") == "uuid":
            return {k: _without_uuid(v) for k, v in schema.items() if k != "logicalType"}
        return {k: _without_uuid(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_without_uuid(s) for s in schema]
    return schema


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to read one writer schema: its decode schema and the newest reader's, if newer."""

    writer: SchemaVersion
    writer_schema: Any
    reader_schema: Any


class Resolver:
    """Decode plans per writer fingerprint, computed once."""

    def __init__(self, store: SchemaStore) -> None:
        self.store = store
        self._plans: dict[bytes, _Plan] = {}

    def plan(self, writer: SchemaVersion) -> _Plan:
        plan = self._plans.get(writer.fingerprint)
        if plan is None:
            reader = self.store.latest(writer.event_type)
            plan = _Plan(
                writer,
                _decode_schema(writer),
                None if reader is writer else _decode_schema(reader),
            )
            self._plans[writer.fingerprint] = plan
        return plan

    def plan_for(self, fp: bytes) -> _Plan:
        plan = self._plans.get(fp)
        return plan if plan is not None else self.plan(self.store.by_fp(fp))

    @staticmethod
    def read(plan: _Plan, body: BytesIO) -> dict[str, Any]:
        try:
            value = fastavro.schemaless_reader(body, plan.writer_schema, plan.reader_schema)
        except Exception as exc:  # fastavro raises many kinds on bad bytes
            raise DecodeError(
                f"cannot decode a {plan.writer.event_type} v{plan.writer.version} body: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(value, dict):
            raise DecodeError(f"decoded {plan.writer.event_type} is not a record")
        return value


def _decode_schema(sv: SchemaVersion) -> Any:
    return fastavro.parse_schema(_without_uuid(copy.deepcopy(dict(sv.raw))))


def write_body(sv: SchemaVersion, record: Mapping[str, Any], out: BytesIO) -> None:
    try:
        fastavro.schemaless_writer(out, sv.parsed, record, strict=True)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValidationError(
            [FieldError("", f"a record matching {sv.event_type} v{sv.version}", str(exc))],
            context=f"cannot encode {sv.event_type}",
        ) from exc


def event_type_of(record: Mapping[str, Any]) -> str:
    try:
        return str(record["envelope"]["event_type"])
    except (KeyError, TypeError):
        raise ValidationError([FieldError("envelope.event_type", "a string")]) from None


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


def make_codec(store: SchemaStore, schema_registry_url: str | None = None) -> Codec:
    """The codec the settings ask for: Confluent wire format when a registry URL is given."""
    if schema_registry_url:
        from supplybus.events.confluent import ConfluentCodec

        return ConfluentCodec(store, schema_registry_url)
    return SingleObjectCodec(store)
