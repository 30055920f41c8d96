"""Validation before anything is published: schema conformance, then domain checks.

``validate`` checks a record against its Avro schema (the JSON form from the ``.avsc``),
converting JSON-friendly values (decimal strings, ISO dates and instants) into the Python
values the codec writes, and collecting every error with its field path, e.g.
``lines[2].quantity.value: a decimal with at most 3 decimal places, got '1.2345'``.
Domain checks (``events.domain_checks``) then run on the converted record, and their errors
are reported with the schema's. (``EventCatalog.conform`` is the entry point for callers.)

Each schema version is compiled once into a tree of small checking functions, so a record
costs one call per field rather than a walk that interprets the schema every time.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from supplybus.errors import ConfigError, FieldError, ValidationError
from supplybus.events.avro_names import (
    NAMED_KINDS,
    PRIMITIVES,
    defined_name,
    index,
    lookup,
    namespace_of,
)
from supplybus.events.domain_checks import check_domain
from supplybus.events.schema_store import SchemaVersion

Errors = list[FieldError]
Node = Callable[[Any, str, Errors], Any]
_MISSING = object()
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _primitive(kind: str) -> Node:
    if kind in _INT_RANGE:
        low, high = _INT_RANGE[kind]
        expected = "an int" if kind == "int" else "a long"
        wide = "a 32-bit int" if kind == "int" else "a 64-bit long"

        def integer(v: Any, path: str, errors: Errors) -> Any:
            if type(v) is not int:
                errors.append(FieldError(path, expected, v))
            elif not low <= v <= high:
                errors.append(FieldError(path, wide, v))
            return v

        return integer
    accept: dict[str, Callable[[Any], bool]] = {
        "null": lambda v: v is None,
        "boolean": lambda v: type(v) is bool,
        "float": lambda v: type(v) in (int, float),
        "double": lambda v: type(v) in (int, float),
        "bytes": lambda v: isinstance(v, bytes),
        "string": lambda v: type(v) is str,
    }
    ok, expected = accept[kind], f"a {kind}"

    def primitive(v: Any, path: str, errors: Errors) -> Any:
        if not ok(v):
            errors.append(FieldError(path, expected, v))
        return v

    return primitive


def _decimal(precision: int, scale: int) -> Node:
    quantum = Decimal(1).scaleb(-scale)

    def decimal(v: Any, path: str, errors: Errors) -> Any:
        if type(v) is Decimal:
            sign_digits_exp = v.as_tuple()
            if sign_digits_exp.exponent == -scale and len(sign_digits_exp.digits) <= precision:
                return v  # already what the codec writes
        try:
            if isinstance(v, bool) or not isinstance(v, str | int | Decimal):
                raise InvalidOperation
            d = Decimal(v)
            if not d.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            errors.append(FieldError(path, 'a decimal number (as a string, e.g. "12.50")', v))
            return v
        exponent = d.as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        if places > scale:
            errors.append(FieldError(path, f"a decimal with at most {scale} decimal places", v))
            return v
        d = d.quantize(quantum)
        if len(d.as_tuple().digits) > precision:
            errors.append(
                FieldError(path, f"a decimal with at most {precision - scale} integer digits", v)
            )
        return d

    return decimal


def _uuid(v: Any, path: str, errors: Errors) -> Any:
    if type(v) is str and _UUID.fullmatch(v):
        return v
    try:
        if not isinstance(v, str | uuid.UUID):
            raise ValueError
        return str(uuid.UUID(str(v)))
    except ValueError:
        errors.append(FieldError(path, "a UUID", v))
        return v


def _date(v: Any, path: str, errors: Errors) -> Any:
    if type(v) is dt.date:
        return v
    try:
        if not isinstance(v, str):
            raise ValueError
        return dt.date.fromisoformat(v)
    except ValueError:
        errors.append(FieldError(path, "a date YYYY-MM-DD", v))
        return v


def _instant(v: Any, path: str, errors: Errors) -> Any:
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            errors.append(FieldError(path, "an instant with a time zone", v.isoformat()))
        return v
    try:
        if not isinstance(v, str):
            raise ValueError
        parsed = dt.datetime.fromisoformat(v)
    except ValueError:
        errors.append(FieldError(path, "an ISO-8601 instant, e.g. 2026-11-25T10:00:00Z", v))
        return v
    if parsed.tzinfo is None:
        errors.append(FieldError(path, "an instant with a time zone (Z or +hh:mm)", v))
    return parsed


class _Compiler:
    """Turns a schema into nodes; named types are compiled once and may be recursive."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.named = index(dict(raw))
        self.nodes: dict[str, Node] = {}

    def node(self, schema: Any, ns: str) -> Node:
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return _primitive(schema)
            found = lookup(schema, ns, self.named)
            if found is None:
                raise ConfigError(f"unknown Avro type {schema!r} in namespace {ns!r}")
            return self._named(found[0])
        if isinstance(schema, list):
            return self._union(schema, ns)
        kind = schema["type"]
        if isinstance(kind, dict | list):
            return self.node(kind, ns)
        logical = schema.get("logicalType")
        if logical == "decimal":
            return _decimal(int(schema["precision"]), int(schema.get("scale", 0)))
        if logical == "uuid":
            return _uuid
        if logical == "date":
            return _date
        if logical in ("timestamp-micros", "timestamp-millis"):
            return _instant
        if kind in NAMED_KINDS:
            return self._named(defined_name(schema, ns))
        if kind == "array":
            return self._array(self.node(schema["items"], ns))
        if kind == "map":
            return self._map(self.node(schema["values"], ns))
        return _primitive(kind)

    def _named(self, full: str) -> Node:
        if full not in self.nodes:
            self.nodes[full] = lambda v, path, errors: self.nodes[full](
                v, path, errors
            )  # recursion
            self.nodes[full] = self._build_named(self.named[full], namespace_of(full))
        return self.nodes[full]

    def _build_named(self, schema: Mapping[str, Any], ns: str) -> Node:
        kind = schema["type"]
        if kind == "enum":
            symbols = frozenset(schema["symbols"])
            expected = f"one of {', '.join(schema['symbols'])}"

            def enum(v: Any, path: str, errors: Errors) -> Any:
                if type(v) is not str or v not in symbols:
                    errors.append(FieldError(path, expected, v))
                return v

            return enum
        if kind == "fixed":
            size = int(schema["size"])

            def fixed(v: Any, path: str, errors: Errors) -> Any:
                if not isinstance(v, bytes) or len(v) != size:
                    errors.append(FieldError(path, f"{size} bytes", v))
                return v

            return fixed
        fields = [
            (f["name"], self.node(f["type"], ns), f.get("default", _MISSING))
            for f in schema["fields"]
        ]
        return _record(fields)

    @staticmethod
    def _array(items: Node) -> Node:
        def array(v: Any, path: str, errors: Errors) -> Any:
            if not isinstance(v, list):
                errors.append(FieldError(path, "a list", v))
                return v
            return [items(x, f"{path}[{i}]", errors) for i, x in enumerate(v)]

        return array

    @staticmethod
    def _map(values: Node) -> Node:
        def mapping(v: Any, path: str, errors: Errors) -> Any:
            if not isinstance(v, dict):
                errors.append(FieldError(path, "an object", v))
                return v
            return {k: values(x, f"{path}.{k}", errors) for k, x in v.items()}

        return mapping

    def _union(self, schema: list[Any], ns: str) -> Node:
        nullable = "null" in schema
        branches = [self.node(b, ns) for b in schema if b != "null"]

        def union(v: Any, path: str, errors: Errors) -> Any:
            if v is None and nullable:
                return None
            if len(branches) == 1:
                return branches[0](v, path, errors)
            for branch in branches:
                trial: Errors = []
                converted = branch(v, path, trial)
                if not trial:
                    return converted
            errors.append(FieldError(path, "a value of one of the union's types", v))
            return v

        return union


