"""The CSV side of file drops, pure: mapping validation, cell conversion, encodings, parsing.

Hypothesis: any text (any delimiter, quotes, newlines, encodings) gives rows or reject lines,
never a crash; the mapping turns any row into an event or a LineError.
"""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from supplybus.errors import ConfigError
from supplybus.events.schema_store import default_store
from supplybus.producers.files import csv_reader
from supplybus.producers.files.mapping import (
    LineError,
    check_against_schema,
    load_mapping,
    map_row,
    parse_decimal,
    parse_mapping,
)

MAPPINGS = Path(__file__).resolve().parent.parent / "schemas" / "mappings"
USAGE = load_mapping(MAPPINGS / "item-usage.yaml")
STOCK_MOVEMENT = default_store().latest("StockMovement").raw


def rows_of(data: bytes, declared: str = "utf-8", delimiter: str = ",") -> list[Any]:
    found = csv_reader.scan(io.BytesIO(data))
    encoding = csv_reader.decide_encoding(found, declared, "f.csv")
    return list(csv_reader.read_rows(io.BytesIO(data), encoding, delimiter))


def test_shipped_mappings_fit_the_schema() -> None:
    for path in sorted(MAPPINGS.glob("*.yaml")):
        mapping = load_mapping(path)
        assert check_against_schema(mapping, default_store().latest(mapping.event_type).raw) == []


def test_a_usage_row_maps_with_codes_decimal_comma_dates_and_time_zone() -> None:
    row = {"Usage Date": "03.11.2026 14:05", "Item No": "ITEM-0001", "Location": "LOC-1",
           "Qty": "1.234,5", "Unit": "case", "Lot": "", "Expiry": "31.12.2027",
           "Case Ref": " OR-1 "}  # fmt: skip
    event = map_row(USAGE, row)
    assert event["quantity"] == {"value": Decimal("1234.5"), "uom": "CS"}
    assert event["kind"] == "ISSUE" and event["lot_number"] is None
    assert event["expiry_date"] == dt.date(2027, 12, 31)
    assert event["envelope"]["occurred_at"] == dt.datetime(2026, 11, 3, 13, 5, tzinfo=dt.UTC)
    assert event["envelope"]["entity_id"] == "ENT-EAST" and event["reference_id"] == "OR-1"


@pytest.mark.parametrize(
    ("change", "reason", "words"),
    [
        ({"Qty": "12,3,4"}, "bad_decimal", "Qty: not a number"),
        ({"Qty": "1.23,4"}, "bad_decimal", "Qty: not a number"),
        ({"Unit": "CRATE"}, "unknown_code", "Unit: unknown code 'CRATE'"),
        ({"Item No": "  "}, "missing", "Item No: a value is required"),
        ({"Expiry": "2027-12-31"}, "bad_date", "Expiry: '2027-12-31' does not match %d.%m.%Y"),
        ({"Usage Date": "yesterday"}, "bad_datetime", "Usage Date: 'yesterday'"),
    ],
)
def test_bad_cells_are_line_errors_naming_the_column(
    change: dict[str, str], reason: str, words: str
) -> None:
    row = {"Usage Date": "03.11.2026 14:05", "Item No": "I", "Location": "L", "Qty": "2",
           "Unit": "EA", "Lot": "", "Expiry": "", "Case Ref": ""} | change  # fmt: skip
    with pytest.raises(LineError) as caught:
        map_row(USAGE, row)
    assert caught.value.reason == reason and words in caught.value.message


