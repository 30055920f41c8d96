"""The watermark rules of database polling (pure): unit and hypothesis property tests.

The last property replays the whole protocol in memory: writers commit rows whose
updated-at is earlier than their commit (late by a random delay), polls come at random
times, some polls crash before their commit (nothing of them is kept); every row late by no
more than the look-back is published exactly once, and no row is ever published twice.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supplybus.errors import ConfigError
from supplybus.producers.files.mapping import FileMapping, LineError, map_row, parse_mapping
from supplybus.producers.polling import watermark as wm

T0 = dt.datetime(2026, 11, 3, 8, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


stamps = st.integers(min_value=0, max_value=10_000).map(at)


@given(st.none() | st.integers(), st.lists(st.integers()))
def test_the_key_watermark_is_the_largest_key_and_never_moves_back(
    current: int | None, keys: list[int]
) -> None:
    moved = wm.next_key(current, keys)
    every = ([] if current is None else [current]) + keys
    assert moved == (max(every) if every else None)
    assert moved == wm.next_key(current, sorted(keys, reverse=True))  # order does not matter


@given(st.none() | stamps, st.lists(stamps), stamps)
def test_the_updated_watermark_never_moves_back_nor_past_the_source_clock(
    current: dt.datetime | None, seen: list[dt.datetime], now: dt.datetime
) -> None:
    moved = wm.next_updated(current, seen, now)
    if current is not None:
        assert moved is not None and moved >= current
    if seen:
        assert moved is not None and moved >= min(max(seen), now)
    if moved is not None and moved != current:
        assert moved <= now and moved in [*seen, now]
    if not seen:
        assert moved == current


def test_rows_stamped_in_the_future_do_not_drag_the_watermark() -> None:
    assert wm.next_updated(at(10), [at(50), at(5000)], at(100)) == at(100)
    assert wm.next_updated(None, [], at(100)) is None


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["ms", "s", "m", "h", "d", ""]))
def test_durations_read_with_their_unit(n: int, unit: str) -> None:
    seconds = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "": 1}[unit] * n
    assert wm.parse_duration(f"{n}{unit}") == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "a while", "-5s", "5 weeks", "1h30m", "s"])
def test_a_bad_duration_is_one_error_naming_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match="^--look-back: a duration such as 60s"):
        wm.parse_duration(text)


def test_the_window_starts_one_look_back_before_the_watermark() -> None:
    assert wm.window_start(None, dt.timedelta(seconds=60)) is None
    assert wm.window_start(at(100), dt.timedelta(seconds=60)) == at(40)
    assert wm.prunable_before(at(100), dt.timedelta(seconds=60)) == at(40)
    assert not wm.is_fresh("1", at(39), set(), at(40))
    assert wm.is_fresh("1", at(40), set(), at(40))
    assert not wm.is_fresh("1", at(40), {("1", at(40))}, at(40))
    assert wm.is_fresh("1", at(41), {("1", at(40))}, at(40))  # a new version of the row


# -- the whole protocol, in memory ---------------------------------------------------------

rows = st.lists(  # (updated-at, commit delay): stamped at u, committed at u + delay
    st.tuples(st.integers(0, 100), st.integers(0, 30)), min_size=1, max_size=40
)
polls = st.lists(st.tuples(st.integers(0, 140), st.booleans()), min_size=1, max_size=30)


@given(rows, polls, st.integers(0, 40))
def test_every_row_late_by_at_most_the_look_back_is_published_exactly_once(
    table: list[tuple[int, int]], schedule: list[tuple[int, bool]], look_back_s: int
) -> None:
    look_back = dt.timedelta(seconds=look_back_s)
    mark: dt.datetime | None = None  # stored: the watermark and the seen rows
    seen: set[tuple[str, dt.datetime]] = set()
    published: list[str] = []
    times = [*sorted(schedule), (1000, False)]  # a last poll after every commit
    for now_s, crashes in times:
        now = at(now_s)
        start = wm.window_start(mark, look_back)
        visible = [(str(i), at(u)) for i, (u, d) in enumerate(table) if u + d <= now_s]
        read = sorted((u, k) for k, u in visible if start is None or u >= start)
        fresh = [(k, u) for u, k in read if wm.is_fresh(k, u, seen, start)]
        if crashes:  # killed before the commit: nothing of this poll is kept
            continue
        published.extend(k for k, _ in fresh)
        seen |= set(fresh)
        mark = wm.next_updated(mark, [u for u, _ in read], now)
        before = wm.prunable_before(mark, look_back)
        seen = {(k, u) for k, u in seen if before is None or u >= before}
    assert len(published) == len(set(published)), "a row published twice"
    on_time = {str(i) for i, (_, delay) in enumerate(table) if delay <= look_back_s}
    lost = on_time - set(published)
    assert not lost, f"rows committed within the look-back were lost: {sorted(lost)}"


# -- typed cells (a database row) through the file-drop mapping ---------------------------


def typed_mapping() -> FileMapping:
    return parse_mapping(
        {
            "event_type": "StockMovement",
            "timezone": "Europe/Berlin",
            "codes": {"units": {"CASE": "CS"}},
            "columns": {
                "at": {"field": "envelope.occurred_at", "type": "datetime"},
                "qty": {"field": "quantity.value", "type": "decimal"},
                "n": {"field": "n", "type": "int"},
                "unit": {"field": "quantity.uom", "codes": "units"},
                "item": "item_id",
                "expiry": {"field": "expiry_date", "type": "date", "required": False},
            },
        },
        name="typed",
        source="typed.yaml",
    )


def test_typed_cells_are_taken_as_they_are() -> None:
    row = {"at": dt.datetime(2026, 11, 3, 9, 0), "qty": Decimal("2.500"), "n": Decimal(3),
           "unit": "case", "item": 1234, "expiry": dt.datetime(2027, 1, 31, 0, 0)}  # fmt: skip
    event = map_row(typed_mapping(), row)
    assert event["envelope"]["occurred_at"] == dt.datetime(2026, 11, 3, 8, 0, tzinfo=dt.UTC)
    assert event["quantity"] == {"value": Decimal("2.500"), "uom": "CS"}
    assert (event["n"], event["item_id"], event["expiry_date"]) == (3, "1234", dt.date(2027, 1, 31))


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [("qty", True, "bad_type"), ("qty", dt.date(2026, 1, 1), "bad_type"),
     ("n", Decimal("2.5"), "bad_type"), ("at", 17, "bad_type"), ("unit", 7, "unknown_code"),
     ("qty", float("nan"), "bad_type"), ("qty", None, "missing")],
)  # fmt: skip
def test_a_typed_cell_its_column_cannot_hold_is_a_line_error(
    column: str, value: object, reason: str
) -> None:
    row = {"at": T0, "qty": Decimal(1), "n": 1, "unit": "CASE", "item": "I", column: value}
    with pytest.raises(LineError) as caught:
        map_row(typed_mapping(), row)
    assert caught.value.reason == reason
    assert caught.value.message.startswith(f"{column}: ")
