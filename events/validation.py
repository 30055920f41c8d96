"""Validation before anything is published: schema conformance, then domain checks.

``conform`` walks a record against its Avro schema (the JSON form from the ``.avsc``),
converting JSON-friendly values (decimal strings, ISO dates and instants) into the Python
values the codec writes, and collecting every error with its field path, e.g.
``lines[2].quantity.value: expected a decimal with at most 3 decimal places, got '1.2345'``.
Domain checks (``events.domain_checks``) then run on the conformed record.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from supplybus.errors import FieldError, ValidationError
from supplybus.events.domain_checks import check_domain
from supplybus.events.registry import SchemaVersion
from supplybus.events.schema_walk import collect_named, full_name

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


class _Walk:
    def __init__(self) -> None:
        self.named: dict[str, Any] = {}
        self.errors: list[FieldError] = []

    def fail(self, path: str, expected: str, got: object) -> None:
        self.errors.append(FieldError(path, expected, got))

    def value(self, schema: Any, v: Any, path: str, ns: str) -> Any:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return self.primitive(schema, v, path)
            full = schema if "." in schema else f"{ns}.{schema}" if ns else schema
            return self.value(self.named.get(full, self.named.get(schema)), v, path, ns)
        if isinstance(schema, list):
            return self.union(schema, v, path, ns)
        kind = schema["type"]
        if isinstance(kind, dict | list):
            return self.value(kind, v, path, ns)
        logical = schema.get("logicalType")
        if logical is not None:
            return self.logical(schema, logical, v, path)
        if kind in ("record", "enum", "fixed"):
            ns = full_name(schema, ns).rpartition(".")[0]
        if kind == "record":
            return self.record(schema, v, path, ns)
        if kind == "enum":
            if v not in schema["symbols"]:
                self.fail(path, f"one of {', '.join(schema['symbols'])}", v)
            return v
        if kind == "array":
            if not isinstance(v, list):
                self.fail(path, "a list", v)
                return v
            return [self.value(schema["items"], x, f"{path}[{i}]", ns) for i, x in enumerate(v)]
        if kind == "map":
            if not isinstance(v, dict):
                self.fail(path, "an object", v)
                return v
            return {k: self.value(schema["values"], x, f"{path}.{k}", ns) for k, x in v.items()}
        if kind == "fixed":
            if not isinstance(v, bytes) or len(v) != schema["size"]:
                self.fail(path, f"{schema['size']} bytes", v)
            return v
        return self.primitive(kind, v, path)

    def record(self, schema: Mapping[str, Any], v: Any, path: str, ns: str) -> Any:
        if not isinstance(v, Mapping):
            self.fail(path, "an object", v)
            return v
        out: dict[str, Any] = {}
        known = set()
        for f in schema["fields"]:
            name = f["name"]
            known.add(name)
            where = f"{path}.{name}" if path else name
            if name in v:
                out[name] = self.value(f["type"], v[name], where, ns)
            elif "default" in f:
                out[name] = f["default"]
            else:
                self.fail(where, "a value (required field)", None)
        for extra in sorted(set(v) - known):
            self.fail(f"{path}.{extra}" if path else extra, "no such field in the schema", v[extra])
        return out

    def union(self, branches: list[Any], v: Any, path: str, ns: str) -> Any:
        if v is None and "null" in branches:
            return None
        candidates = [b for b in branches if b != "null"]
        for branch in candidates:
            trial = _Walk()
            trial.named = self.named
            converted = trial.value(branch, v, path, ns)
            if not trial.errors:
                return converted
        if len(candidates) == 1:
            return self.value(candidates[0], v, path, ns)
        self.fail(path, "a value of one of the union's types", v)
        return v

    def primitive(self, kind: str, v: Any, path: str) -> Any:
        ok = {
            "null": v is None,
            "boolean": isinstance(v, bool),
            "int": isinstance(v, int) and not isinstance(v, bool),
            "long": isinstance(v, int) and not isinstance(v, bool),
            "float": isinstance(v, int | float) and not isinstance(v, bool),
            "double": isinstance(v, int | float) and not isinstance(v, bool),
            "bytes": isinstance(v, bytes),
            "string": isinstance(v, str),
        }[kind]
        if not ok:
            self.fail(path, f"{'an' if kind == 'int' else 'a'} {kind}", v)
        elif kind in _INT_RANGE and not _INT_RANGE[kind][0] <= v <= _INT_RANGE[kind][1]:
            self.fail(path, f"a 32-bit {kind}" if kind == "int" else "a 64-bit long", v)
        return v

    def logical(self, schema: Mapping[str, Any], logical: str, v: Any, path: str) -> Any:
        if logical == "decimal":
            return self.decimal(schema, v, path)
        if logical == "uuid":
            try:
                return str(uuid.UUID(str(v))) if isinstance(v, str | uuid.UUID) else _bad()
            except ValueError:
                self.fail(path, "a UUID", v)
                return v
        if logical == "date":
            return self.date(v, path)
        if logical in ("timestamp-micros", "timestamp-millis"):
            return self.instant(v, path)
        return self.primitive(schema["type"], v, path)

    def decimal(self, schema: Mapping[str, Any], v: Any, path: str) -> Any:
        precision, scale = schema["precision"], schema.get("scale", 0)
        try:
            if isinstance(v, bool) or not isinstance(v, str | int | Decimal):
                raise InvalidOperation
            d = Decimal(v)
            if not d.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            self.fail(path, 'a decimal number (as a string, e.g. "12.50")', v)
            return v
        exponent = d.as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        if places > scale:
            self.fail(path, f"a decimal with at most {scale} decimal places", v)
            return v
        d = d.quantize(Decimal(1).scaleb(-scale))
        if len(d.as_tuple().digits) > precision:
            self.fail(path, f"a decimal with at most {precision - scale} integer digits", v)
        return d

    def date(self, v: Any, path: str) -> Any:
        if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
            return v
        try:
            return dt.date.fromisoformat(v) if isinstance(v, str) else _bad()
        except ValueError:
            self.fail(path, "a date YYYY-MM-DD", v)
            return v

    def instant(self, v: Any, path: str) -> Any:
        if isinstance(v, dt.datetime):
            if v.tzinfo is None:
                self.fail(path, "an instant with a time zone", v.isoformat())
            return v
        try:
            parsed = dt.datetime.fromisoformat(v) if isinstance(v, str) else _bad()
        except ValueError:
            self.fail(path, "an ISO-8601 instant, e.g. 2026-11-25T10:00:00Z", v)
            return v
        if parsed.tzinfo is None:
            self.fail(path, "an instant with a time zone (Z or +hh:mm)", v)
        return parsed


def _bad() -> Any:
    raise ValueError


def _walk(sv: SchemaVersion, record: Mapping[str, Any]) -> tuple[Any, list[FieldError]]:
    walk = _Walk()
    collect_named(dict(sv.raw), "", walk.named)
    out = walk.value(dict(sv.raw), record, "", "")
    return out, walk.errors


def conform(sv: SchemaVersion, record: Mapping[str, Any]) -> dict[str, Any]:
    """The record converted to the schema's Python values; ValidationError lists every error."""
    out, errors = _walk(sv, record)
    if errors:
        raise ValidationError(errors, context=sv.event_type)
    return out  # type: ignore[no-any-return]


def validate(sv: SchemaVersion, record: Mapping[str, Any]) -> dict[str, Any]:
    """Schema conformance and domain checks, every error of both at once."""
    out, errors = _walk(sv, record)
    if isinstance(out, Mapping):
        errors.extend(check_domain(sv, out))
    if errors:
        raise ValidationError(errors, context=sv.event_type)
    return out  # type: ignore[no-any-return]
