"""Valid example events built from the schemas (for docs, the demo and tests).

Values are chosen by field name so that the domain checks pass: quantities positive with
known units, money in USD, GTINs with valid check digits, ids readable.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from supplybus.events.avro_names import NAMED_KINDS, defined_name, index, lookup, namespace_of
from supplybus.events.domain_checks import gtin_check_digit
from supplybus.events.envelope import new_envelope
from supplybus.events.schema_store import SchemaVersion


def sample_record(sv: SchemaVersion, seed: int = 0, **fields: Any) -> dict[str, Any]:
    """A valid ``sv`` record; keyword arguments replace top-level fields."""
    rng = random.Random(f"{sv.event_type}:{seed}")
    schema = _Schema(index(dict(sv.raw)), rng, seed)
    ns = namespace_of(defined_name(sv.raw, ""))
    record = {
        f["name"]: schema.value(f["type"], f["name"], ns)
        for f in sv.raw["fields"]
        if f["name"] != "envelope"
    }
    record["envelope"] = new_envelope(
        sv.event_type,
        source_system="sample",
        entity_id="ENT-1",
        facility_id="FAC-1",
        actor="sampler",
        schema_version=sv.version,
        occurred_at=dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC),
    )
    record.update(fields)
    return {"envelope": record.pop("envelope"), **record}


class _Schema:
    """Walks one schema version, resolving named references by the Avro name rules."""

    def __init__(self, named: dict[str, Any], rng: random.Random, seed: int) -> None:
        self.named, self.rng, self.seed = named, rng, seed

    def value(self, schema: Any, name: str, ns: str) -> Any:
        if isinstance(schema, list):
            non_null = [s for s in schema if s != "null"]
            return self.value(non_null[0], name, ns) if non_null else None
        if isinstance(schema, str):
            found = lookup(schema, ns, self.named)
            if found is not None:
                return self.value(found[1], name, namespace_of(found[0]))
            return _primitive(schema, name, self.rng, self.seed)
        kind = schema["type"]
        if isinstance(kind, dict | list):
            return self.value(kind, name, ns)
        if kind in NAMED_KINDS:
            ns = namespace_of(defined_name(schema, ns))
        logical = schema.get("logicalType")
        rng = self.rng
        if logical == "decimal":
            scale = schema.get("scale", 0)
            value = Decimal(rng.randint(1, 500)) + Decimal(rng.randint(0, 9)).scaleb(-min(scale, 1))
            return value.quantize(Decimal(1).scaleb(-scale))
        if logical == "uuid":
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if logical == "date":
            return dt.date(2026, 12, 1) + dt.timedelta(days=rng.randint(0, 60))
        if logical in ("timestamp-micros", "timestamp-millis"):
            return dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
        if kind in ("record", "error"):
            return self.record(schema, ns)
        if kind == "enum":
            return schema.get("default", schema["symbols"][0])
        if kind == "array":
            return [self.value(schema["items"], name, ns) for _ in range(2)]
        if kind == "map":
            return {"k": self.value(schema["values"], name, ns)}
        return _primitive(kind, name, rng, self.seed)

    def record(self, schema: Mapping[str, Any], ns: str) -> Any:
        out = {f["name"]: self.value(f["type"], f["name"], ns) for f in schema["fields"]}
        if set(out) == {"value", "uom"}:
            out["uom"] = "EA"
        if set(out) == {"amount", "currency"}:
            out["currency"] = "USD"
        return out


def _primitive(kind: str, name: str, rng: random.Random, seed: int) -> Any:
    if kind == "string":
        if name == "gtin":
            body = f"0{rng.randint(10**10, 10**11 - 1)}0"
            return body + gtin_check_digit(body)
        if name in ("currency",):
            return "USD"
        if name in ("uom", "base_uom"):
            return "EA"
        if name == "period":
            return "2026-11"
        return f"{name.upper().replace('_', '-')}-{seed}"
    if kind in ("int", "long"):
        return rng.randint(1, 9)
    if kind in ("float", "double"):
        return float(rng.randint(1, 100))
    if kind == "boolean":
        return False
    if kind == "bytes":
        return b"\x01"
    return None