@pytest.mark.parametrize(
    ("text", "comma", "value"),
    [("1,234.5", False, "1234.5"), ("1234.5", False, "1234.5"), ("-3", False, "-3"),
     ("1.234,5", True, "1234.5"), ("0,25", True, "0.25"), ("1 234,5", True, "1234.5")],
)  # fmt: skip
def test_decimals(text: str, comma: bool, value: str) -> None:
    assert parse_decimal(text, decimal_comma=comma, header="Qty") == Decimal(value)


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        ({"columns": {"A": "item_id"}}, "event_type", "an event type"),
        ({"event_type": "X", "columns": {"A": "item_id"}, "colour": 1}, "colour", "unknown key"),
        ({"event_type": "X", "columns": {"A": "item_id"}, "encoding": "latin-1"}, "encoding",
         "one of utf-8, windows-1252, auto"),
        ({"event_type": "X", "columns": {"A": {"field": "a", "codes": "units"}}},
         "columns.A.codes", "a table under codes"),
        ({"event_type": "X", "columns": {"A": "a"}, "decimal_comma": True}, "delimiter",
         "not ',' when decimal_comma"),
        ({"event_type": "X", "columns": {"A": "a", "B": "a"}}, "a", "mapped twice"),
        ({"event_type": "X", "columns": {"A": "a"}, "timezone": "Mars/Base"}, "timezone",
         "an IANA time zone"),
    ],
)  # fmt: skip
def test_a_bad_mapping_is_one_line_naming_file_and_key(
    data: dict[str, Any], key: str, words: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^m\.yaml: {key}: {words}"):
        parse_mapping(data, name="m", source="m.yaml")


def test_mapping_checked_against_the_schema() -> None:
    mapping = parse_mapping(
        {"event_type": "StockMovement", "columns": {"A": "item_idd"}}, name="m", source="m"
    )
    problems = check_against_schema(mapping, STOCK_MOVEMENT)
    assert "item_idd: not a field of StockMovement" in problems
    assert "movement_id: required by StockMovement, but nothing fills it" in problems
    assert "envelope.entity_id: required by StockMovement, but nothing fills it" in problems


def test_bom_crlf_quoted_newline_and_trailing_separator() -> None:
    data = b'\xef\xbb\xbfa,b,\r\n1,"two\r\nlines",\r\n\r\n3,4\r\n'
    header, first, second = rows_of(data)
    names, trailing = csv_reader.header_of(header, "f")
    assert names == ["a", "b"] and trailing
    assert csv_reader.cells_by_header(names, trailing, first) == {"a": "1", "b": "two\r\nlines"}
    assert first.line == 2 and first.raw == '1,"two\r\nlines",\r\n'
    assert second.line == 5 and csv_reader.cells_by_header(names, trailing, second) == {
        "a": "3", "b": "4"
    }  # fmt: skip


def test_field_count_mismatch_is_a_bad_row() -> None:
    header, row = rows_of(b"a,b\n1,2,3\n")
    names, trailing = csv_reader.header_of(header, "f")
    bad = csv_reader.cells_by_header(names, trailing, row)
    assert isinstance(bad, csv_reader.BadRow) and bad.message == "expected 2 fields, got 3"


def test_windows_1252_is_read_when_declared_or_detected() -> None:
    data = "Artikel;Menge\nKompresse Größe M;1\n".encode("cp1252")
    for declared in ("windows-1252", "auto"):
        cells = [r.cells for r in rows_of(data, declared, ";")]
        assert cells[1] == ["Kompresse Größe M", "1"]


@pytest.mark.parametrize(
    ("data", "declared", "words"),
    [
        ("Größe\n".encode("cp1252"), "utf-8", r"not UTF-8 \(line 1, byte 0xf6\)"),
        (b"\xef\xbb\xbfa\n", "windows-1252", "UTF-8 byte order mark"),
        (b"a\n\x81b\xf6\n", "auto", "cannot tell the encoding"),
        (b"\x8f\n", "windows-1252", "bytes Windows-1252 does not define"),
        ("a,b\n".encode("utf-16"), "auto", "control characters"),
    ],
)
def test_an_encoding_it_cannot_be_sure_of_is_refused(
    data: bytes, declared: str, words: str
) -> None:
    found = csv_reader.scan(io.BytesIO(data))
    with pytest.raises(ConfigError, match=words):
        csv_reader.decide_encoding(found, declared, "f.csv")


def test_the_scan_hashes_the_bytes() -> None:
    import hashlib

    data = b"x" * (csv_reader.CHUNK + 17)
    assert csv_reader.scan(io.BytesIO(data)).sha256 == hashlib.sha256(data).hexdigest()


GENERIC = parse_mapping(
    {"event_type": "StockMovement", "decimal_comma": True, "delimiter": ";",
     "codes": {"u": {"CASE": "CS"}}, "date_formats": ["%d.%m.%Y"],
     "columns": {"a": "item_id", "b": {"field": "quantity.value", "type": "decimal"},
                 "c": {"field": "quantity.uom", "codes": "u", "required": False},
                 "d": {"field": "expiry_date", "type": "date", "default": "01.01.2030"},
                 "e": {"field": "envelope.occurred_at", "type": "datetime"},
                 "f": {"field": "reference_id", "type": "int", "required": False}}},
    name="fuzz", source="fuzz",
)  # fmt: skip
CELLS = st.text(
    alphabet=st.sampled_from(list(';,"\r\n .-0123456789aCASE\u00e9\u20ac')), max_size=12
)


@hsettings(max_examples=300, deadline=None)
@given(
    text=st.text(
        alphabet=st.sampled_from(list('a;b,"\r\n \t1.2\u00e9\u20ac\x00\ufeff')), max_size=80
    ),
    encoding=st.sampled_from(["utf-8", "cp1252"]),
    declared=st.sampled_from(["utf-8", "windows-1252", "auto"]),
)
def test_any_text_is_rows_bad_rows_or_a_refused_file(
    text: str, encoding: str, declared: str
) -> None:
    data = text.encode(encoding, errors="replace")
    found = csv_reader.scan(io.BytesIO(data))
    try:
        codec = csv_reader.decide_encoding(found, declared, "f.csv")
    except ConfigError:
        return  # the whole file refused with one line
    rows = list(csv_reader.read_rows(io.BytesIO(data), codec, ";"))
    if not rows or isinstance(rows[0], csv_reader.BadRow):
        return
    try:
        names, trailing = csv_reader.header_of(rows[0], "f.csv")
    except ConfigError:
        return
    for row in rows[1:]:
        if isinstance(row, csv_reader.Row):
            result = csv_reader.cells_by_header(names, trailing, row)
            assert isinstance(result, dict | csv_reader.BadRow)
        assert row.line >= 2


@hsettings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({k: CELLS for k in "abcdef"}))
def test_any_row_maps_to_an_event_or_a_line_error(row: dict[str, str]) -> None:
    try:
        event = map_row(GENERIC, row)
    except LineError as exc:
        assert exc.reason in {"missing", "unknown_code", "bad_decimal", "bad_int", "bad_date",
                              "bad_datetime"} and exc.message  # fmt: skip
        return
    assert isinstance(event["quantity"]["value"], Decimal)
    assert isinstance(event["expiry_date"], dt.date)


@hsettings(max_examples=200, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-10**8,
                   max_value=10**8))  # fmt: skip
def test_decimal_comma_round_trip(value: Decimal) -> None:
    whole, _, frac = f"{value:,.3f}".partition(".")
    text = whole.replace(",", ".") + "," + frac
    assert parse_decimal(text, decimal_comma=True, header="q") == value
