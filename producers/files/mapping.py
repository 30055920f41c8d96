"""The YAML mapping of a CSV export onto one event type (pure: no I/O beyond ``load_mapping``).

```yaml
event_type: StockMovement
encoding: auto              # utf-8 (a BOM is fine), windows-1252, or auto (docs/file-drops.md)
delimiter: ","
decimal_comma: false        # true: "1.234,5" is 1234.5
date_formats: ["%Y-%m-%d"]  # tried in order (strptime)
datetime_formats: ["%Y-%m-%d %H:%M"]
timezone: UTC               # for date-times without an offset
reject_limit: 100           # more bad lines fail the whole file (nothing published)
codes: {units: {CASE: CS, BOX: BX, EACH: EA}}
constants: {kind: ISSUE, envelope.source_system: mmis, envelope.entity_id: ENT-1}
line_ids: [movement_id]     # a uuid per line, deterministic in the line's event id
columns:
  Item: item_id
  Qty: {field: quantity.value, type: decimal}
  Unit: {field: quantity.uom, codes: units}
  Lot: {field: lot_number, required: false}
```

``map_row`` turns one CSV row (header -> cell) into an event payload or raises ``LineError``
with a stable reason code (the metric label) and a message naming the column.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from supplybus.errors import ConfigError

Encoding = Literal["utf-8", "windows-1252", "auto"]
Kind = Literal["string", "decimal", "int", "date", "datetime"]
ENCODINGS: tuple[Encoding, ...] = ("utf-8", "windows-1252", "auto")
KINDS: tuple[Kind, ...] = ("string", "decimal", "int", "date", "datetime")
_KEYS = {
    "event_type", "encoding", "delimiter", "decimal_comma", "date_formats", "datetime_formats",
    "timezone", "reject_limit", "codes", "constants", "line_ids", "columns", "description",
}  # fmt: skip
_COLUMN_KEYS = {"field", "type", "codes", "required", "default", "formats"}
_PATH = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")
#: Envelope fields the ingest fills itself (id, type, version; occurred_at defaults too).
AUTO_ENVELOPE = ("event_id", "event_type", "schema_version", "occurred_at", "correlation_id",
                 "causation_id", "facility_id", "priority", "actor")  # fmt: skip


class LineError(Exception):
    """One line cannot become an event: ``reason`` is a stable code, ``message`` says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Column:
    header: str
    field: str
    kind: Kind = "string"
    codes: Mapping[str, str] | None = None  # keys upper-cased: matched case-insensitively
    required: bool = True
    default: str | None = None  # used when the cell is blank
    formats: tuple[str, ...] = ()  # date/datetime formats of this column (else the mapping's)


@dataclass(frozen=True)
class FileMapping:
    name: str
    event_type: str
    columns: tuple[Column, ...]
    encoding: Encoding = "utf-8"
    delimiter: str = ","
    decimal_comma: bool = False
    date_formats: tuple[str, ...] = ("%Y-%m-%d",)
    datetime_formats: tuple[str, ...] = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S")
    timezone: str = "UTC"
    reject_limit: int | None = None
    constants: Mapping[str, Any] = field(default_factory=dict)
    line_ids: tuple[str, ...] = ()

    @property
    def headers(self) -> tuple[str, ...]:
        return tuple(c.header for c in self.columns)


