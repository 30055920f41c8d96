"""The rules behind :mod:`supplybus.events.compat` (internal: use that module's API).

:func:`parse` indexes one JSON schema into a graph of nodes (full names, namespace
inheritance, references to earlier definitions; a recursive type points back at itself);
:func:`resolve` walks a reader and a writer graph by the Avro 1.11 resolution rules and
returns ``(path, reason)`` pairs, one per problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeGuard

from supplybus.errors import ConfigError
from supplybus.events.avro_names import (
    PRIMITIVES,
    aliases_of,
    defined_name,
    lookup,
    namespace_of,
    short_name,
)

Problem: TypeAlias = tuple[str, str]
"""A problem found: where in the reader schema, and why."""

_PROMOTIONS = {
    "long": {"int"},
    "float": {"int", "long"},
    "double": {"int", "long", "float"},
    "bytes": {"string"},
    "string": {"bytes"},
}
DECIMAL_CHANGE = (
    "decimals resolve only when both match: a changed scale reads every amount off by a power "
    "of ten"
)
LOGICAL_CHANGE = (
    "supplybus refuses any logical-type change, stricter than Avro: the same encoded value "
    "would mean something else to the reader (millis read as micros, days as an instant, "
    "a decimal as raw bytes); add a new field instead"
)
_LOGICAL_BASES = {
    "decimal": {"bytes", "fixed"},
    "uuid": {"string", "fixed"},
    "date": {"int"},
    "time-millis": {"int"},
    "time-micros": {"long"},
    "timestamp-millis": {"long"},
    "timestamp-micros": {"long"},
    "local-timestamp-millis": {"long"},
    "local-timestamp-micros": {"long"},
    "duration": {"fixed"},
}


@dataclass(eq=False)
class Node:
    """One schema node; named types are shared, so a recursive type forms a cycle."""

    kind: str
    name: str = ""
    aliases: frozenset[str] = frozenset()
    logical: str | None = None
    decimal: tuple[int, int] | None = None
    fields: list[Field] = field(default_factory=list)
    symbols: tuple[str, ...] = ()
    enum_default: str | None = None
    size: int = 0
    child: Node | None = None
    branches: list[Node] = field(default_factory=list)


@dataclass(eq=False)
class Field:
    """A record field as resolution sees it."""

    name: str
    aliases: tuple[str, ...]
    has_default: bool
    node: Node


def _bad(what: str) -> ConfigError:
    return ConfigError(f"invalid Avro schema: {what}")


def _str_list(value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"{what} must be a list of strings")
    return tuple(value)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class _Parser:
    """Turns one JSON schema into a graph of nodes; named references share one node."""

    def __init__(self) -> None:
        self.names: dict[str, Node] = {}

    def parse(self, schema: object, namespace: str) -> Node:
        if isinstance(schema, str):
            return self._reference(schema, namespace)
        if isinstance(schema, list):
            branches = [self.parse(b, namespace) for b in schema]
            if any(b.kind == "union" for b in branches):
                raise _bad("a union may not contain a union")
            return Node("union", branches=branches)
        if not isinstance(schema, dict):
            raise _bad(f"expected a string, object or list, got {schema!r}")
        kind = schema.get("type")
        if isinstance(kind, dict | list):
            return self.parse(kind, namespace)
        if not isinstance(kind, str):
            raise _bad(f"missing or invalid 'type' in {schema!r}")
        if kind in PRIMITIVES:
            node = Node(kind)
        elif kind in ("record", "error", "enum", "fixed"):
            node = self._named(schema, "record" if kind == "error" else kind, namespace)
        elif kind in ("array", "map"):
            key = "items" if kind == "array" else "values"
            if key not in schema:
                raise _bad(f"{kind} without '{key}'")
            node = Node(kind, child=self.parse(schema[key], namespace))
        else:
            return self._reference(kind, namespace)
        node.logical, node.decimal = _logical(schema, node)
        return node

    def _reference(self, name: str, namespace: str) -> Node:
        if name in PRIMITIVES:
            return Node(name)
        found = lookup(name, namespace, self.names)
        if found is not None:
            return found[1]
        raise _bad(f"unknown type {name!r} (named types must be defined before use)")

    def _named(self, schema: dict[str, Any], kind: str, namespace: str) -> Node:
        name = schema.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(f"{kind} without a 'name'")
        if not isinstance(schema.get("namespace", ""), str | None):
            raise _bad(f"namespace of {name!r} must be a string")
        _str_list(schema.get("aliases"), "aliases")
        full = defined_name(schema, namespace)
        own = namespace_of(full)
        node = Node(kind, name=full, aliases=aliases_of(schema, full))
        if full in self.names:
            raise _bad(f"type {full!r} is defined twice")
        self.names[full] = node  # before the children, so recursive references resolve
        if kind == "record":
            fields = schema.get("fields")
            if not isinstance(fields, list):
                raise _bad(f"record {full!r} without a 'fields' list")
            for f in fields:
                if not isinstance(f, dict) or not isinstance(f.get("name"), str) or "type" not in f:
                    raise _bad(f"field {f!r} of record {full!r} needs a name and a type")
                aliases_f = _str_list(f.get("aliases"), "field aliases")
                child = self.parse(f["type"], own)
                node.fields.append(Field(f["name"], aliases_f, "default" in f, child))
        elif kind == "enum":
            node.symbols = _str_list(schema.get("symbols"), "enum symbols")
            default = schema.get("default")
            node.enum_default = default if default in node.symbols else None
        else:
            if not _is_int(schema.get("size")) or schema["size"] < 0:
                raise _bad(f"fixed {full!r} without an integer 'size'")
            node.size = schema["size"]
        return node


def _logical(schema: dict[str, Any], node: Node) -> tuple[str | None, tuple[int, int] | None]:
    """The logical type a reader would honour (the spec says to ignore invalid ones)."""
    name = schema.get("logicalType")
    if not isinstance(name, str):
        return None, None
    bases = _LOGICAL_BASES.get(name)
    if bases is None:
        return name, None  # not known to the spec: compared by name
    if node.kind not in bases or (name == "duration" and node.size != 12):
        return None, None
    if name == "uuid" and node.kind == "fixed" and node.size != 16:
        return None, None
    if name != "decimal":
        return name, None
    precision, scale = schema.get("precision"), schema.get("scale", 0)
    if not (_is_int(precision) and _is_int(scale) and 0 <= scale <= precision and precision > 0):
        return None, None
    if node.kind == "fixed" and (node.size < 1 or precision > _max_digits(node.size)):
        return None, None
    return name, (precision, scale)


def _max_digits(size: int) -> int:
    return len(str(2 ** (8 * size - 1) - 1)) - 1


def _describe(node: Node) -> str:
    if node.kind == "fixed":
        return f"fixed '{node.name}' (size {node.size})"
    if node.name:
        return f"{node.kind} '{node.name}'"
    if node.decimal:
        return f"{node.kind} (decimal({node.decimal[0]},{node.decimal[1]}))"
    return f"{node.kind} ({node.logical})" if node.logical else node.kind


def _names_match(reader: Node, writer: Node) -> bool:
    return short_name(reader.name) == short_name(writer.name) or writer.name in reader.aliases


def _matches(reader: Node, writer: Node) -> bool:
    """The spec's shallow "schemas match" test (unions always match)."""
    if "union" in (reader.kind, writer.kind):
        return True
    if reader.kind != writer.kind:
        return writer.kind in _PROMOTIONS.get(reader.kind, ())
    if reader.kind in ("array", "map"):
        assert reader.child is not None and writer.child is not None
        return _matches(reader.child, writer.child)
    if reader.kind in ("record", "enum", "fixed"):
        return _names_match(reader, writer) and reader.size == writer.size
    return True


