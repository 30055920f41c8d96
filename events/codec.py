"""What every codec shares: the ``Codec`` protocol, decoded records, and the Avro body.

A codec frames an Avro binary body; the framings live in their own modules and share the body
read/write here: Avro single-object encoding (:mod:`supplybus.events.single_object`, the
default) and the Confluent wire format (:mod:`supplybus.events.confluent`);
:func:`supplybus.events.framing.make_codec` picks one from the settings. Decoding resolves the
writer's schema against the newest version of the same event type, so records written with an
older compatible schema stay readable.

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
    """Decode plans per writer version (and per writer fingerprint), computed once."""

    def __init__(self, store: SchemaStore) -> None:
        self.store = store
        self._plans: dict[tuple[str, int], _Plan] = {}
        self._by_fp: dict[bytes, _Plan] = {}

    def plan(self, writer: SchemaVersion) -> _Plan:
        plan = self._plans.get((writer.event_type, writer.version))
        if plan is None:
            reader = self.store.latest(writer.event_type)
            plan = _Plan(
                writer,
                _decode_schema(writer),
                None if reader is writer else _decode_schema(reader),
            )
            self._plans[(writer.event_type, writer.version)] = plan
        return plan

    def plan_for(self, fp: bytes) -> _Plan:
        """The plan for a writer fingerprint: the newest version with it is the writer."""
        plan = self._by_fp.get(fp)
        if plan is None:
            plan = self._by_fp[fp] = self.plan(self.store.by_fp(fp))
        return plan

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
