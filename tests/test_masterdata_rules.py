"""The pure master-data rules: unit conversion (property tests), delegation, newest version."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from supplybus.consumers.masterdata.approvers import Approver, Delegation, acting_approver
from supplybus.consumers.masterdata.processor import newest
from supplybus.consumers.masterdata.readmodels import check_item
from supplybus.consumers.masterdata.units import LIMIT, ItemUnits, item_units
from supplybus.errors import BusinessRuleError

UNITS = ("EA", "BX", "CS", "PK")

#: decimal(12,3) values: factors > 0, quantities of either sign.
#: Pack sizes as they are (mostly whole multiples) and arbitrary ones (mostly inexact).
factors = st.one_of(
    st.sampled_from([Decimal(f) for f in ("0.5", "0.25", "2", "10", "12", "24", "100", "1000")]),
    st.decimals(min_value=Decimal("0.001"), max_value=Decimal(100_000), places=3),
)
quantities = st.decimals(min_value=Decimal(-1_000_000), max_value=Decimal(1_000_000), places=3)


@st.composite
def items(draw: st.DrawFn) -> ItemUnits:
    packs = [(u, draw(factors)) for u in UNITS[1:] if draw(st.booleans())]
    return item_units("ITEM-1", "EA", packs)


def _convert(units: ItemUnits, q: Decimal, a: str, b: str) -> Decimal | None:
    try:
        return units.convert(q, a, b)
    except BusinessRuleError:
        return None


def test_case_box_each() -> None:
    units = item_units("ITEM-7", "EA", [("BX", Decimal(10)), ("CS", Decimal(100))])
    assert units.convert(Decimal(1), "CS", "BX") == Decimal(10)
    assert units.convert(Decimal(3), "CS", "EA") == Decimal(300)
    assert units.convert(Decimal(25), "EA", "CS") == Decimal("0.25")
    assert units.convert(Decimal("2.5"), "BX", "BX") == Decimal("2.5")


def test_an_unknown_unit_is_refused_naming_item_and_unit() -> None:
    units = item_units("ITEM-7", "EA", [("BX", Decimal(10))])
    with pytest.raises(BusinessRuleError, match=r"item ITEM-7 has no unit 'CS' \(known: BX, EA\)"):
        units.convert(Decimal(1), "CS", "EA")


def test_an_inexact_conversion_is_refused_not_rounded() -> None:
    units = item_units("ITEM-7", "EA", [("BX", Decimal(3))])
    with pytest.raises(BusinessRuleError, match=r"ITEM-7: 1 EA is about 0.333333 BX, not exact"):
        units.convert(Decimal(1), "EA", "BX")


@pytest.mark.parametrize(
    ("conversions", "message"),
    [
        ([("BX", Decimal(0))], "unit BX has factor 0; expected > 0"),
        ([("EA", Decimal(2))], "base unit EA has factor 2; expected 1"),
        ([("BX", Decimal(10)), ("BX", Decimal(12))], "unit BX listed with factors 10 and 12"),
    ],
)
def test_bad_unit_declarations_are_refused(
    conversions: list[tuple[str, Decimal]], message: str
) -> None:
    with pytest.raises(BusinessRuleError, match=message):
        item_units("ITEM-7", "EA", conversions)


@given(items(), quantities, st.sampled_from(UNITS), st.sampled_from(UNITS))
def test_round_trips_are_exact_and_within_the_scale(
    units: ItemUnits, q: Decimal, a: str, b: str
) -> None:
    assume(a in units.factors and b in units.factors)
    there = _convert(units, q, a, b)
    if there is None:
        return
    assert there.as_tuple().exponent == -3 and abs(there) < LIMIT  # decimal(12,3)
    assert there == q * units.factors[a] / units.factors[b]  # exact, nothing rounded
    assert units.convert(there, b, a) == q


@given(items(), quantities, st.sampled_from(UNITS), st.sampled_from(UNITS), st.sampled_from(UNITS))
def test_conversions_compose(units: ItemUnits, q: Decimal, a: str, b: str, c: str) -> None:
    assume({a, b, c} <= units.factors.keys())
    via = _convert(units, q, a, b)
    assume(via is not None)
    assert via is not None
    then = _convert(units, via, b, c)
    assume(then is not None)
    assert then == units.convert(q, a, c)


def _approver(aid: str, *delegations: Delegation) -> Approver:
    return Approver(aid, aid, "ENT-1", frozenset({"DIRECTOR"}), Decimal(25000), "USD",
                    delegations=delegations)  # fmt: skip


def test_acting_approver_follows_delegations_inclusive_of_both_days() -> None:
    first, last = dt.date(2026, 12, 1), dt.date(2026, 12, 14)
    book = {
        "A": _approver("A", Delegation("B", first, last)),
        "B": _approver("B", Delegation("C", last, last)),
        "C": _approver("C"),
    }
    assert acting_approver(book, "A", first - dt.timedelta(days=1)).approver_id == "A"
    assert acting_approver(book, "A", first).approver_id == "B"
    assert acting_approver(book, "A", last).approver_id == "C"  # B is away that day too
    assert acting_approver(book, "A", last + dt.timedelta(days=1)).approver_id == "A"


def test_acting_approver_refuses_unknown_ids_and_loops() -> None:
    day = dt.date(2026, 12, 5)
    loop = Delegation("A", day, day)
    book = {"A": _approver("A", Delegation("B", day, day)), "B": _approver("B", loop)}
    with pytest.raises(BusinessRuleError, match="approver X is not in the approver master"):
        acting_approver(book, "X", day)
    with pytest.raises(BusinessRuleError, match="delegations on 2026-12-05 loop: A -> B -> A"):
        acting_approver(book, "A", day)
    book["B"] = _approver("B", Delegation("Z", day, day))
    with pytest.raises(BusinessRuleError, match="delegate of approver A: Z is not in"):
        acting_approver(book, "A", day)


def _version(key: str, at: int, event_id: str) -> dict[str, object]:
    occurred = dt.datetime(2026, 11, 1, tzinfo=dt.UTC) + dt.timedelta(hours=at)
    return {"envelope": {"occurred_at": occurred, "event_id": event_id}, "k": key, "at": at}


@given(st.permutations(range(6)))
def test_newest_keeps_the_latest_version_per_key_whatever_the_order(order: list[int]) -> None:
    versions = [_version(f"K{i % 2}", i // 2, f"{i:08x}-0000-4000-8000-000000000000")
                for i in range(6)]  # fmt: skip
    versions.append(_version("K1", 2, "ffffffff-0000-4000-8000-000000000000"))  # a tie: id wins
    kept = newest([versions[i] for i in order] + [versions[-1]], "k")
    assert {r["k"]: r["envelope"]["event_id"] for r in kept} == {  # type: ignore[index]
        "K0": "00000004-0000-4000-8000-000000000000",
        "K1": "ffffffff-0000-4000-8000-000000000000",
    }


def test_a_contract_price_in_a_unit_the_item_lacks_is_refused() -> None:
    record = {
        "item_id": "ITEM-9",
        "base_uom": "EA",
        "uom_conversions": [{"uom": "BX", "factor": Decimal(10)}],
        "contract_prices": [{"supplier_id": "SUP-1", "uom": "CS"}],
    }
    with pytest.raises(BusinessRuleError, match="ITEM-9: contract price of supplier SUP-1 is per"):
        check_item(record)