def _branch_for(branches: list[Node], writer: Node) -> int | None:
    """The reader branch for a writer type: its exact type first, else the first match."""
    exact = (j for j, b in enumerate(branches) if (b.kind, b.name) == (writer.kind, writer.name))
    return next(exact, next((j for j, b in enumerate(branches) if _matches(b, writer)), None))


class _Resolver:
    def __init__(self) -> None:
        self.seen: set[tuple[int, int]] = set()

    def resolve(self, reader: Node, writer: Node, path: str) -> list[Problem]:
        if writer.kind == "union":
            found: list[Problem] = []
            for i, branch in enumerate(writer.branches):
                where = f"writer union branch {i} ({_describe(branch)})"
                found += self._one(reader, branch, path, where)
            return found
        return self._one(reader, writer, path, f"writer type {_describe(writer)}")

    def _one(self, reader: Node, writer: Node, path: str, what: str) -> list[Problem]:
        if reader.kind == "union":
            j = _branch_for(reader.branches, writer)
            if j is None:
                reason = f"no branch of the reader union matches {what}"
                return [(path or "/", reason)]
            return self._one(reader.branches[j], writer, f"{path}/{j}", what)
        if not _matches(reader, writer):
            return [(path or "/", f"reader {_describe(reader)} cannot read {what}")]
        return self._pair(reader, writer, path)

    def _pair(self, reader: Node, writer: Node, path: str) -> list[Problem]:
        here = path or "/"
        if reader.logical != writer.logical:
            old, new = writer.logical or "none", reader.logical or "none"
            reason = f"logicalType differs: writer {old}, reader {new}"
            return [(here, f"{reason}; {LOGICAL_CHANGE}")]
        if reader.decimal != writer.decimal:
            (wp, ws), (rp, rs) = writer.decimal or (0, 0), reader.decimal or (0, 0)
            reason = f"decimal precision/scale differ: writer ({wp},{ws}), reader ({rp},{rs})"
            return [(here, f"{reason}; {DECIMAL_CHANGE}")]
        if reader.kind in ("array", "map"):
            assert reader.child is not None and writer.child is not None
            step = "items" if reader.kind == "array" else "values"
            return self.resolve(reader.child, writer.child, f"{path}/{step}")
        if reader.kind == "enum":
            missing = [s for s in writer.symbols if s not in reader.symbols]
            if missing and reader.enum_default is None:
                reason = f"writer symbols {missing} are not in reader enum and it has no default"
                return [(f"{path}/symbols", reason)]
        if reader.kind != "record" or (id(reader), id(writer)) in self.seen:
            return []
        self.seen.add((id(reader), id(writer)))  # in progress counts as compatible
        by_name = {f.name: f for f in writer.fields}
        found: list[Problem] = []
        for rf in reader.fields:
            wf = next((by_name[n] for n in (rf.name, *rf.aliases) if n in by_name), None)
            where = f"{path}/fields/{rf.name}"
            if wf is not None:
                found += self.resolve(rf.node, wf.node, where)
            elif not rf.has_default:
                reason = f"reader field '{rf.name}' has no default and writer has no such field"
                found.append((where, reason))
        return found


def parse(schema: object) -> Node:
    """Index one schema given as parsed JSON; raises ConfigError when it is not valid Avro."""
    return _Parser().parse(schema, "")


def resolve(reader: Node, writer: Node) -> list[Problem]:
    """Every problem a ``reader`` has reading data written with ``writer``; ``[]`` if none."""
    return _Resolver().resolve(reader, writer, "")
