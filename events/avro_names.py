"""Avro name resolution (specification 1.11, "Names"), the one home for its rules.

* A name containing a dot is a full name; otherwise it lives in a namespace: the type's own
  ``namespace`` attribute if it has one (``""`` is the null namespace), else the namespace of
  the nearest enclosing named type.
* A named type's children (fields, items, values, branches) are in the namespace of its full
  name: ``{"name": "a.b.C"}`` puts them in ``a.b`` whatever the ``namespace`` attribute says.
* A reference (``"type": "Line"``) is looked up qualified by the enclosing namespace first,
  then as written (the null namespace), as the Java implementation does.
* Aliases of a named type are full names or relative to the type's own namespace. They serve
  schema resolution (a reader type matching a writer type of another name), never references.

Schemas are JSON (what ``json.load`` returns for an ``.avsc``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED_KINDS = frozenset({"record", "error", "enum", "fixed"})


def qualify(name: str, namespace: str) -> str:
    """``name`` as a full name in ``namespace`` (a name with a dot is already full)."""
    return name if "." in name or not namespace else f"{namespace}.{name}"


def short_name(full: str) -> str:
    """``a.b.C`` -> ``C``."""
    return full.rpartition(".")[2]


def namespace_of(full: str) -> str:
    """``a.b.C`` -> ``a.b``; ``C`` -> ``""`` (the null namespace)."""
    return full.rpartition(".")[0]


def defined_name(schema: Mapping[str, Any], enclosing: str) -> str:
    """The full name a named type definition declares, inside namespace ``enclosing``."""
    namespace = schema.get("namespace", enclosing)
    return qualify(str(schema["name"]), str(namespace or ""))


def aliases_of(schema: Mapping[str, Any], full: str) -> frozenset[str]:
    """The named type's aliases as full names (relative ones are in the type's namespace)."""
    return frozenset(qualify(str(a), namespace_of(full)) for a in schema.get("aliases") or ())


def lookup(reference: str, namespace: str, defined: Mapping[str, T]) -> tuple[str, T] | None:
    """The full name and definition a reference made inside ``namespace`` points at."""
    for candidate in (qualify(reference, namespace), reference):
        if candidate in defined:
            return candidate, defined[candidate]
    return None


def index(schema: Any, namespace: str = "") -> dict[str, dict[str, Any]]:
    """Every named type defined anywhere in ``schema``, by full name."""
    found: dict[str, dict[str, Any]] = {}
    _collect(schema, namespace, found)
    return found


def _collect(schema: Any, namespace: str, found: dict[str, dict[str, Any]]) -> None:
    if isinstance(schema, list):
        for branch in schema:
            _collect(branch, namespace, found)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if kind in NAMED_KINDS:
        full = defined_name(schema, namespace)
        found[full] = schema
        namespace = namespace_of(full)
    for f in schema.get("fields") or ():
        _collect(f["type"], namespace, found)
    for key in ("items", "values"):
        if key in schema:
            _collect(schema[key], namespace, found)
    if isinstance(kind, dict | list):
        _collect(kind, namespace, found)
