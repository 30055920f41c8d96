"""Corrections to a dead letter's record (`supplybus dlq edit`): pure functions over a decoded
record and the JSON form of its Avro schema.

A path is dotted (``lines.0.item_id``; ``lines[0].item_id`` is accepted too); a value is text
parsed to the Avro type of the field at that path: ``null`` for an optional field, ints,
booleans (``true``/``false``), floats; decimals, dates, instants, uuids, enums and strings stay
text and are converted by the schema validation that follows (decimals as ``"12.50"``, ISO
dates and instants). A value in double quotes is always that string; a record, array or map is
given as JSON. Every error is a ``ConfigError`` naming the path.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from supplybus.errors import ConfigError
from supplybus.events.avro_names import NAMED_KINDS, PRIMITIVES, defined_name, index, lookup
from supplybus.events.avro_names import namespace_of as _ns_of

Path = tuple[str | int, ...]
_INDEX = re.compile(r"\[(\d+)\]")
_TEXT_KINDS = frozenset({"string", "enum", "bytes", "fixed"})
_TEXT_LOGICAL = frozenset({"decimal", "uuid", "date", "timestamp-micros", "timestamp-millis"})


def parse_assignment(text: str) -> tuple[str, str]:
    """``FIELD=VALUE`` -> (field, value), split at the first ``=``."""
    field, sep, value = text.partition("=")
    if not sep or not field.strip():
        raise ConfigError(f"--set {text!r}: expected FIELD=VALUE, e.g. lines.0.item_id=ITEM-0002")
    return field.strip(), value


def parse_path(text: str) -> Path:
    """``lines.0.item_id`` or ``lines[0].item_id`` -> ("lines", 0, "item_id")."""
    dotted = _INDEX.sub(r".\1", text.strip())
    parts = dotted.split(".")
    if not text.strip() or any(not p for p in parts):
        raise ConfigError(f"{text!r}: not a field path (e.g. lines.0.item_id)")
    return tuple(int(p) if p.isdigit() else p for p in parts)


def show_path(path: Path) -> str:
    return ".".join(str(p) for p in path)


class _Schema:
    """The JSON form of an Avro schema, walked by path (named types resolved)."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = dict(raw)
        self.named = index(self.raw)

    def resolve(self, schema: Any, ns: str) -> tuple[Any, str]:
        """A reference replaced by its definition; (schema, namespace of its children)."""
        if isinstance(schema, str) and schema not in PRIMITIVES:
            found = lookup(schema, ns, self.named)
            if found is None:
                raise ConfigError(f"unknown Avro type {schema!r}")
            full, definition = found
            return definition, _ns_of(full)
        if isinstance(schema, dict):
            kind = schema.get("type")
            if isinstance(kind, dict | list) or (
                isinstance(kind, str) and kind not in PRIMITIVES | NAMED_KINDS | {"array", "map"}
            ):
                return self.resolve(kind, ns)
            if schema.get("type") in NAMED_KINDS:
                return schema, _ns_of(defined_name(schema, ns))
        return schema, ns

    def branches(self, schema: Any, ns: str) -> tuple[list[tuple[Any, str]], bool]:
        """The non-null types a field may hold, and whether it may be null."""
        if isinstance(schema, dict) and isinstance(schema.get("type"), list):
            schema = schema["type"]
        options = schema if isinstance(schema, list) else [schema]
        nullable = "null" in options
        return [self.resolve(b, ns) for b in options if b != "null"], nullable

    def at(self, path: Path) -> tuple[list[tuple[Any, str]], bool]:
        """The types (and nullability) of the field at ``path``."""
        current: list[tuple[Any, str]] = [self.resolve(self.raw, "")]
        nullable = False
        for depth, step in enumerate(path):
            found: list[tuple[Any, str]] = []
            nullable = False
            for schema, ns in current:
                child = _child(schema, step)
                if child is not None:
                    more, null = self.branches(child, ns)
                    found.extend(more)
                    nullable = nullable or null
            if not found:
                where = show_path(path[: depth + 1])
                raise ConfigError(f"{where}: no such field in {self.raw.get('name')}")
            current = found
        return current, nullable