def load_mapping(path: Path) -> FileMapping:
    """Read and check a mapping file; ConfigError naming the file and key when it is wrong."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the mapping ({exc.strerror})") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    return parse_mapping(data, name=path.stem, source=str(path))


def parse_mapping(data: Any, *, name: str, source: str) -> FileMapping:
    """The mapping from parsed YAML; ConfigError naming ``source`` and the offending key."""

    def fail(key: str, expected: str, got: Any = None) -> ConfigError:
        shown = "" if got is None else f", got {got!r}"
        return ConfigError(f"{source}: {key}: {expected}{shown}")

    if not isinstance(data, dict):
        raise fail("<mapping>", "expected a YAML mapping of keys", type(data).__name__)
    unknown = sorted(set(map(str, data)) - _KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown key (known: {', '.join(sorted(_KEYS))})")
    event_type = data.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise fail("event_type", "an event type, e.g. StockMovement", event_type)
    encoding = data.get("encoding", "utf-8")
    if encoding not in ENCODINGS:
        raise fail("encoding", f"one of {', '.join(ENCODINGS)}", encoding)
    delimiter = data.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
        raise fail("delimiter", "one character other than a quote or newline", delimiter)
    decimal_comma = data.get("decimal_comma", False)
    if not isinstance(decimal_comma, bool):
        raise fail("decimal_comma", "true or false", decimal_comma)
    if decimal_comma and delimiter == ",":
        raise fail("delimiter", "not ',' when decimal_comma is true (use ';')")
    date_formats = _formats(data.get("date_formats", ["%Y-%m-%d"]), "date_formats", fail)
    datetime_formats = _formats(
        data.get("datetime_formats", ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
        "datetime_formats",
        fail,
    )
    timezone = data.get("timezone", "UTC")
    try:
        ZoneInfo(str(timezone))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise fail("timezone", "an IANA time zone such as UTC or Europe/Berlin", timezone) from exc
    limit = data.get("reject_limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise fail("reject_limit", "a whole number >= 0", limit)
    tables = data.get("codes", {}) or {}
    if not isinstance(tables, dict):
        raise fail("codes", "a mapping of table name -> {code: value}", type(tables).__name__)
    checked_tables = {str(k): _code_table(v, f"codes.{k}", fail) for k, v in tables.items()}
    constants = data.get("constants", {}) or {}
    if not isinstance(constants, dict):
        raise fail("constants", "a mapping of field path -> value", type(constants).__name__)
    for key in constants:
        if not isinstance(key, str) or not _PATH.match(key):
            raise fail(f"constants.{key}", "a field path like envelope.entity_id")
    line_ids = data.get("line_ids", []) or []
    if not isinstance(line_ids, list) or not all(
        isinstance(p, str) and _PATH.match(p) for p in line_ids
    ):
        raise fail("line_ids", "a list of field paths", line_ids)
    raw_columns = data.get("columns")
    if not isinstance(raw_columns, dict) or not raw_columns:
        raise fail("columns", "a mapping of CSV header -> field path (or {field: ...})")
    columns = tuple(
        _column(str(header), spec, checked_tables, fail) for header, spec in raw_columns.items()
    )
    targets = [c.field for c in columns] + list(constants) + list(line_ids)
    seen: set[str] = set()
    for target in targets:
        if target in seen:
            raise fail(target, "mapped twice (columns, constants and line_ids must not overlap)")
        seen.add(target)
    return FileMapping(
        name=name,
        event_type=event_type,
        columns=columns,
        encoding=encoding,
        delimiter=delimiter,
        decimal_comma=decimal_comma,
        date_formats=date_formats,
        datetime_formats=datetime_formats,
        timezone=str(timezone),
        reject_limit=limit,
        constants=dict(constants),
        line_ids=tuple(line_ids),
    )


def _formats(value: Any, key: str, fail: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise fail(key, "a list of strptime formats such as '%d.%m.%Y'", value)
    return tuple(value)


def _code_table(value: Any, key: str, fail: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise fail(key, "a mapping of code -> value, e.g. {CASE: CS}", value)
    return {str(k).strip().upper(): str(v) for k, v in value.items()}


def _column(header: str, spec: Any, tables: Mapping[str, Mapping[str, str]], fail: Any) -> Column:
    key = f"columns.{header}"
    if isinstance(spec, str):
        spec = {"field": spec}
    if not isinstance(spec, dict):
        raise fail(key, "a field path or {field: ..., type: ...}", spec)
    unknown = sorted(set(map(str, spec)) - _COLUMN_KEYS)
    if unknown:
        raise fail(f"{key}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(_COLUMN_KEYS))})")
    target = spec.get("field")
    if not isinstance(target, str) or not _PATH.match(target):
        raise fail(f"{key}.field", "a field path like quantity.value", target)
    kind = spec.get("type", "string")
    if kind not in KINDS:
        raise fail(f"{key}.type", f"one of {', '.join(KINDS)}", kind)
    codes = spec.get("codes")
    table: Mapping[str, str] | None = None
    if isinstance(codes, str):
        if codes not in tables:
            raise fail(f"{key}.codes", f"a table under codes: ({', '.join(tables) or 'none'})")
        table = tables[codes]
    elif codes is not None:
        table = _code_table(codes, f"{key}.codes", fail)
    required = spec.get("required", True)
    if not isinstance(required, bool):
        raise fail(f"{key}.required", "true or false", required)
    default = spec.get("default")
    formats = _formats(spec["formats"], f"{key}.formats", fail) if "formats" in spec else ()
    return Column(
        header=header,
        field=target,
        kind=kind,
        codes=table,
        required=required,
        default=None if default is None else str(default),
        formats=formats,
    )


def map_row(mapping: FileMapping, row: Mapping[str, object]) -> dict[str, Any]:
    """The event payload of one row (envelope fields from columns and constants only).

    A cell is text (a CSV line) or a typed value (a database row: int, Decimal, date,
    datetime, ...), which ``convert_typed`` takes as it is instead of parsing it.

    Raises LineError(reason, message): ``missing`` (a required cell is blank), ``unknown_code``,
    ``bad_decimal``, ``bad_int``, ``bad_date``, ``bad_datetime``, ``bad_type``.
    """
    event: dict[str, Any] = {}
    for path, value in mapping.constants.items():
        _put(event, path, value)
    for column in mapping.columns:
        raw = row.get(column.header)
        if raw is not None and not isinstance(raw, str):
            _put(event, column.field, convert_typed(mapping, column, raw))
            continue
        cell = (raw or "").strip()
        if not cell and column.default is not None:
            cell = column.default
        if not cell:
            if column.required:
                raise LineError("missing", f"{column.header}: a value is required")
            _put(event, column.field, None)
            continue
        _put(event, column.field, convert(mapping, column, cell))
    return event


def convert(mapping: FileMapping, column: Column, cell: str) -> Any:
    """One non-blank cell converted as its column says (codes first, then the type)."""
    if column.codes is not None:
        code = column.codes.get(cell.upper())
        if code is None:
            known = ", ".join(sorted(column.codes)[:8])
            raise LineError("unknown_code", f"{column.header}: unknown code {cell!r} ({known})")
        cell = code
    if column.kind == "decimal":
        return parse_decimal(cell, decimal_comma=mapping.decimal_comma, header=column.header)
    if column.kind == "int":
        try:
            return int(cell)
        except ValueError:
            raise LineError("bad_int", f"{column.header}: not a whole number: {cell!r}") from None
    if column.kind == "date":
        return parse_when(cell, column.formats or mapping.date_formats, column.header).date()
    if column.kind == "datetime":
        when = parse_when(cell, column.formats or mapping.datetime_formats, column.header)
        if when.tzinfo is None:
            when = when.replace(tzinfo=ZoneInfo(mapping.timezone))
        return when.astimezone(dt.UTC)
    return cell


def convert_typed(mapping: FileMapping, column: Column, value: object) -> Any:
    """A typed (non-text) cell converted as its column says: codes and ``string`` take its
    text; numbers, dates and date-times are taken as they are (a naive date-time is in the
    mapping's time zone). LineError ``bad_type`` for a value the column cannot hold."""
    if column.codes is not None or column.kind == "string":
        text = value.isoformat() if isinstance(value, dt.date) else str(value)
        return convert(mapping, column, text) if column.codes is not None else text
    numeric = isinstance(value, (int, Decimal, float)) and not isinstance(value, bool)
    if column.kind in ("decimal", "int") and numeric:
        number = Decimal(str(value))
        if column.kind == "decimal" and number.is_finite():
            return number
        if column.kind == "int" and number.is_finite() and number == number.to_integral():
            return int(number)
    if column.kind == "date" and isinstance(value, dt.date):
        return value.date() if isinstance(value, dt.datetime) else value
    if column.kind == "datetime" and isinstance(value, dt.date):
        when = value if isinstance(value, dt.datetime) else dt.datetime.combine(value, dt.time())
        if when.tzinfo is None:
            when = when.replace(tzinfo=ZoneInfo(mapping.timezone))
        return when.astimezone(dt.UTC)
    raise LineError("bad_type", f"{column.header}: a {type(value).__name__} is not a {column.kind}")


_PLAIN = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


def parse_decimal(cell: str, *, decimal_comma: bool, header: str) -> Decimal:
    """'1234.5' (or '1.234,5' / '1234,5' with decimal_comma); thousands separators only as
    groups of three. LineError ``bad_decimal`` otherwise (never a guess)."""
    text = cell.replace(" ", "").replace("\u00a0", "")
    group, point = (".", ",") if decimal_comma else (",", ".")
    whole, _, fraction = text.partition(point)
    if group in whole:
        sign = whole[0] if whole[:1] in "+-" and whole else ""
        parts = whole[len(sign) :].split(group)
        if not parts[0] or len(parts[0]) > 3 or any(len(p) != 3 for p in parts[1:]):
            raise LineError("bad_decimal", f"{header}: not a number: {cell!r}")
        whole = sign + "".join(parts)
    plain = f"{whole}.{fraction}" if point in text else whole
    if not _PLAIN.match(plain):
        raise LineError("bad_decimal", f"{header}: not a number: {cell!r}")
    try:
        return Decimal(plain)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid literals
        raise LineError("bad_decimal", f"{header}: not a number: {cell!r}") from None


def parse_when(cell: str, formats: tuple[str, ...], header: str) -> dt.datetime:
    for fmt in formats:
        try:
            return dt.datetime.strptime(cell, fmt)
        except ValueError:
            continue
    kind = "bad_date" if all("%H" not in f for f in formats) else "bad_datetime"
    raise LineError(kind, f"{header}: {cell!r} does not match {' or '.join(formats)}")


def _put(event: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = event
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value


def check_against_schema(mapping: FileMapping, schema: Mapping[str, Any]) -> list[str]:
    """Mapping problems against the event's Avro schema: unknown field paths, and required
    fields (neither nullable nor defaulted) that nothing fills. Empty when the mapping fits."""
    problems: list[str] = []
    fields = _leaf_fields(schema)
    targets = [c.field for c in mapping.columns] + list(mapping.constants) + list(mapping.line_ids)
    for target in targets:
        if target not in fields:
            problems.append(f"{target}: not a field of {mapping.event_type}")
    filled = set(targets) | {f"envelope.{name}" for name in AUTO_ENVELOPE}
    for path, optional in fields.items():
        if not optional and path not in filled:
            problems.append(f"{path}: required by {mapping.event_type}, but nothing fills it")
    return problems


def _leaf_fields(schema: Mapping[str, Any], prefix: str = "") -> dict[str, bool]:
    """Dotted path -> whether it may be left out (nullable or with a default)."""
    found: dict[str, bool] = {}
    for f in schema.get("fields", []):
        path = f"{prefix}{f['name']}"
        kind = f["type"]
        optional = "default" in f or (isinstance(kind, list) and "null" in kind)
        if isinstance(kind, dict) and kind.get("type") == "record":
            found.update(_leaf_fields(kind, f"{path}."))
        else:
            found[path] = optional
    return found