def _record(fields: list[tuple[str, Node, Any]]) -> Node:
    names = frozenset(name for name, _, _ in fields)

    def record(v: Any, path: str, errors: Errors) -> Any:
        if not isinstance(v, Mapping):
            errors.append(FieldError(path, "an object", v))
            return v
        out: dict[str, Any] = {}
        for name, node, default in fields:
            value = v.get(name, _MISSING)
            if value is not _MISSING:
                out[name] = node(value, _join(path, name), errors)
            elif default is not _MISSING:
                out[name] = default
            else:
                errors.append(FieldError(_join(path, name), "a value (required field)"))
        if not names.issuperset(v):
            for extra in sorted(set(v) - names):
                errors.append(
                    FieldError(_join(path, extra), "no such field in the schema", v[extra])
                )
        return out

    return record


_compiled: dict[str, Node] = {}


def _root(sv: SchemaVersion) -> Node:
    node = _compiled.get(sv.content_hash)
    if node is None:
        node = _compiled[sv.content_hash] = _Compiler(sv.raw).node(dict(sv.raw), "")
    return node


def validate(sv: SchemaVersion, record: Mapping[str, Any]) -> dict[str, Any]:
    """Schema conformance and domain checks, every error of both at once."""
    errors: Errors = []
    out = _root(sv)(record, "", errors)
    if isinstance(out, Mapping):
        try:
            errors.extend(check_domain(sv, out))
        except (TypeError, KeyError, AttributeError, ValueError):
            if not errors:  # a well-formed record: the domain checks themselves are broken
                raise
            # the schema errors already say why: the domain checks cannot run on this shape
    if errors:
        raise ValidationError(errors, context=sv.event_type)
    return out  # type: ignore[no-any-return]
