"""The three-way match rules (consumers/finance/matching.py), pure: tolerance is the tighter of
percent and absolute and symmetric, quantities against receipts, duplicates, the order of
the decisions, the overrun; decimals only."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supplybus.consumers.finance.matching import (
    DEFAULT,
    Invoice,
    InvoiceLine,
    Known,
    Order,
    PoLine,
    Tolerance,
    amount,
    evaluate,
    overrun,
    price_allowance,
    price_within,
    quantity_within,
    same_number,
    suspected_duplicate,
    tolerance_for,
)
from supplybus.errors import BusinessRuleError

EAST = tolerance_for("ENT-EAST")
AT = dt.datetime(2026, 11, 3, 9, tzinfo=dt.UTC)
money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999"), places=2)
percents = st.decimals(min_value=Decimal(0), max_value=Decimal(50), places=1)


def test_the_rules_are_data() -> None:
    assert (EAST.percent, EAST.absolute, EAST.currency) == (Decimal(2), Decimal(50), "USD")
    assert tolerance_for("ENT-ELSEWHERE") == DEFAULT
    assert (DEFAULT.percent, DEFAULT.absolute) == (Decimal(5), Decimal(100))


@given(expected=money, percent=percents, absolute=money)
def test_the_allowance_is_the_tighter_of_percent_and_absolute(
    expected: Decimal, percent: Decimal, absolute: Decimal
) -> None:
    tol = Tolerance(percent, absolute, "USD")
    allowed = price_allowance(tol, expected, "USD")
    assert allowed == min(expected * percent / 100, absolute)
    assert isinstance(allowed, Decimal)
    # in another currency the absolute amount means nothing: the percentage alone
    assert price_allowance(tol, expected, "EUR") == expected * percent / 100


@given(expected=money, delta=money, percent=percents, absolute=money)
def test_price_tolerance_is_symmetric(
    expected: Decimal, delta: Decimal, percent: Decimal, absolute: Decimal
) -> None:
    tol = Tolerance(percent, absolute, "USD")
    above = price_within(tol, expected, expected + delta, "USD")
    below = price_within(tol, expected, expected - delta, "USD")
    assert above == below == (delta <= price_allowance(tol, expected, "USD"))
    assert price_within(tol, expected, expected, "USD")


def test_price_tolerance_at_the_edge() -> None:
    # 2 % of 1,000.00 is 20.00 (tighter than 50.00): 20.00 passes, 20.0001 does not
    assert price_within(EAST, Decimal(1000), Decimal("1020.00"), "USD")
    assert not price_within(EAST, Decimal(1000), Decimal("1020.0001"), "USD")
    # 2 % of 10,000.00 is 200.00: the absolute 50.00 is tighter
    assert price_within(EAST, Decimal(10_000), Decimal("10050"), "USD")
    assert not price_within(EAST, Decimal(10_000), Decimal("10050.01"), "USD")


@given(received=st.decimals(min_value=Decimal(0), max_value=Decimal(10**6), places=3),
       extra=st.decimals(min_value=Decimal(0), max_value=Decimal(10**6), places=3),
       percent=percents)  # fmt: skip
def test_quantity_within_received_plus_tolerance(
    received: Decimal, extra: Decimal, percent: Decimal
) -> None:
    tol = Tolerance(Decimal(0), Decimal(0), "USD", percent)
    limit = received + received * percent / 100
    assert quantity_within(tol, received, received)
    assert quantity_within(tol, min(received + extra, limit), received)
    assert quantity_within(tol, received + extra, received) == (received + extra <= limit)


def test_amounts_round_half_up_to_four_places() -> None:
    assert amount(Decimal("3"), Decimal("0.33335")) == Decimal("1.0001")
    assert amount(Decimal("1.5"), Decimal("2.25")) == Decimal("3.3750")


@given(committed=money, before=money, now=money)
def test_overrun_commits_exactly_what_goes_beyond(
    committed: Decimal, before: Decimal, now: Decimal
) -> None:
    extra = overrun(committed, before, now)
    assert 0 <= extra <= now
    # after it, what is committed minus what is actualized never goes below zero
    assert committed + overrun(committed, Decimal(0), before) + extra >= before + now
    # in two steps or one: the same overrun in all
    assert overrun(committed, Decimal(0), before) + extra == overrun(
        committed, Decimal(0), before + now
    )


def test_invoice_numbers_compare_without_case_spaces_or_punctuation() -> None:
    assert same_number("INV-0042", "inv 0042")
    assert not same_number("INV-0042", "INV-042")


# --- evaluate ---------------------------------------------------------------------------

PO = Order(
    "PO-1", "SUP-1", "USD", False,
    {1: PoLine(1, "ITEM-1", Decimal(10), "BX", Decimal("100.00"), "CC-1"),
     2: PoLine(2, "ITEM-2", Decimal(5), "EA", Decimal("8.00"), "CC-2")},
)  # fmt: skip
#: ITEM-1: 1 BX = 10 EA
FACTORS = {("ITEM-1", "BX"): Decimal(10), ("ITEM-1", "EA"): Decimal(1),
           ("ITEM-2", "EA"): Decimal(1)}  # fmt: skip


def convert(item: str, quantity: Decimal, from_uom: str, to_uom: str) -> Decimal:
    try:
        return quantity * FACTORS[(item, from_uom)] / FACTORS[(item, to_uom)]
    except KeyError:
        raise BusinessRuleError(f"item {item} has no unit {from_uom}") from None


def invoice(*lines: tuple[int, str, str, str, str], **kw: object) -> Invoice:
    fields: dict[str, object] = {
        "invoice_id": "INV-1", "invoice_number": "A-1", "supplier_id": "SUP-1", "po_id": "PO-1",
        "invoice_date": AT.date(), "total": Decimal(0), "currency": "USD", "received_at": AT,
    }  # fmt: skip
    fields.update(kw)
    built = tuple(
        InvoiceLine(i, n, item, Decimal(q), uom, Decimal(p), str(fields["currency"]))
        for i, (n, item, q, uom, p) in enumerate(lines, start=1)
    )
    return Invoice(lines=built, **fields)  # type: ignore[arg-type]


FULL = {1: Decimal(10), 2: Decimal(5)}


def judge(inv: Invoice, received: dict[int, Decimal] = FULL, **kw: object) -> tuple[str, list[str]]:
    v = evaluate(inv, kw.get("order", PO), received, {}, kw.get("others", []), convert, EAST)  # type: ignore[arg-type]
    return v.status, [r.code for r in v.reasons]


def test_a_clean_invoice_matches_with_its_actuals_per_cost_center() -> None:
    inv = invoice((1, "ITEM-1", "10", "BX", "100.00"), (2, "ITEM-2", "5", "EA", "8.00"))
    v = evaluate(inv, PO, FULL, {}, [], convert, EAST)
    assert (v.status, v.tolerance_applied) == ("MATCHED", False)
    assert v.actuals == {"CC-1": Decimal("1000.0000"), "CC-2": Decimal("40.0000")}


def test_another_unit_is_converted_before_comparing() -> None:
    # 100 EA at 10.00 is 10 BX at 100.00
    inv = invoice((1, "ITEM-1", "100", "EA", "10.00"))
    assert judge(inv) == ("MATCHED", [])
    assert judge(invoice((1, "ITEM-1", "1", "CS", "1.00")))[1] == ["QTY_VARIANCE"]


def test_what_fails_against_the_po_is_an_exception() -> None:
    assert judge(invoice((1, "ITEM-1", "10", "BX", "103.00"))) == ("EXCEPTION", ["PRICE_VARIANCE"])
    assert judge(invoice((1, "ITEM-1", "10", "BX", "97.00"))) == ("EXCEPTION", ["PRICE_VARIANCE"])
    assert judge(invoice((1, "ITEM-1", "10", "BX", "101.00")))[0] == "MATCHED"  # within 2 %
    assert judge(invoice((3, "ITEM-1", "1", "BX", "1"))) == ("EXCEPTION", ["NO_PO"])
    assert judge(invoice((1, "ITEM-2", "1", "EA", "8"))) == ("EXCEPTION", ["NO_PO"])
    assert judge(invoice((1, "ITEM-1", "10", "BX", "100"), currency="EUR")) == (
        "EXCEPTION", ["CURRENCY"],
    )  # fmt: skip
    cancelled = Order("PO-1", "SUP-1", "USD", True, PO.lines)
    assert judge(invoice((1, "ITEM-1", "1", "BX", "100")), order=cancelled) == (
        "EXCEPTION", ["NO_PO"],
    )  # fmt: skip


def test_what_waits_for_receipts_or_the_po() -> None:
    inv = invoice((1, "ITEM-1", "10", "BX", "100.00"))
    assert judge(inv, order=None) == ("WAITING", ["NO_PO"])
    assert judge(inv, {}) == ("WAITING", ["NO_RECEIPT"])
    assert judge(inv, {1: Decimal(4)}) == ("WAITING", ["QTY_VARIANCE"])
    # a price variance is an exception whatever was received: the receipts' timing never
    # changes the outcome
    bad = invoice((1, "ITEM-1", "10", "BX", "150.00"))
    assert judge(bad, {}) == judge(bad, FULL) == ("EXCEPTION", ["PRICE_VARIANCE"])


def test_invoiced_before_counts_against_what_was_received() -> None:
    inv = invoice((1, "ITEM-1", "6", "BX", "100.00"))
    assert evaluate(inv, PO, FULL, {1: Decimal(4)}, [], convert, EAST).status == "MATCHED"
    assert evaluate(inv, PO, FULL, {1: Decimal(5)}, [], convert, EAST).status == "WAITING"


def test_duplicates() -> None:
    first = invoice((1, "ITEM-1", "10", "BX", "100.00"), total=Decimal(1000))
    again = invoice((1, "ITEM-1", "10", "BX", "100.00"), invoice_id="INV-2",
                    invoice_number="a 1", received_at=AT + dt.timedelta(hours=1),
                    total=Decimal(1000))  # fmt: skip
    v = evaluate(again, PO, FULL, {}, [Known(first, "MATCHED")], convert, EAST)
    assert (v.status, v.duplicate_of) == ("EXCEPTION", "INV-1")
    # the first one never counts as a duplicate of the later one, nor does a rejected one
    assert judge(first, others=[Known(again, "EXCEPTION")])[0] == "MATCHED"
    assert judge(again, others=[Known(first, "REJECTED")])[0] == "MATCHED"
    # same PO, date and total under another number: suspected (a hold), not an exception
    rekeyed = invoice((1, "ITEM-1", "10", "BX", "100.00"), invoice_id="INV-3",
                      invoice_number="B-9", received_at=AT + dt.timedelta(hours=2),
                      total=Decimal(1000))  # fmt: skip
    assert judge(rekeyed, others=[Known(first, "MATCHED")])[0] == "MATCHED"
    found = suspected_duplicate(rekeyed, [Known(first, "MATCHED")])
    assert found is not None and found.invoice_id == "INV-1"
    assert suspected_duplicate(first, [Known(rekeyed, "MATCHED")]) is not None
    assert suspected_duplicate(first, [Known(rekeyed, "WAITING")]) is None


@pytest.mark.parametrize("quantity", ["10", "10.000", "100"])
def test_no_float_anywhere(quantity: str) -> None:
    v = evaluate(invoice((1, "ITEM-1", quantity, "BX", "100.00")), PO,
                 {1: Decimal(1000)}, {}, [], convert, DEFAULT)  # fmt: skip
    assert all(isinstance(a, Decimal) for a in v.actuals.values())
