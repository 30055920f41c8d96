"""The spend rules (consumers/finance/spend.py): the arithmetic, the over-release and currency
checks, periods; unit tests and hypothesis properties."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supplybus.consumers.finance.spend import (
    KINDS,
    Entry,
    Kind,
    Spend,
    available,
    check,
    entry_of,
    is_period,
    spend_of,
    totals,
    used_percent,
)
from supplybus.errors import BusinessRuleError
from supplybus.events.envelope import new_envelope


def entry(
    kind: Kind,
    amount: str | Decimal,
    reference: str = "PO-1",
    center: str = "CC-1",
    period: str = "2026-11",
    currency: str = "USD",
) -> Entry:
    return Entry(
        str(uuid.uuid4()), kind, center, period, Decimal(amount), currency,
        "PURCHASE_ORDER", reference,
    )  # fmt: skip


amounts = st.decimals(min_value=0, max_value=10**9, places=4, allow_nan=False)
kinds = st.sampled_from(["COMMITTED", "RELEASED", "ACTUALIZED"])
entries = st.lists(
    st.builds(
        entry,
        kinds,
        amounts,
        st.sampled_from(["PO-1", "PO-2"]),
        st.sampled_from(["CC-1", "CC-2"]),
        st.sampled_from(["2026-11", "2026-12"]),
    ),
    max_size=30,
)


def test_actualizing_moves_committed_to_actual() -> None:
    history = [entry("COMMITTED", "100"), entry("ACTUALIZED", "60"), entry("RELEASED", "15")]
    assert spend_of(history) == Spend(Decimal("25"), Decimal("60"))
    assert available(Decimal("1000"), spend_of(history)) == Decimal("915")
    assert used_percent(Decimal("1000"), spend_of(history)) == Decimal("8.5")
    assert used_percent(None, spend_of(history)) is None


def test_releasing_more_than_is_committed_for_the_reference_is_refused() -> None:
    committed = [entry("COMMITTED", "100"), entry("ACTUALIZED", "60")]
    assert check([*committed, entry("RELEASED", "40")], {}, {}) == {
        ("CC-1", "2026-11", "PURCHASE_ORDER", "PO-1"): Decimal("0")
    }
    with pytest.raises(BusinessRuleError) as refused:
        check([*committed, entry("RELEASED", "40.0001")], {}, {})
    assert str(refused.value) == (
        "cannot release 40.0001 USD of PURCHASE_ORDER PO-1 on CC-1 2026-11: "
        "only 40 is committed for it"
    )
    # another reference's commitment does not count, nor the same one in another period
    with pytest.raises(BusinessRuleError, match="PO-2"):
        check([entry("COMMITTED", "100"), entry("RELEASED", "1", reference="PO-2")], {}, {})
    with pytest.raises(BusinessRuleError, match="2026-12"):
        check([entry("COMMITTED", "100"), entry("RELEASED", "1", period="2026-12")], {}, {})
    # what the database holds counts
    po1 = ("CC-1", "2026-11", "PURCHASE_ORDER", "PO-1")
    assert check([entry("RELEASED", "5")], {po1: Decimal("5")}, {}) == {po1: Decimal(0)}


def test_another_currency_than_the_budget_is_refused() -> None:
    with pytest.raises(BusinessRuleError) as refused:
        check([entry("COMMITTED", "1", currency="EUR")], {}, {("CC-1", "2026-11"): "USD"})
    assert str(refused.value) == (
        "committed amount of PURCHASE_ORDER PO-1 is in EUR; cost center CC-1 budgets in USD"
    )
    # without a known currency the account's first entry sets it
    with pytest.raises(BusinessRuleError, match="budgets in USD"):
        check([entry("COMMITTED", "1"), entry("COMMITTED", "1", currency="EUR")], {}, {})


def test_entry_of_a_record_and_a_malformed_period() -> None:
    record = {
        "envelope": new_envelope("BudgetReleased", source_system="t", entity_id="E", actor="u"),
        "cost_center_id": "CC-1",
        "period": "2026-11",
        "amount": {"amount": Decimal("12.5000"), "currency": "USD"},
        "reference_id": "PO-7",
        "reference_type": "PURCHASE_ORDER",
        "reason": "PO_CANCELLED",
    }
    found = entry_of("BudgetReleased", record)
    assert (found.kind, found.amount, found.reason) == ("RELEASED", Decimal("12.5"), "PO_CANCELLED")
    assert found.event_id == record["envelope"]["event_id"]
    with pytest.raises(BusinessRuleError) as refused:
        entry_of("BudgetReleased", {**record, "period": "2026-13"})
    assert "period '2026-13' is not a budget period (expected YYYY-MM" in str(refused.value)


@pytest.mark.parametrize("text", ["2026-11", "1999-01", "2030-12"])
def test_periods(text: str) -> None:
    assert is_period(text)


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-1", "26-11", "2026-11-01", ""])
def test_not_periods(text: str) -> None:
    assert not is_period(text)


@given(entries)
def test_committed_and_actual_are_the_sums_of_the_kinds(history: list[Entry]) -> None:
    def total(kind: str) -> Decimal:
        return sum((e.amount for e in history if e.kind == kind), Decimal(0))

    found = spend_of(history)
    assert found.committed == total("COMMITTED") - total("RELEASED") - total("ACTUALIZED")
    assert found.actual == total("ACTUALIZED")
    assert available(Decimal(10**6), found) == Decimal(10**6) - total("COMMITTED") + total(
        "RELEASED"
    ), "actualizing moves spend, it never changes what is available"


@given(entries, st.randoms())
def test_totals_do_not_depend_on_order_and_add_up(history: list[Entry], rnd: object) -> None:
    shuffled = list(history)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    per_account = totals(history)
    assert totals(shuffled) == per_account
    assert sum(per_account.values(), Spend()) == spend_of(history)
    for account, spend in per_account.items():
        assert spend == spend_of(e for e in history if e.account == account)


@given(entries)
def test_check_accepts_exactly_the_histories_that_never_over_release(
    history: list[Entry],
) -> None:
    def never_over_released() -> bool:
        left: dict[tuple[str, str, str, str], Decimal] = {}
        for e in history:
            now = left.get(e.reference, Decimal(0))
            if e.kind == "RELEASED" and e.amount > now:
                return False
            left[e.reference] = now + (e.amount if e.kind == "COMMITTED" else -e.amount)
        return True

    try:
        after = check(history, {}, {})
    except BusinessRuleError:
        assert not never_over_released()
        return
    assert never_over_released()
    for reference, left in after.items():
        assert left == spend_of(e for e in history if e.reference == reference).committed


@given(amounts, amounts, amounts)
def test_available_and_used_percent(budget: Decimal, committed: Decimal, actual: Decimal) -> None:
    spend = Spend(committed, actual)
    assert available(budget, spend) + spend.used == budget
    percent = used_percent(budget, spend)
    if budget == 0:
        assert percent is None
    else:
        assert percent is not None
        assert abs(percent - spend.used * 100 / budget) <= Decimal("0.05")


@given(st.integers(0, 9999), st.integers(-5, 20))
def test_a_period_is_a_year_and_a_month(year: int, month: int) -> None:
    assert is_period(f"{year:04d}-{month:02d}") == (1 <= month <= 12)


def test_every_budget_event_type_has_a_kind() -> None:
    assert sorted(KINDS) == ["BudgetActualized", "BudgetCommitted", "BudgetReleased"]
