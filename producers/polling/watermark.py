"""The watermark rules of database polling (pure: no I/O).

Two modes. **key**: rows are read in order of an increasing key; the watermark is the largest
key read, and the next poll reads keys above it. **updated**: rows are read in order of
(updated-at, key) from ``window_start`` = watermark - look-back, so that a row committed late
(its updated-at earlier than the watermark, written by a transaction that began earlier) is
still read while it is inside the window; rows already read are recognised by (row key,
updated-at) in the seen table, which keeps exactly the rows the window can still return.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any, TypeVar

from supplybus.errors import ConfigError

K = TypeVar("K")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, *, name: str = "--look-back") -> dt.timedelta:
    """'60s', '5m', '1h', '250ms', '90' (seconds); ConfigError naming ``name`` otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise ConfigError(f"{name}: a duration such as 60s, 5m or 1h, got {text!r}")
    return dt.timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"])


def next_key(current: K | None, keys: Iterable[K]) -> K | None:
    """Key mode: the largest key read so far (never moves back)."""
    best = current
    for key in keys:
        if best is None or key > best:  # type: ignore[operator]
            best = key
    return best


def next_updated(
    current: dt.datetime | None, seen: Iterable[dt.datetime], source_now: dt.datetime
) -> dt.datetime | None:
    """Updated mode: the largest updated-at read, never past the source's clock and never
    moving back. A row stamped in the future (a skewed writer clock) is still published, but
    does not drag the watermark, and with it the window, past rows written now."""
    best = current
    for when in seen:
        capped = min(when, source_now)
        if best is None or capped > best:
            best = capped
    return best


def window_start(watermark: dt.datetime | None, look_back: dt.timedelta) -> dt.datetime | None:
    """Where a poll starts reading in updated mode: the look-back window before the watermark
    (``None``: from the first row, nothing read yet)."""
    return None if watermark is None else watermark - look_back


def prunable_before(watermark: dt.datetime | None, look_back: dt.timedelta) -> dt.datetime | None:
    """Seen rows older than this can be forgotten: no later poll reads them again, since the
    window only moves forward. ``None``: keep everything."""
    return window_start(watermark, look_back)


def is_fresh(
    key: Any, updated: dt.datetime, seen: set[tuple[Any, dt.datetime]], start: dt.datetime | None
) -> bool:
    """Whether a row read in the window is new: not seen (the row key at this updated-at).
    A row before the window start is never read (the query starts there); seen rows are kept
    for as long as the window covers them, so a re-read publishes nothing twice."""
    if start is not None and updated < start:
        return False
    return (key, updated) not in seen
