"""Receiving rules (pure): the over-receipt allowance, unit conversion to the PO line's unit,
lots, damage, wrong items; properties over sequences of receipts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supplybus.consumers.inventory.receipt_rules import (
    ALLOWANCE_PERCENT,
    ItemRules,
    PoLine,
    ReceivedLine,
    acceptance_cap,
    allowance,
    assess,
    assess_receipt,
    shortfall,
)
from supplybus.consumers.masterdata.units import item_units
from supplybus.errors import BusinessRuleError

GLOVES = ItemRules(
    "ITM-GLOVE", "MED_SURG", False, item_units("ITM-GLOVE", "EA", [("BX", Decimal(10)),
                                                                  ("CS", Decimal(100))])
)  # fmt: skip
CEFAZOLIN = ItemRules(
    "ITM-CEF", "PHARMACY", True, item_units("ITM-CEF", "EA", [("BX", Decimal(25))])
)
EXPIRY = dt.date(2030, 1, 31)


def po_line(item: ItemRules = GLOVES, ordered: str = "10", uom: str = "BX") -> PoLine:
    return PoLine(1, item.item_id, Decimal(ordered), uom)


def received(
    qty: str, uom: str = "BX", *, item: str = "ITM-GLOVE", rejected: str = "0",
    reason: str | None = None, lot: str | None = None, expiry: dt.date | None = None,
) -> ReceivedLine:  # fmt: skip
    return ReceivedLine(1, 1, item, Decimal(qty), uom, Decimal(rejected), uom, reason, lot, expiry)


def kinds(outcome_and_line: tuple[object, PoLine]) -> list[str]:
    outcome = outcome_and_line[0]
    return [d.kind for d in outcome.discrepancies]  # type: ignore[attr-defined]


def test_allowance_table_and_cap() -> None:
    assert allowance("MED_SURG") == 10 and allowance("LAB") == 5
    assert all(allowance(c) == 0 for c in ("PHARMACY", "CONTROLLED_SUBSTANCE", "IMPLANT"))
    assert allowance("SOMETHING_NEW") == 0
    assert acceptance_cap(Decimal(10), Decimal(10)) == Decimal("11.000")
    # rounded down: 3.333 * 1.05 = 3.49965 -> never more than the exact allowance
    assert acceptance_cap(Decimal("3.333"), Decimal(5)) == Decimal("3.499")


def test_within_allowance_is_accepted_without_discrepancy() -> None:
    outcome, after = assess(received("11"), po_line(), GLOVES)
    assert outcome.accepted == 11 and not outcome.discrepancies
    assert (after.received, after.accepted) == (11, 11)


def test_beyond_allowance_the_excess_is_over_and_not_accepted() -> None:
    outcome, after = assess(received("12"), po_line(), GLOVES)
    assert outcome.accepted == Decimal("11.000") and after.accepted == 11
    (over,) = outcome.discrepancies
    assert (over.kind, over.expected, over.actual, over.expected_uom) == ("OVER", 10, 12, "BX")
    assert "allowance 10%" in over.note and "1.000 BX not accepted" in over.note


def test_allowance_is_cumulative_across_receipts() -> None:
    first, line = assess(received("6"), po_line(), GLOVES)
    second, line = assess(received("6"), line, GLOVES)
    assert (first.accepted, second.accepted, line.accepted) == (6, 5, 11)
    assert [d.kind for d in second.discrepancies] == ["OVER"]
    assert second.discrepancies[0].actual == 12
    third, line = assess(received("1"), line, GLOVES)
    assert third.accepted == 0 and line.received == 13 and line.accepted == 11


def test_zero_allowance_category_accepts_the_ordered_quantity_only() -> None:
    line = po_line(CEFAZOLIN, "4", "BX")
    outcome, after = assess(received("5", item="ITM-CEF", lot="L1", expiry=EXPIRY), line, CEFAZOLIN)
    assert outcome.accepted == 4 and kinds((outcome, after)) == ["OVER"]


def test_units_convert_to_the_po_line_unit_exactly() -> None:
    outcome, _ = assess(received("1", "CS"), po_line(), GLOVES)  # 1 CS = 10 BX
    assert (outcome.uom, outcome.received, outcome.accepted) == ("BX", 10, 10)
    eaches, _ = assess(received("25", "EA"), po_line(), GLOVES)  # 2.5 BX
    assert eaches.accepted == Decimal("2.500")


def test_a_unit_without_conversion_is_a_discrepancy_never_the_po_unit() -> None:
    outcome, after = assess(received("3", "PK"), po_line(), GLOVES)
    assert outcome.accepted == 0 and outcome.received is None and after == po_line()
    (wrong,) = outcome.discrepancies
    assert wrong.kind == "WRONG_ITEM" and (wrong.actual, wrong.actual_uom) == (3, "PK")
    assert "has no unit 'PK'" in wrong.note and "not accepted" in wrong.note


def test_an_inexact_conversion_is_refused_as_a_discrepancy() -> None:
    line = PoLine(1, "ITM-GLOVE", Decimal(5), "CS")
    outcome, _ = assess(received("1", "EA"), line, GLOVES)  # 0.01 CS: exact; 0.001 CS ok
    assert outcome.accepted == Decimal("0.010")
    tiny = PoLine(1, "ITM-GLOVE", Decimal(5), "CS")
    odd = ReceivedLine(1, 1, "ITM-GLOVE", Decimal("0.001"), "BX", Decimal(0), "BX")
    refused, _ = assess(odd, tiny, GLOVES)  # 0.0001 CS: not exact at 3 places
    assert refused.accepted == 0 and refused.discrepancies[0].kind == "WRONG_ITEM"


def test_damaged_is_reported_and_never_accepted() -> None:
    outcome, after = assess(received("8", rejected="2", reason="crushed"), po_line(), GLOVES)
    assert outcome.accepted == 8 and after.rejected == 2
    (damaged,) = outcome.discrepancies
    assert (damaged.kind, damaged.actual, damaged.note) == ("DAMAGED", 2, "crushed")


def test_missing_lot_or_expiry_is_not_accepted() -> None:
    line = po_line(CEFAZOLIN, "4")
    no_lot, after = assess(received("2", item="ITM-CEF", expiry=EXPIRY), line, CEFAZOLIN)
    assert no_lot.accepted == 0 and kinds((no_lot, after)) == ["MISSING_LOT"]
    assert after.received == 2 and after.accepted == 0
    no_expiry, _ = assess(received("2", item="ITM-CEF", lot="L1"), line, CEFAZOLIN)
    assert "without expiry" in no_expiry.discrepancies[0].note
    ok, _ = assess(received("2", item="ITM-CEF", lot="L1", expiry=EXPIRY), line, CEFAZOLIN)
    assert ok.accepted == 2 and not ok.discrepancies


def test_wrong_item_and_unknown_line() -> None:
    outcome, after = assess(received("2", item="ITM-OTHER"), po_line(), GLOVES)
    assert outcome.accepted == 0 and kinds((outcome, after)) == ["WRONG_ITEM"]
    assert "orders ITM-GLOVE" in outcome.discrepancies[0].note
    with pytest.raises(BusinessRuleError, match="PO line 1"):
        assess(received("2"), None, GLOVES)
    with pytest.raises(BusinessRuleError, match="not in the item master"):
        assess(received("2"), po_line(), None)


def test_cancelled_po_accepts_nothing() -> None:
    outcome, after = assess(received("2"), po_line(), GLOVES, cancelled="supplier closed")
    assert outcome.accepted == 0 and after.received == 2 and after.accepted == 0
    (over,) = outcome.discrepancies
    assert over.kind == "OVER" and "cancelled (supplier closed)" in over.note


def test_two_lines_of_one_po_line_in_one_receipt_share_the_allowance() -> None:
    lines = [
        ReceivedLine(1, 1, "ITM-GLOVE", Decimal(7), "BX", Decimal(0), "BX"),
        ReceivedLine(2, 1, "ITM-GLOVE", Decimal(7), "BX", Decimal(0), "BX"),
    ]
    outcomes, after = assess_receipt(lines, {1: po_line()}, {"ITM-GLOVE": GLOVES})
    assert [o.accepted for o in outcomes] == [7, 4] and after[1].accepted == 11
    assert shortfall(after[1]) == 0 and shortfall(po_line()) == 10


receipts = st.lists(
    st.tuples(
        st.decimals(min_value=Decimal("0.001"), max_value=Decimal(500), places=3),
        st.sampled_from(["EA", "BX", "CS"]),
        st.booleans(),  # with lot and expiry
    ),
    min_size=1,
    max_size=12,
)


@given(
    st.decimals(min_value=Decimal("0.001"), max_value=Decimal(1000), places=3),
    st.sampled_from(sorted(ALLOWANCE_PERCENT)),
    st.booleans(),
    receipts,
)
def test_cumulative_acceptance_never_exceeds_the_allowance(
    ordered: Decimal, category: str, lot_controlled: bool,
    deliveries: list[tuple[Decimal, str, bool]],
) -> None:  # fmt: skip
    """Over any sequence of receipts: accepted never above ordered * (1 + allowance), every
    converted quantity either accepted or reported (OVER, MISSING_LOT), and as much accepted
    as the cap allows (the good, lot-complete quantity up to the cap)."""
    item = ItemRules("ITM-X", category, lot_controlled, GLOVES.units)
    line = PoLine(1, "ITM-X", ordered, "BX")
    cap = acceptance_cap(ordered, allowance(category))
    acceptable = Decimal(0)
    for n, (qty, uom, with_lot) in enumerate(deliveries, start=1):
        got = ReceivedLine(n, 1, "ITM-X", qty, uom, Decimal(0), uom, None,
                           "L" if with_lot else None, EXPIRY if with_lot else None)  # fmt: skip
        outcome, line = assess(got, line, item)
        assert outcome.accepted >= 0 and line.accepted <= cap
        if outcome.received is None:
            assert outcome.accepted == 0 and outcome.discrepancies[0].kind == "WRONG_ITEM"
            continue
        if with_lot or not lot_controlled:
            acceptable += outcome.received
        if outcome.accepted < outcome.received:
            assert {d.kind for d in outcome.discrepancies} <= {"OVER", "MISSING_LOT"}
            assert outcome.discrepancies
    assert line.accepted == min(acceptable, cap)
    if allowance(category) == 0:
        assert line.accepted <= ordered


@given(st.decimals(min_value=Decimal("0.001"), max_value=Decimal(9999), places=3),
       st.sampled_from(["EA", "BX", "CS"]), st.sampled_from(["EA", "BX", "CS"]))  # fmt: skip
def test_conversion_to_the_po_unit_round_trips(qty: Decimal, uom: str, po_uom: str) -> None:
    """A quantity received in any unit is accepted in the PO unit exactly or not at all; what
    is accepted converts back to what was received, with nothing lost."""
    line = PoLine(1, "ITM-GLOVE", Decimal("999999"), po_uom)
    outcome, _ = assess(received(str(qty), uom), line, GLOVES)
    if outcome.received is None:
        exact = qty * GLOVES.units.factor(uom) / GLOVES.units.factor(po_uom)
        assert exact != exact.quantize(Decimal("0.001"))
        return
    assert GLOVES.units.convert(outcome.accepted, po_uom, uom) == qty
