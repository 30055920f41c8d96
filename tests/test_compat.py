"""Avro schema compatibility (pure): crafted pairs, properties, and the Apache library."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.schema import parse as avro_parse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supplybus.errors import ConfigError
from supplybus.events.compat import MODES, Incompatibility, Schema, can_read, check


def record(name: str, *fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def fld(name: str, type_: Schema, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def decimal(precision: int, scale: int) -> dict[str, Any]:
    return {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}


def avro_ok(reader: Schema, writer: Schema) -> bool:
    """The verdict of the Apache ``avro`` library."""
    r, w = avro_parse(json.dumps(reader)), avro_parse(json.dumps(writer))
    result = ReaderWriterCompatibilityChecker().get_compatibility(r, w)
    return result.compatibility is SchemaCompatibilityType.compatible


def ok(reader: Schema, writer: Schema) -> bool:
    return can_read(reader, writer) == []


def reasons(found: list[Incompatibility]) -> str:
    return "\n".join(str(i) for i in found)


V1 = record("Order", fld("id", "string"), fld("qty", "int"))


# --- crafted pairs ---------------------------------------------------------------------


def test_field_added_with_default_is_backward_compatible() -> None:
    v2 = record("Order", fld("id", "string"), fld("qty", "int"), fld("note", "string", default=""))
    assert check(v2, [V1], "BACKWARD") == []
    assert check(v2, [V1], "FULL") == []


def test_field_added_without_default_breaks_backward() -> None:
    v2 = record("Order", fld("id", "string"), fld("qty", "int"), fld("total", "long"))
    found = check(v2, [V1], "BACKWARD")
    assert [str(i) for i in found] == [
        "/fields/total: BACKWARD v2 reading v1: "
        "reader field 'total' has no default and writer has no such field"
    ]
    assert check(v2, [V1], "FORWARD") == []


def test_field_removed_without_default_breaks_forward() -> None:
    v2 = record("Order", fld("id", "string"))
    assert check(v2, [V1], "BACKWARD") == []
    found = check(v2, [V1], "FORWARD")
    assert len(found) == 1
    assert found[0].path == "/fields/qty"
    assert found[0].reason.startswith("FORWARD v1 reading v2: reader field 'qty' has no default")


def test_int_to_long_promotes_but_long_to_int_breaks() -> None:
    v2 = record("Order", fld("id", "string"), fld("qty", "long"))
    assert check(v2, [V1], "BACKWARD") == []
    found = check(v2, [V1], "FORWARD")
    assert [i.path for i in found] == ["/fields/qty"]
    assert "reader int cannot read writer type long" in found[0].reason


@pytest.mark.parametrize(
    ("reader", "writer", "expected"),
    [
        ("long", "int", True),
        ("float", "int", True),
        ("double", "int", True),
        ("float", "long", True),
        ("double", "long", True),
        ("double", "float", True),
        ("bytes", "string", True),
        ("string", "bytes", True),
        ("int", "long", False),
        ("long", "float", False),
        ("float", "double", False),
        ("int", "string", False),
        ("boolean", "int", False),
        ("null", "boolean", False),
    ],
)
def test_primitive_promotions(reader: str, writer: str, expected: bool) -> None:
    assert ok(reader, writer) is expected
    assert avro_ok(reader, writer) is expected


def _suit(*symbols: str) -> dict[str, Any]:
    return record("Card", fld("suit", {"type": "enum", "name": "Suit", "symbols": list(symbols)}))


def test_enum_symbol_added_without_enum_default_breaks_forward() -> None:
    v1 = _suit("SPADES", "HEARTS")
    v2 = _suit("SPADES", "HEARTS", "CLUBS")
    assert check(v2, [v1], "BACKWARD") == []
    found = check(v2, [v1], "FORWARD")
    assert [i.path for i in found] == ["/fields/suit/symbols"]
    assert "['CLUBS']" in found[0].reason


def test_enum_symbol_added_with_enum_default_is_full_compatible() -> None:
    def suit(*symbols: str) -> dict[str, Any]:
        enum = {"type": "enum", "name": "Suit", "symbols": ["UNKNOWN", *symbols]}
        return record("Card", fld("suit", {**enum, "default": "UNKNOWN"}))

    v1, v2 = suit("SPADES", "HEARTS"), suit("SPADES", "HEARTS", "CLUBS")
    assert check(v2, [v1], "FULL") == []
    assert avro_ok(v1, v2)


def test_field_renamed_with_alias_is_backward_compatible() -> None:
    v2 = record("Order", fld("order_id", "string", aliases=["id"]), fld("qty", "int"))
    assert check(v2, [V1], "BACKWARD") == []
    assert avro_ok(v2, V1)
    # without the alias the renamed field is missing and has no default
    bare = record("Order", fld("order_id", "string"), fld("qty", "int"))
    assert [i.path for i in can_read(bare, V1)] == ["/fields/order_id"]
    # the old reader has no alias, so FORWARD fails on 'id'
    assert [i.path for i in check(v2, [V1], "FORWARD")] == ["/fields/id"]


def test_record_renamed_with_alias() -> None:
    renamed = {**V1, "name": "PurchaseOrder"}
    assert [i.path for i in can_read(renamed, V1)] == ["/"]
    assert "record 'PurchaseOrder' cannot read writer type record 'Order'" in reasons(
        can_read(renamed, V1)
    )
    aliased = {**renamed, "aliases": ["Order"]}
    assert ok(aliased, V1)
    assert avro_ok(aliased, V1)


def test_unqualified_alias_resolves_in_reader_namespace_where_apache_avro_does_not() -> None:
    writer = record("Order", fld("id", "string"), namespace="acme.v1")
    reader = record("PurchaseOrder", fld("id", "string"), namespace="acme.v1", aliases=["Order"])
    assert ok(reader, writer)
    assert not avro_ok(reader, writer)  # it compares the raw alias with the full name
    qualified = {**reader, "aliases": ["acme.v1.Order"]}
    assert ok(qualified, writer)
    elsewhere = {**reader, "aliases": ["Order"], "namespace": "acme.v2"}
    assert not ok(elsewhere, writer)  # 'Order' means acme.v2.Order here


def test_named_types_match_on_unqualified_name_as_the_spec_says() -> None:
    writer = record("Order", fld("id", "string"), namespace="acme.v1")
    assert ok(record("Order", fld("id", "string"), namespace="acme.v2"), writer)


def test_decimal_scale_change_is_incompatible_where_apache_avro_says_compatible() -> None:
    v1 = record("Invoice", fld("total", decimal(12, 2)))
    v2 = record("Invoice", fld("total", decimal(12, 4)))
    found = can_read(v2, v1)
    assert [i.path for i in found] == ["/fields/total"]
    assert "precision/scale" in found[0].reason
    assert "(12,2)" in found[0].reason and "(12,4)" in found[0].reason
    assert check(v2, [v1], "FULL") != []
    # We deliberately differ: Apache avro ignores logical types here and calls it compatible,
    # yet an amount written as 12.34 (1234, scale 2) would be read back as 0.1234.
    assert avro_ok(v2, v1) and avro_ok(v1, v2)


def test_decimal_precision_change_is_incompatible() -> None:
    found = can_read(decimal(10, 2), decimal(12, 2))
    assert len(found) == 1 and "precision/scale" in found[0].reason
    assert ok(decimal(10, 2), decimal(10, 2))
    # scale defaults to 0
    assert ok(decimal(5, 0), {"type": "bytes", "logicalType": "decimal", "precision": 5})


def test_decimal_on_fixed_and_invalid_decimals() -> None:
    def fixed_dec(precision: int, scale: int, size: int = 8) -> dict[str, Any]:
        return {
            "type": "fixed",
            "name": "Money",
            "size": size,
            "logicalType": "decimal",
            "precision": precision,
            "scale": scale,
        }

    assert ok(fixed_dec(18, 2), fixed_dec(18, 2))
    assert not ok(fixed_dec(18, 2), fixed_dec(18, 3))
    assert not ok(fixed_dec(18, 2), decimal(18, 2))  # fixed cannot read bytes
    # invalid decimals are ignored by readers (spec), so only the base types count
    invalid = {"type": "bytes", "logicalType": "decimal", "precision": 2, "scale": 5}
    assert ok(invalid, "bytes") and ok("bytes", invalid)
    assert ok({"type": "fixed", "name": "Money", "size": 8}, fixed_dec(19, 0))  # 19 > 18 digits


def test_logical_type_added_or_removed_is_incompatible() -> None:
    ts = {"type": "long", "logicalType": "timestamp-millis"}
    found = can_read(ts, "long")
    assert len(found) == 1 and "logicalType differs: writer none, reader timestamp-millis" in (
        found[0].reason
    )
    assert not ok("long", ts)
    assert ok(ts, ts)
    assert not ok({"type": "long", "logicalType": "timestamp-micros"}, ts)
    assert not ok(ts, {"type": "int", "logicalType": "date"})  # promotion, but names differ
    assert ok({"type": "string", "logicalType": "uuid"}, {"type": "string", "logicalType": "uuid"})
    # a logical type on the wrong base type is ignored, as readers ignore it
    assert ok({"type": "string", "logicalType": "date"}, "string")
    # one unknown to the spec is compared by name
    assert not ok({"type": "string", "logicalType": "sku"}, "string")


def test_union_widening() -> None:
    assert ok(["null", "string"], "string")
    assert avro_ok(["null", "string"], "string")
    found = can_read("string", ["null", "string"])
    assert [str(i) for i in found] == ["/: reader string cannot read writer union branch 0 (null)"]
    assert not avro_ok("string", ["null", "string"])
    found = can_read(["null", "int"], ["null", "string"])
    assert [i.reason for i in found] == [
        "no branch of the reader union matches writer union branch 1 (string)"
    ]
    assert ok(["null", "long", "string"], ["string", "int"])  # int promoted to long
    assert ok(["null", "double"], "float")


def test_reader_union_prefers_the_exact_branch_then_the_first_match() -> None:
    writer = record("A", fld("x", "int"))
    via_alias = record("B", fld("x", "int"), aliases=["A"])
    assert ok(["null", via_alias], writer)  # no branch named A: the alias matches
    strict_b = record("B", fld("x", "int"), fld("y", "int"), aliases=["A"])
    assert ok([strict_b, writer], writer)  # the branch named A wins over an earlier alias
    strict_a = record("A", fld("x", "int"), fld("y", "int"))
    found = can_read([strict_a, via_alias], writer)  # A is chosen, B is not tried
    assert [i.path for i in found] == ["/0/fields/y"]
    # promotion only when no branch has the writer's own type
    assert [i.path for i in can_read(["long", {"type": "int", "logicalType": "date"}], "int")] == [
        "/1"
    ]
    date = {"type": "int", "logicalType": "date"}
    assert ok(["long", date], date)
    assert ok(["null", "long"], "int")


def test_nested_arrays_of_records() -> None:
    def order(line_fields: list[dict[str, Any]]) -> dict[str, Any]:
        line = record("Line", *line_fields)
        return record("Order", fld("lines", {"type": "array", "items": line}))

    v1 = order([fld("sku", "string"), fld("quantity", "int")])
    v2 = order([fld("sku", "string"), fld("quantity", "long")])
    v3 = order([fld("sku", "string"), fld("quantity", "long"), fld("lot", "string")])
    assert check(v2, [v1], "BACKWARD") == []
    assert [i.path for i in check(v2, [v1], "FORWARD")] == ["/fields/lines/items/fields/quantity"]
    assert [i.path for i in can_read(v3, v2)] == ["/fields/lines/items/fields/lot"]
    maps = [{"type": "map", "values": o["fields"][0]["type"]} for o in (v1, v2)]
    assert ok(maps[1], maps[0])
    assert [i.path for i in can_read(maps[0], maps[1])] == ["/values/items/fields/quantity"]
    assert not ok({"type": "array", "items": "int"}, {"type": "map", "values": "int"})
    assert avro_ok(v2, v1) and not avro_ok(v1, v2)


def _linked_list(value_type: str, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return record(
        "Node",
        fld("value", value_type),
        fld("next", ["null", "Node"], default=None),
        *(extra or []),
    )


def test_recursive_linked_list_terminates() -> None:
    v1, v2 = _linked_list("int"), _linked_list("long")
    assert check(v1, [v1], "FULL") == []
    assert check(v2, [v1], "BACKWARD") == []
    assert [i.path for i in check(v2, [v1], "FORWARD")] == ["/fields/value"]
    v3 = _linked_list("int", [fld("tag", "string")])
    assert [i.path for i in can_read(v3, v1)] == ["/fields/tag"]
    tree = record(
        "Tree",
        fld("children", {"type": "array", "items": "Tree"}),
        fld("index", {"type": "map", "values": "Tree"}),
    )
    assert ok(tree, tree)
    assert avro_ok(v2, v1) and not avro_ok(v1, v2)


def test_namespaces_inherited_and_referenced_by_short_name() -> None:
    def schema(qty: str) -> dict[str, Any]:
        line = record("Line", fld("qty", qty))  # no namespace: inherits acme.orders
        return record(
            "Order",
            fld("first", line),
            fld("rest", {"type": "array", "items": "Line"}),  # short name, same namespace
            fld("last", "acme.orders.Line"),  # full name
            namespace="acme.orders",
        )

    assert ok(schema("int"), schema("int"))
    found = can_read(schema("int"), schema("long"))
    assert [i.path for i in found] == ["/fields/first/fields/qty"]  # the shared Line, once
    assert ok(schema("long"), schema("int"))


def test_nested_namespace_and_full_names() -> None:
    inner = {"type": "fixed", "name": "Hash", "namespace": "acme.crypto", "size": 16}
    schema = record(
        "Doc",
        fld("h", inner),
        fld("h2", "acme.crypto.Hash"),
        fld("meta", record("x.y.Meta", fld("h3", "Hash"), fld("h4", "acme.crypto.Hash"))),
        namespace="acme.docs",
    )
    with pytest.raises(ConfigError, match="unknown type 'Hash'"):
        can_read(schema, schema)  # 'Hash' resolves in x.y, where there is none
    schema["fields"][2]["type"]["fields"] = [fld("h4", "acme.crypto.Hash")]
    assert ok(schema, schema)
    smaller = copy.deepcopy(schema)
    smaller["fields"][0]["type"]["size"] = 8
    # every use of the shared fixed sees the new size
    assert [i.path for i in can_read(smaller, schema)] == [
        "/fields/h",
        "/fields/h2",
        "/fields/meta/fields/h4",
    ]


def test_fixed_needs_same_size_and_name() -> None:
    f16 = {"type": "fixed", "name": "Id", "size": 16}
    assert ok(f16, f16)
    assert not ok({**f16, "size": 8}, f16)
    assert not ok({**f16, "name": "Other"}, f16)
    assert ok({**f16, "name": "Other", "aliases": ["Id"]}, f16)


def test_enum_names_must_match() -> None:
    enum = {"type": "enum", "name": "Suit", "symbols": ["A"]}
    assert not ok({**enum, "name": "Colour"}, enum)
    assert ok({**enum, "name": "Colour", "aliases": ["Suit"]}, enum)


def test_transitive_modes_check_every_earlier_version() -> None:
    v1 = record("Order", fld("id", "string"))
    v2 = record("Order", fld("id", "string"), fld("qty", "int", default=0))
    v3 = record("Order", fld("id", "string"), fld("qty", "int"))  # default dropped
    assert check(v3, [v1, v2], "BACKWARD") == []
    found = check(v3, [v1, v2], "BACKWARD_TRANSITIVE")
    assert [i.reason.split(":")[0] for i in found] == ["BACKWARD v3 reading v1"]
    assert check(v3, [v1, v2], "FORWARD_TRANSITIVE") == []
    assert [i.reason.split(":")[0] for i in check(v3, [v1, v2], "FULL_TRANSITIVE")] == [
        "BACKWARD v3 reading v1"
    ]
    numbered = check(v3, [v1, v2], "BACKWARD_TRANSITIVE", versions=[4, 7])
    assert numbered[0].reason.startswith("BACKWARD v8 reading v4: ")
    numbered = check(v3, [v1, v2], "BACKWARD_TRANSITIVE", versions=[4, 7, 9])
    assert numbered[0].reason.startswith("BACKWARD v9 reading v4: ")


def test_full_reports_both_directions_and_none_checks_nothing() -> None:
    v2 = record("Order", fld("id", "long"))
    v1 = record("Order", fld("id", "int"), fld("qty", "int"))
    labels = [i.reason.split(":")[0] for i in check(v2, [v1], "FULL", versions=[1])]
    assert labels == ["FORWARD v1 reading v2", "FORWARD v1 reading v2"]
    labels = [i.reason.split(":")[0] for i in check(v1, [v2], "FULL")]
    assert labels == ["BACKWARD v2 reading v1", "BACKWARD v2 reading v1"]
    assert check(v1, [v2], "NONE") == []
    assert check(v1, [], "FULL_TRANSITIVE") == []


def test_bad_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown compatibility mode"):
        check("int", ["int"], "SIDEWAYS")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="version numbers"):
        check("int", ["int"], "FULL", versions=[1, 2, 3])
    with pytest.raises(ConfigError, match="unknown type 'Missing'"):
        can_read(record("A", fld("x", "Missing")), "int")
    with pytest.raises(ConfigError, match="defined twice"):
        can_read(record("A", fld("x", record("A"))), "int")
    with pytest.raises(ConfigError, match="union may not contain a union"):
        can_read(["null", ["int"]], "int")
    assert set(MODES) >= {"BACKWARD", "FULL_TRANSITIVE", "NONE"}


def test_incompatibility_str() -> None:
    assert str(Incompatibility("/fields/a", "boom")) == "/fields/a: boom"


# --- generated schemas -----------------------------------------------------------------

PRIMS = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]
LOGICALS: list[dict[str, Any]] = [
    {"type": "int", "logicalType": "date"},
    {"type": "long", "logicalType": "timestamp-millis"},
    decimal(9, 2),
    {"type": "string", "logicalType": "uuid"},
]
SYMBOLS = st.lists(st.sampled_from("ABCDEFG"), min_size=1, max_size=4, unique=True)


def _union_key(branch: Schema) -> str:
    if isinstance(branch, str):
        return branch
    assert isinstance(branch, dict)
    if branch["type"] in ("record", "enum", "fixed"):
        return str(id(branch))
    return str(branch["type"])


def _schemas(logical: bool) -> st.SearchStrategy[Schema]:
    leaves: st.SearchStrategy[Schema] = st.one_of(
        st.sampled_from(PRIMS),
        SYMBOLS.map(lambda s: {"type": "enum", "name": "?", "symbols": s}),
        st.integers(1, 16).map(lambda n: {"type": "fixed", "name": "?", "size": n}),
    )
    if logical:
        leaves = leaves | st.sampled_from(LOGICALS)

    def extend(children: st.SearchStrategy[Schema]) -> st.SearchStrategy[Schema]:
        plain = children.filter(lambda c: not isinstance(c, list))
        return st.one_of(
            children.map(lambda c: {"type": "array", "items": c}),
            children.map(lambda c: {"type": "map", "values": c}),
            st.lists(plain, min_size=1, max_size=3, unique_by=_union_key),
            _records(children),
        )

    return st.recursive(leaves, extend, max_leaves=8).map(_named)


def _records(children: st.SearchStrategy[Schema]) -> st.SearchStrategy[Schema]:
    fields = st.lists(st.tuples(children, st.booleans()), max_size=4)
    return fields.map(
        lambda fs: record(
            "?",
            *(
                fld(f"f{i}", t, **({"default": _default(t)} if has else {}))
                for i, (t, has) in enumerate(fs)
            ),
        )
    )


def _named(schema: Schema, counter: itertools.count[int] | None = None) -> Any:
    """A deep copy with every named type given a unique name."""
    counter = counter or itertools.count()
    if isinstance(schema, list):
        return [_named(b, counter) for b in schema]
    if isinstance(schema, str):
        return schema
    out = dict(schema)
    if out["type"] in ("record", "enum", "fixed"):
        out["name"] = f"T{next(counter)}"
    if out["type"] == "record":
        out["fields"] = [{**f, "type": _named(f["type"], counter)} for f in out["fields"]]
    for key in ("items", "values"):
        if key in out:
            out[key] = _named(out[key], counter)
    return out


def _default(schema: Schema) -> Any:
    """A valid default value for a schema (the first branch for a union)."""
    if isinstance(schema, list):
        return _default(schema[0])
    kind = schema if isinstance(schema, str) else schema["type"]
    simple = {"null": None, "boolean": False, "int": 0, "long": 0, "float": 0.0, "double": 0.0}
    if kind in simple:
        return simple[kind]
    if kind in ("bytes", "string"):
        return ""
    assert isinstance(schema, dict)
    if kind == "enum":
        return schema["symbols"][0]
    if kind == "fixed":
        return "\u0000" * schema["size"]
    if kind == "record":
        return {f["name"]: _default(f["type"]) for f in schema["fields"]}
    return [] if kind == "array" else {}


records_with_defaults = _records(_schemas(logical=True)).map(_named)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(_schemas(logical=True))
def test_any_schema_is_fully_compatible_with_itself(schema: Schema) -> None:
    assert check(schema, [schema], "FULL") == [], reasons(check(schema, [schema], "FULL"))
    assert check(schema, [schema, schema], "FULL_TRANSITIVE") == []


@FAST
@given(records_with_defaults, _schemas(logical=True))
def test_adding_a_field_with_default_is_backward_and_forward(
    base: dict[str, Any], added: Schema
) -> None:
    added = _named(added, itertools.count(1000))
    grown = {**base, "fields": [*base["fields"], fld("added", added, default=_default(added))]}
    assert check(grown, [base], "BACKWARD") == []
    assert check(grown, [base], "FORWARD") == []


@FAST
@given(records_with_defaults, st.data())
def test_removing_a_field_with_default_is_full_compatible(
    base: dict[str, Any], data: st.DataObject
) -> None:
    defaulted = [i for i, f in enumerate(base["fields"]) if "default" in f]
    if not defaulted:
        return
    gone = data.draw(st.sampled_from(defaulted))
    shrunk = {**base, "fields": [f for i, f in enumerate(base["fields"]) if i != gone]}
    assert check(shrunk, [base], "FULL") == []


def _mutate(draw: st.DrawFn, schema: Any, in_union: bool = False) -> Any:
    """A nearby schema: random promotions, added/removed fields, symbols, sizes, unions."""

    def often() -> bool:
        return draw(st.integers(0, 5)) == 0

    if not isinstance(schema, list) and not in_union and often():
        return ["null", schema] if schema != "null" else "int"
    if isinstance(schema, str):
        return draw(st.sampled_from(PRIMS)) if often() else schema
    if isinstance(schema, list):
        if len(schema) > 1 and often():
            return schema[1:]
        return [_mutate(draw, b, in_union=True) if isinstance(b, dict) else b for b in schema]
    out = dict(schema)
    kind = out["type"]
    if kind == "record":
        fields = [{**f, "type": _mutate(draw, f["type"])} for f in out["fields"]]
        if fields and often():
            fields.pop(draw(st.integers(0, len(fields) - 1)))
        if often():
            extra = {"default": 0} if draw(st.booleans()) else {}
            fields.append(fld(f"new{len(fields)}", "int", **extra))
        out["fields"] = fields
    elif kind == "enum":
        if often():
            out["symbols"] = [*out["symbols"], "Z"]
        if len(out["symbols"]) > 1 and often():
            out["symbols"] = out["symbols"][1:]
        if often():
            out["default"] = out["symbols"][0]
    elif kind == "fixed" and often():
        out["size"] += 1
    elif kind in ("array", "map"):
        key = "items" if kind == "array" else "values"
        out[key] = _mutate(draw, out[key])
    if kind in ("record", "enum", "fixed") and often():
        out["name"], out["aliases"] = out["name"] + "x", [out["name"]]
    return out


@FAST
@given(_schemas(logical=False), st.data())
def test_verdicts_match_apache_avro_without_logical_types(
    schema: Schema, data: st.DataObject
) -> None:
    mutated = _mutate(data.draw, schema)
    if isinstance(mutated, list) and len({_union_key(b) for b in mutated}) != len(mutated):
        return  # a mutation produced an invalid union
    for reader, writer in ((schema, mutated), (mutated, schema)):
        assert ok(reader, writer) is avro_ok(reader, writer), (reader, writer)