def _child(schema: Any, step: str | int) -> Any:
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if kind in ("record", "error") and isinstance(step, str):
        return next((f["type"] for f in schema["fields"] if f["name"] == step), None)
    if kind == "array" and isinstance(step, int):
        return schema["items"]
    if kind == "map":
        return schema["values"]
    return None


def _kind(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if schema.get("logicalType") in _TEXT_LOGICAL:
        return "text"
    return str(schema.get("type"))


def parse_value(raw_schema: Mapping[str, Any], path: Path, text: str) -> Any:
    """``text`` as a value of the field at ``path`` (see the module docstring)."""
    types, nullable = _Schema(raw_schema).at(path)
    where = show_path(path)
    if text == "null":
        if nullable:
            return None
        if not any(_kind(t) in _TEXT_KINDS | {"text"} for t, _ in types):
            raise ConfigError(f"{where}: cannot be null")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            quoted = json.loads(text)
        except json.JSONDecodeError:
            quoted = None
        if isinstance(quoted, str):
            return quoted
    kinds = {_kind(t) for t, _ in types}
    errors: list[str] = []
    for kind in sorted(kinds, key=_ORDER.index):
        try:
            return _PARSERS[kind](text)
        except (ValueError, json.JSONDecodeError) as exc:
            errors.append(str(exc))
    raise ConfigError(f"{where}: {' or '.join(errors)}, got {text!r}")


def _integer(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text.strip()):
        raise ValueError("an integer")
    return int(text)


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError("true or false")
    return text.lower() == "true"


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("a number") from None


def _json(text: str) -> Any:
    try:
        return json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError:
        raise ValueError("JSON (a record, list or map)") from None


_PARSERS: dict[str, Any] = {
    "int": _integer,
    "long": _integer,
    "boolean": _boolean,
    "float": _number,
    "double": _number,
    "record": _json,
    "error": _json,
    "array": _json,
    "map": _json,
    "text": str,
    "string": str,
    "enum": str,
    "bytes": str,
    "fixed": str,
}
_ORDER = [
    *("int", "long", "boolean", "float", "double", "record", "error", "array", "map"),
    *("text", "string", "enum", "bytes", "fixed"),
]


def get_at(record: Any, path: Path) -> Any:
    """The value at ``path`` (ConfigError naming the path when it is not there)."""
    current = record
    for depth, step in enumerate(path):
        current = _step(current, step, path[: depth + 1])
    return current


def _step(container: Any, step: str | int, where: Path) -> Any:
    if isinstance(container, Sequence) and not isinstance(container, str):
        if not isinstance(step, int) or step >= len(container):
            raise ConfigError(f"{show_path(where)}: no such element ({len(container)} in the list)")
        return container[step]
    if isinstance(container, Mapping):
        if str(step) not in container:
            raise ConfigError(f"{show_path(where)}: no such field in the record")
        return container[str(step)]
    raise ConfigError(f"{show_path(where)}: its parent is {container!r}, not a record or list")


def set_at(record: Mapping[str, Any], path: Path, value: Any) -> dict[str, Any]:
    """A deep copy of ``record`` with ``value`` at ``path`` (the field must exist)."""
    copied = copy.deepcopy(dict(record))
    parent = get_at(copied, path[:-1])
    last = path[-1]
    get_at(copied, path)  # the field (or element) must exist
    if isinstance(parent, list):
        parent[int(last)] = value
    else:
        parent[str(last)] = value
    return copied


def apply_sets(
    raw_schema: Mapping[str, Any], record: Mapping[str, Any], sets: Sequence[tuple[str, str]]
) -> tuple[dict[str, Any], dict[str, tuple[Any, Any]]]:
    """``record`` with every ``(path, text)`` applied in order, and {path: (old, new)}."""
    result = dict(record)
    changes: dict[str, tuple[Any, Any]] = {}
    for text_path, text in sets:
        path = parse_path(text_path)
        value = parse_value(raw_schema, path, text)
        old = get_at(result, path)
        result = set_at(result, path, value)
        key = show_path(path)
        changes[key] = (changes[key][0] if key in changes else old, value)
    return result, changes
