"""Validation: schema conformance and domain checks name the field path (pure functions)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supplybus.errors import ValidationError
from supplybus.events.domain_checks import gtin_check_digit, gtin_is_valid
from supplybus.events.samples import sample_record
from supplybus.events.schema_store import default_store
from supplybus.events.validation import validate
from tests.strategies import gtins, stock_movements

STORE = default_store()


def _errors(event_type: str, record: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        validate(STORE.latest(event_type), record)
    return [str(e) for e in info.value.errors]


def _requisition() -> dict[str, Any]:
    return sample_record(STORE.latest("RequisitionSubmitted"))


def test_negative_quantity_names_the_line() -> None:
    record = _requisition()
    record["lines"] = [record["lines"][0]] * 3
    record["lines"][2] = {**record["lines"][0], "quantity": {"value": "-3", "uom": "EA"}}
    assert _errors("RequisitionSubmitted", record) == [
        "lines[2].quantity.value: must be > 0, got -3.000"
    ]


def test_every_error_is_reported_at_once() -> None:
    record = _requisition()
    record["urgency"] = "SOON"
    record["total"] = {"amount": "1.23456", "currency": "USD"}
    record["lines"][0]["quantity"] = {"value": "2", "uom": "BUCKET"}
    del record["cost_center_id"]
    errors = _errors("RequisitionSubmitted", record)
    assert "urgency: one of STAT, URGENT, ROUTINE, got 'SOON'" in errors
    assert "total.amount: a decimal with at most 4 decimal places, got '1.23456'" in errors
    assert "cost_center_id: a value (required field)" in errors
    record["urgency"] = "STAT"
    record["total"] = {"amount": "10", "currency": "USD"}
    record["cost_center_id"] = "CC-1"
    assert _errors("RequisitionSubmitted", record) == [
        "lines[0].quantity.uom: a known unit of measure (EA, BX, CS, ...), got 'BUCKET'"
    ]


def test_currency_and_gtin_and_unknown_field() -> None:
    item = sample_record(STORE.latest("ItemUpserted"))
    item["gtin"] = "00012345678906"[:-1] + "0"
    item["colour"] = "red"
    item["contract_prices"][0]["price"]["currency"] = "usd"
    errors = _errors("ItemUpserted", item)
    assert any(e.startswith("gtin: a GS1 GTIN") for e in errors)
    assert "colour: no such field in the schema, got 'red'" in errors
    assert "contract_prices[0].price.currency: an ISO 4217 currency code, got 'usd'" in errors


def test_json_values_are_converted() -> None:
    record = _requisition()
    record["need_by"] = "2026-12-24"
    record["envelope"]["occurred_at"] = "2026-11-25T10:00:00Z"
    record["total"] = {"amount": "12.5", "currency": "USD"}
    conformed = validate(STORE.latest("RequisitionSubmitted"), record)
    assert conformed["total"]["amount"] == Decimal("12.5000")
    assert conformed["need_by"].isoformat() == "2026-12-24"
    assert conformed["envelope"]["occurred_at"].utcoffset().total_seconds() == 0


def test_naive_timestamp_and_bad_date_are_refused() -> None:
    record = _requisition()
    record["envelope"]["occurred_at"] = "2026-11-25T10:00:00"
    record["need_by"] = "24/12/2026"
    errors = _errors("RequisitionSubmitted", record)
    assert (
        "envelope.occurred_at: an instant with a time zone (Z or +hh:mm), got '2026-11-25T10:00:00'"
        in errors
    )
    assert "need_by: a date YYYY-MM-DD, got '24/12/2026'" in errors


def test_adjustment_may_be_negative_but_issue_may_not() -> None:
    movement = sample_record(STORE.latest("StockMovement"), kind="ADJUSTMENT")
    movement["quantity"] = {"value": "-2", "uom": "EA"}
    validate(STORE.latest("StockMovement"), movement)
    movement["kind"] = "ISSUE"
    assert _errors("StockMovement", movement) == ["quantity.value: must be > 0, got -2.000"]


@given(gtins())
def test_generated_gtins_are_valid(gtin: str) -> None:
    assert gtin_is_valid(gtin)


@given(gtins(), st.integers(min_value=1, max_value=9))
def test_any_wrong_check_digit_is_caught(gtin: str, delta: int) -> None:
    wrong = gtin[:-1] + str((int(gtin[-1]) + delta) % 10)
    assert not gtin_is_valid(wrong)


def test_known_gtins() -> None:
    assert gtin_is_valid("00012345600012")
    assert gtin_is_valid("4006381333931")  # a GTIN-13 from GS1's own examples
    assert not gtin_is_valid("4006381333932")
    assert gtin_check_digit("400638133393") == "1"


@settings(max_examples=150, deadline=None)
@given(stock_movements())
def test_generated_stock_movements_pass(record: dict[str, Any]) -> None:
    validate(STORE.latest("StockMovement"), record)


@settings(max_examples=150, deadline=None)
@given(
    stock_movements(),
    st.decimals(max_value=0, places=3, allow_nan=False, allow_infinity=False, min_value=-(10**8)),
)
def test_non_positive_quantities_are_refused(record: dict[str, Any], bad: Decimal) -> None:
    record["quantity"]["value"] = bad
    errors = _errors("StockMovement", record)
    assert errors == [f"quantity.value: must be > 0, got {bad.quantize(Decimal('0.001'))}"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(STORE.event_types), st.data())
def test_any_json_in_any_field_gives_field_errors_never_a_crash(
    event_type: str, data: st.DataObject
) -> None:
    record = sample_record(STORE.latest(event_type))
    field = data.draw(st.sampled_from(sorted(record)))
    record[field] = data.draw(json_values)
    try:
        validate(STORE.latest(event_type), record)
    except ValidationError as exc:
        assert exc.errors and all(str(e) for e in exc.errors)


def test_a_malformed_shape_is_a_field_error_not_a_crash_of_the_domain_checks() -> None:
    record = _requisition()
    record["lines"][0]["quantity"] = {"value": "2", "uom": []}  # found by the webhook fuzzing
    errors = _errors("RequisitionSubmitted", record)
    assert errors and all(e.startswith("lines[0].quantity.uom") for e in errors), errors
