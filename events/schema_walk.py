"""Named types of an Avro schema (JSON form), by full name, with namespace inheritance."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def full_name(schema: Mapping[str, Any], namespace: str) -> str:
    name = str(schema["name"])
    if "." in name:
        return name
    namespace = str(schema.get("namespace", namespace))
    return f"{namespace}.{name}" if namespace else name


def collect_named(schema: Any, namespace: str, named: dict[str, Any]) -> None:
    """Every named type defined anywhere in ``schema``, into ``named`` by full name."""
    if isinstance(schema, list):
        for branch in schema:
            collect_named(branch, namespace, named)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "enum", "fixed", "error"):
            full = full_name(schema, namespace)
            named[full] = schema
            namespace = full.rpartition(".")[0]
        for f in schema.get("fields", ()):
            collect_named(f["type"], namespace, named)
        for key in ("items", "values"):
            if key in schema:
                collect_named(schema[key], namespace, named)
        if isinstance(kind, dict | list):
            collect_named(kind, namespace, named)
