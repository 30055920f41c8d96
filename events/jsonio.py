"""JSON in and out: events as JSON lines for the CLI (decimals as strings, ISO dates)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from supplybus.errors import FieldError


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any) -> str:
    """One JSON line; Decimal, datetime, date, UUID and bytes are written as strings."""
    return json.dumps(value, default=_default, separators=(",", ":"), ensure_ascii=False)


def read_lines(handle: IO[str]) -> Iterator[tuple[int, Any | FieldError]]:
    """(line number, parsed object or the error) for every non-blank line."""
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line, parse_float=Decimal)
        except json.JSONDecodeError as exc:
            yield number, FieldError("", f"a JSON object ({exc.msg} at column {exc.colno})")


def with_envelope_defaults(
    payload: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """The event with its envelope completed from ``defaults`` (given fields win)."""
    record = dict(payload)
    envelope = dict(defaults)
    given = record.get("envelope")
    if isinstance(given, Mapping):
        envelope.update(given)
    elif given is not None:
        envelope = given  # let validation name the wrong type
    record["envelope"] = envelope
    return record


def file_label(path: Path) -> str:
    return "<stdin>" if str(path) == "-" else str(path)
