"""Avro name resolution, the one set of rules every schema walker in events/ uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastavro
import pytest

from supplybus.errors import ValidationError
from supplybus.events.avro_names import (
    aliases_of,
    defined_name,
    index,
    lookup,
    namespace_of,
    qualify,
    short_name,
)
from supplybus.events.samples import sample_record
from supplybus.events.schema_store import SchemaVersion, content_hash, fingerprint
from supplybus.events.validation import validate


def test_full_names_and_namespaces() -> None:
    assert qualify("Line", "acme.orders") == "acme.orders.Line"
    assert qualify("x.y.Line", "acme.orders") == "x.y.Line"  # a dotted name is already full
    assert qualify("Line", "") == "Line"
    assert (short_name("a.b.C"), namespace_of("a.b.C")) == ("C", "a.b")
    assert (short_name("C"), namespace_of("C")) == ("C", "")
    assert defined_name({"name": "Line"}, "acme") == "acme.Line"
    assert defined_name({"name": "Line", "namespace": "other"}, "acme") == "other.Line"
    assert defined_name({"name": "Line", "namespace": ""}, "acme") == "Line"  # null namespace
    assert defined_name({"name": "Line", "namespace": None}, "acme") == "Line"
    assert defined_name({"name": "x.Line", "namespace": "other"}, "acme") == "x.Line"


def _order() -> dict[str, Any]:
    return {
        "type": "record",
        "name": "Order",
        "namespace": "acme.orders",
        "fields": [
            {"name": "line", "type": {"type": "record", "name": "Line", "fields": []}},
            {
                "name": "meta",
                "type": {
                    "type": "record",
                    "name": "x.y.Meta",  # children of Meta live in x.y
                    "namespace": "ignored",
                    "fields": [
                        {"name": "tag", "type": {"type": "fixed", "name": "Tag", "size": 4}},
                        {
                            "name": "kinds",
                            "type": {
                                "type": "array",
                                "items": {"type": "enum", "name": "Kind", "symbols": ["A"]},
                            },
                        },
                    ],
                },
            },
            {"name": "money", "type": ["null", {"type": "record", "name": "common.Money"}]},
        ],
    }


def test_index_finds_nested_named_types_by_full_name() -> None:
    named = index(_order())
    assert sorted(named) == [
        "acme.orders.Line",
        "acme.orders.Order",
        "common.Money",
        "x.y.Kind",
        "x.y.Meta",
        "x.y.Tag",
    ]


def test_unqualified_references_resolve_in_the_enclosing_namespace_first() -> None:
    named = {"acme.Line": "namespaced", "Line": "null namespace", "x.Tag": "tag"}
    assert lookup("Line", "acme", named) == ("acme.Line", "namespaced")
    assert lookup("Line", "other", named) == ("Line", "null namespace")  # then as written
    assert lookup("x.Tag", "acme", named) == ("x.Tag", "tag")  # full names as they are
    assert lookup("Tag", "acme", named) is None
    assert lookup("Tag", "x", named) == ("x.Tag", "tag")


def test_aliases_are_full_or_relative_to_the_type_namespace() -> None:
    schema = {"name": "PurchaseOrder", "aliases": ["Order", "legacy.Po"]}
    assert aliases_of(schema, "acme.v2.PurchaseOrder") == {"acme.v2.Order", "legacy.Po"}
    assert aliases_of({"name": "A"}, "A") == frozenset()
    assert aliases_of({"name": "A", "aliases": ["B"]}, "A") == {"B"}


def _version(raw: dict[str, Any]) -> SchemaVersion:
    return SchemaVersion(
        event_type=raw["name"],
        version=1,
        domain="test",
        path=Path("Shipment.v1.avsc"),
        raw=raw,
        parsed=fastavro.parse_schema(raw),
        canonical="",
        fingerprint=fingerprint(raw),
        content_hash=content_hash(raw),
    )


def test_walkers_agree_on_a_reference_shadowed_by_the_null_namespace() -> None:
    """``Quantity`` inside supplybus.common means supplybus.common.Quantity, not the
    null-namespace ``Quantity`` defined first: samples, validation and domain checks agree."""
    decoy = {
        "type": "record",
        "name": "Quantity",
        "namespace": "",
        "fields": [{"name": "note", "type": "string"}],
    }
    real = {
        "type": "record",
        "name": "Quantity",
        "namespace": "supplybus.common",
        "fields": [
            {
                "name": "value",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 3},
            },
            {"name": "uom", "type": "string"},
        ],
    }
    raw = {
        "type": "record",
        "name": "Shipment",
        "namespace": "supplybus.test",
        "fields": [
            {"name": "decoy", "type": decoy},
            {"name": "first", "type": real},
            {
                "name": "box",
                "type": {
                    "type": "record",
                    "name": "Box",
                    "namespace": "supplybus.common",
                    "fields": [{"name": "quantity", "type": "Quantity"}],
                },
            },
        ],
    }
    sv = _version(raw)
    record = sample_record(sv)
    record.pop("envelope")
    assert set(record["box"]["quantity"]) == {"value", "uom"}
    assert validate(sv, record)["box"]["quantity"]["uom"] == "EA"
    record["box"]["quantity"]["uom"] = "PALLETS"
    with pytest.raises(ValidationError, match="box.quantity.uom"):
        validate(sv, record)
