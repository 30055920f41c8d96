"""The pure procurement rules: sourcing a line (supplier and price), grouping approved lines into
purchase orders per supplier, commitments per cost center and PO numbers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from supplybus.consumers.procurement.orders import OrderLine, commitments, group_lines, po_number
from supplybus.consumers.procurement.snapshot import ContractPrice, Item
from supplybus.consumers.procurement.sourcing import contract_for, place
from supplybus.errors import BusinessRuleError

DAY = dt.date(2026, 11, 29)
GLOVES = Item(
    "ITEM-1", "00012345600012", "MED_SURG", "EA", True, {"EA": Decimal(1), "BX": Decimal(10)},
    (
        ContractPrice("SUP-A", "BX", Decimal("12.0000"), "USD", dt.date(2026, 1, 1)),
        ContractPrice("SUP-B", "EA", Decimal("1.1000"), "USD", dt.date(2026, 1, 1)),
        ContractPrice("SUP-C", "EA", Decimal("0.5000"), "USD", dt.date(2025, 1, 1),
                      dt.date(2025, 12, 31)),  # expired
    ),
)  # fmt: skip


def _line(price: str, uom: str = "EA", supplier: str | None = None) -> dict[str, object]:
    return {
        "line_number": 1,
        "item_id": "ITEM-1",
        "supplier_id": supplier,
        "quantity": {"value": Decimal(5), "uom": uom},
        "unit_price": {"amount": Decimal(price), "currency": "USD"},
    }


def test_a_line_naming_no_supplier_goes_to_the_cheapest_contract_it_is_within() -> None:
    placed = place(GLOVES, _line("1.00"), DAY)  # within A (1.20) and B (1.10): B is cheaper
    assert placed is not None
    assert (placed.supplier_id, placed.unit_price, placed.on_contract) == (
        "SUP-B", Decimal("1.1000"), True,
    )  # fmt: skip
    by_box = place(GLOVES, _line("10.00", "BX"), DAY)  # 1.00 per each: B, per box
    assert by_box is not None and (by_box.supplier_id, by_box.unit_price) == (
        "SUP-B", Decimal("11.0000"),
    )  # fmt: skip


def test_a_named_supplier_is_kept_on_contract_at_the_contract_price_converted() -> None:
    placed = place(GLOVES, _line("1.00", supplier="SUP-A"), DAY)
    assert placed is not None
    assert (placed.supplier_id, placed.unit_price, placed.on_contract) == (
        "SUP-A", Decimal("1.2000"), True,
    )  # fmt: skip


def test_off_contract_keeps_the_named_supplier_and_the_requested_price() -> None:
    for supplier in ("SUP-Z", "SUP-A"):  # no contract; a price above the contract's
        placed = place(GLOVES, _line("1.50", supplier=supplier), DAY)
        assert placed is not None
        assert (placed.supplier_id, placed.unit_price, placed.on_contract) == (
            supplier, Decimal("1.50"), False,
        )  # fmt: skip
    assert contract_for(GLOVES, _line("1.50"), DAY) is None, "priced above every contract"
    cheapest = place(GLOVES, _line("1.50"), DAY)
    assert cheapest is not None and (cheapest.supplier_id, cheapest.on_contract) == ("SUP-B", False)


def test_no_supplier_and_no_valid_contract_cannot_be_placed() -> None:
    assert place(GLOVES, _line("1.00"), dt.date(2025, 6, 1)) is not None  # SUP-C then
    assert place(GLOVES, _line("1.00"), dt.date(2024, 6, 1)) is None


@given(
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal(1000), places=2),
    st.sampled_from(["EA", "BX"]),
)
def test_on_contract_is_a_contract_price_not_below_the_requested(price: Decimal, uom: str) -> None:
    placed = place(GLOVES, _line(str(price), uom), DAY)
    assert placed is not None, "some contract is valid on DAY"
    if contract_for(GLOVES, _line(str(price), uom), DAY) is not None:
        assert placed.on_contract and placed.unit_price >= price
        per_each = placed.unit_price / GLOVES.units[uom]
        assert per_each in {Decimal("1.2"), Decimal("1.1")}
    else:
        assert not placed.on_contract


def _raw(n: int, supplier: str | None, center: str = "CC-1", qty: str = "3") -> dict[str, object]:
    return {
        "line_number": n, "item_id": f"ITEM-{n}", "supplier_id": supplier, "quantity": qty,
        "uom": "EA", "unit_price": "2.5000", "currency": "USD", "cost_center_id": center,
        "need_by": "2026-12-06",
    }  # fmt: skip


def test_lines_are_grouped_per_supplier_and_renumbered_in_requisition_order() -> None:
    groups = group_lines([_raw(3, "SUP-B"), _raw(1, "SUP-B"), _raw(2, "SUP-A", "CC-2")])
    assert list(groups) == ["SUP-A", "SUP-B"]
    assert [(ln.line_number, ln.requisition_line) for ln in groups["SUP-B"]] == [(1, 1), (2, 3)]
    assert groups["SUP-A"][0].need_by == dt.date(2026, 12, 6)


def test_a_line_without_supplier_cannot_be_ordered() -> None:
    try:
        group_lines([_raw(1, None)])
    except BusinessRuleError as exc:
        assert "line 1 has no supplier" in str(exc)
    else:
        raise AssertionError("expected a refusal")


@given(st.lists(st.tuples(st.sampled_from(["CC-1", "CC-2", "CC-3"]),
                          st.integers(1, 10_000), st.integers(1, 10**7)), min_size=1))  # fmt: skip
def test_commitments_add_up_to_the_po_total(lines: list[tuple[str, int, int]]) -> None:
    order = [
        OrderLine(i, i, "ITEM", Decimal(q) / 1000, "EA", Decimal(p) / 10_000, "USD", c, None)
        for i, (c, q, p) in enumerate(lines, start=1)
    ]
    total = sum((ln.amount for ln in order), Decimal(0))
    assert sum(commitments(order).values(), Decimal(0)) == total
    assert all(ln.amount == ln.amount.quantize(Decimal("0.0001")) for ln in order)


def test_po_numbers_are_per_entity_and_zero_padded() -> None:
    assert po_number("ENT-EAST", 1) == "PO-EAST-000001"
    assert po_number("WEST", 123456) == "PO-WEST-123456"
