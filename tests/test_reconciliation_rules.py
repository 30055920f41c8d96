"""The reconciliation rules (consumers/finance/reconciliation*.py), pure: budget, accrual and
stock comparisons, the ERP export's parsing and conversion; hypothesis properties for the
invariants (a cost center's unexplained committed is the sum of its differences; nothing is
reported where the two sides agree; the report does not depend on input order)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supplybus.consumers.finance.reconciliation import (
    Budgeted,
    BudgetReference,
    CostCenterSpend,
    InvoicedLine,
    PoCommitment,
    ReceivedLine,
    Report,
    accrual_differences,
    budget_differences,
    cost_center_rows,
    money,
)
from supplybus.consumers.finance.reconciliation_stock import (
    Balance,
    erp_on_hand,
    parse_erp_export,
    stock_differences,
)
from supplybus.consumers.masterdata.units import item_units
from supplybus.errors import BusinessRuleError, ConfigError

D = Decimal
GLOVES = item_units("ITEM-1", "EA", [("BX", D(100)), ("CS", D(1000))])
SALINE = item_units("ITEM-2", "EA", [("CS", D(24))])
UNITS = {"ITEM-1": GLOVES, "ITEM-2": SALINE}


def convert(item: str, quantity: Decimal, frm: str, to: str) -> Decimal:
    if item not in UNITS:
        raise BusinessRuleError(f"item {item} is not in the item master")
    return UNITS[item].convert(quantity, frm, to)


def po(po_id: str = "PO-1", center: str = "CC-1", ordered: str = "100", actual: str = "0",
       cancelled: bool = False) -> PoCommitment:  # fmt: skip
    return PoCommitment(po_id, f"N-{po_id}", center, "USD", D(ordered), D(actual), cancelled,
                        f"REQ-{po_id}")  # fmt: skip


def ref(rid: str = "PO-1", center: str = "CC-1", c: str = "100", r: str = "0", a: str = "0",
        rtype: str = "PURCHASE_ORDER") -> BudgetReference:  # fmt: skip
    return BudgetReference(rtype, rid, center, "USD", Budgeted(D(c), D(r), D(a)), ("REQ-X",),
                           (f"ev-{rid}",))  # fmt: skip


# --- budget ------------------------------------------------------------------------------


def test_a_po_whose_entries_agree_is_no_difference() -> None:
    assert budget_differences([po()], [ref()]) == []
    matched = po(actual="100")
    assert budget_differences([matched], [ref(c="100", a="100")]) == []


def test_an_overrun_is_expected_committed_before_it_is_actualized() -> None:
    over = po(ordered="100", actual="104")
    assert over.expected == Budgeted(D(104), D(0), D(104))
    assert budget_differences([over], [ref(c="104", a="104")]) == []
    (d,) = budget_differences([over], [ref(c="100", a="104")])
    assert (d.kind, d.amount("difference")) == ("COMMITTED_DIFFERS", D(-4))


def test_a_missing_commitment_names_the_po_and_its_correlation_id() -> None:
    (d,) = budget_differences([po("PO-7", ordered="250.5")], [])
    assert (d.kind, d.subject, d.correlation_ids) == (
        "COMMITMENT_MISSING", "N-PO-7 CC-1", ("REQ-PO-7",),
    )  # fmt: skip
    assert d.amount("expected_committed") == D("250.5") and d.amount("difference") == D("-250.5")
    assert dict(d.refs)["po_id"] == ("PO-7",)


def test_committed_that_no_po_explains() -> None:
    found = budget_differences(
        [po()],
        [ref(), ref("PO-GHOST", c="75"), ref("PO-1", "CC-OTHER", c="5"),
         ref("PO-DONE", c="10", a="10"), ref("REQ-9", c="3", rtype="REQUISITION")],
    )  # fmt: skip
    assert [(d.kind, d.subject, d.amount("difference")) for d in found] == [
        ("COMMITMENT_UNEXPLAINED", "PURCHASE_ORDER PO-1 CC-OTHER", D(5)),
        ("COMMITMENT_UNEXPLAINED", "PURCHASE_ORDER PO-GHOST CC-1", D(75)),
        ("COMMITMENT_UNEXPLAINED", "REQUISITION REQ-9 CC-1", D(3)),
    ]
    assert found[1].event_ids == ("ev-PO-GHOST",) and found[1].correlation_ids == ("REQ-X",)


def test_a_cancelled_po_must_be_released() -> None:
    cancelled = po(cancelled=True)
    assert budget_differences([cancelled], [ref(c="100", r="100")]) == []
    (d,) = budget_differences([cancelled], [ref()])
    assert (d.kind, d.amount("difference")) == ("RELEASE_MISSING", D(100))


def test_an_actual_that_differs_from_the_match() -> None:
    (d,) = budget_differences([po(actual="60")], [ref(c="100", a="0")])
    assert (d.kind, d.amount("recorded_actual"), d.amount("expected_actual")) == (
        "ACTUAL_DIFFERS", D(0), D(60),
    )  # fmt: skip


def test_a_spend_row_that_differs_from_its_entries() -> None:
    row = CostCenterSpend("CC-1", "Surgery", D(1000), D(90), D(0), D(100), D(0), "USD")
    (d,) = budget_differences([po()], [ref()], [row])
    assert (d.kind, d.amount("difference")) == ("SPEND_TOTAL_DIFFERS", D(-10))


amounts = st.decimals(min_value=0, max_value=10_000, places=2, allow_nan=False)


@st.composite
def budget_states(draw: st.DrawFn) -> tuple[list[PoCommitment], list[BudgetReference],
                                            list[CostCenterSpend]]:  # fmt: skip
    centers = ["CC-A", "CC-B"]
    pos, refs = [], []
    for n in range(draw(st.integers(0, 6))):
        p = po(f"PO-{n}", draw(st.sampled_from(centers)), str(draw(amounts)),
               str(draw(amounts)), draw(st.booleans()))  # fmt: skip
        pos.append(p)
        e = p.expected
        fate = draw(st.sampled_from(["same", "lost", "changed"]))
        if fate == "same":
            refs.append(ref(p.po_id, p.cost_center_id, str(e.committed), str(e.released),
                            str(e.actualized)))  # fmt: skip
        elif fate == "changed":
            refs.append(ref(p.po_id, p.cost_center_id, str(draw(amounts)), str(draw(amounts)),
                            str(draw(amounts))))  # fmt: skip
    for n in range(draw(st.integers(0, 3))):
        refs.append(ref(f"X-{n}", draw(st.sampled_from(centers)), str(draw(amounts))))
    spends = []
    for center in centers:
        entries = sum((r.recorded.outstanding for r in refs if r.cost_center_id == center), D(0))
        skew = draw(st.sampled_from([D(0), D(0), D(7)]))
        spends.append(CostCenterSpend(center, None, None, entries + skew, D(0), entries, D(0),
                                      "USD"))  # fmt: skip
    return pos, refs, spends


@given(budget_states())
def test_unexplained_committed_is_the_sum_of_the_cost_centers_differences(
    state: tuple[list[PoCommitment], list[BudgetReference], list[CostCenterSpend]],
) -> None:
    pos, refs, spends = state
    found = budget_differences(pos, refs, spends)
    for row in cost_center_rows(spends, pos):
        center = row.spend.cost_center_id
        mine = [d for d in found if d.subject.endswith(center)]
        assert row.unexplained == sum((d.amount("difference") for d in mine), D(0))
    assert found == budget_differences(list(reversed(pos)), list(reversed(refs)), spends)


@given(budget_states())
def test_entries_that_are_what_the_pos_imply_give_no_budget_difference(
    state: tuple[list[PoCommitment], list[BudgetReference], list[CostCenterSpend]],
) -> None:
    pos = state[0]
    exact = [ref(p.po_id, p.cost_center_id, str(p.expected.committed), str(p.expected.released),
                 str(p.expected.actualized)) for p in pos]  # fmt: skip
    found = budget_differences(pos, exact)
    # two POs of one id and cost center cannot happen (po_id is unique per PO and center)
    assert found == []


# --- accrual -----------------------------------------------------------------------------


def received(accepted: str, line: int = 1, uom: str = "BX", item: str = "ITEM-1") -> ReceivedLine:
    return ReceivedLine("PO-1", "N-1", line, item, uom, D("12.5"), "USD", "REQ-1", D(accepted),
                        ("GR-1",), ("ev-gr-1",))  # fmt: skip


def invoiced(iid: str, qty: str, uom: str = "BX", line: int = 1, item: str = "ITEM-1",
             price: str = "12.5") -> InvoicedLine:  # fmt: skip
    return InvoicedLine(iid, f"ev-{iid}", "PO-1", line, item, D(qty), uom, D(price))


def test_received_not_invoiced_is_the_accrual_at_the_po_price() -> None:
    (d,) = accrual_differences([received("10")], [invoiced("INV-1", "4")], convert)
    assert (d.kind, d.subject, d.amount("quantity"), d.amount("amount")) == (
        "RECEIVED_NOT_INVOICED", "N-1 line 1", D(6), D("75.0000"),
    )  # fmt: skip
    refs = dict(d.refs)
    assert refs["receipt_ids"] == ("GR-1",) and refs["invoice_ids"] == ("INV-1",)
    assert d.event_ids == ("ev-INV-1", "ev-gr-1") and d.correlation_ids == ("REQ-1",)


def test_invoiced_not_received_converts_the_invoice_unit() -> None:
    (d,) = accrual_differences([received("2")], [invoiced("INV-1", "300", "EA")], convert)
    assert (d.kind, d.amount("invoiced"), d.amount("quantity")) == (
        "INVOICED_NOT_RECEIVED", D(3), D(1),
    )  # fmt: skip
    assert accrual_differences([received("3")], [invoiced("INV-1", "300", "EA")], convert) == []


def test_nothing_received_nothing_invoiced_is_no_difference() -> None:
    assert accrual_differences([received("0")], [], convert) == []


def test_lines_of_another_item_or_po_line_are_not_counted() -> None:
    other = [invoiced("INV-2", "5", item="ITEM-2", uom="EA"), invoiced("INV-3", "5", line=9)]
    (d,) = accrual_differences([received("5")], other, convert)
    assert d.kind == "RECEIVED_NOT_INVOICED" and dict(d.refs)["invoice_ids"] == ()


def test_an_invoice_unit_that_does_not_convert_is_reported() -> None:
    (d,) = accrual_differences([received("1")], [invoiced("INV-1", "1", "PK")], convert)
    assert d.kind == "INVOICE_UNIT_UNCONVERTIBLE" and "PK" in d.note


@given(
    st.decimals(min_value=0, max_value=10_000, places=3),
    st.lists(st.decimals(min_value=0, max_value=1000, places=1), max_size=4),
)
def test_one_accrual_difference_exactly_when_accepted_and_invoiced_differ(
    accepted: Decimal, bills: list[Decimal]
) -> None:
    lines = [invoiced(f"INV-{n}", str(q * 100), "EA") for n, q in enumerate(bills)]
    found = accrual_differences([received(str(accepted))], lines, convert)
    gap = accepted - sum(bills, D(0))
    if gap == 0:
        assert found == []
        return
    (d,) = found
    assert d.kind == ("RECEIVED_NOT_INVOICED" if gap > 0 else "INVOICED_NOT_RECEIVED")
    assert d.amount("quantity") == abs(gap) and d.amount("amount") == money(abs(gap), D("12.5"))


# --- ERP export and stock ---------------------------------------------------------------


def test_an_export_with_lots_is_compared_per_lot() -> None:
    text = (
        "\ufefflocation_id,item_id,lot_number,quantity,uom\n"
        "LOC-1,ITEM-1,LOT-A,2,BX\n\nLOC-1,ITEM-1,,30,EA\nLOC-1,ITEM-1,LOT-A,5,EA\n"
    )
    export = parse_erp_export(text, "erp.csv")
    assert export.has_lots and [ln.line for ln in export.lines] == [2, 4, 5]
    erp = erp_on_hand(export, UNITS, {"LOC-1"}, "erp.csv")
    assert erp == {("LOC-1", "ITEM-1", "LOT-A"): D(205), ("LOC-1", "ITEM-1", ""): D(30)}


def test_an_export_without_lots_is_compared_per_location_and_item() -> None:
    export = parse_erp_export("item_id,location_id,uom,quantity\nITEM-2,LOC-1,CS,2\n", "e.csv")
    assert erp_on_hand(export, UNITS, {"LOC-1"}, "e.csv") == {("LOC-1", "ITEM-2", None): D(48)}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "erp.csv: line 1: expected a header with location_id, item_id, quantity, uom"),
        ("location_id,item_id,qty,uom\n", "erp.csv: line 1: column 'qty' is not one of"),
        ("location_id,item_id,quantity\n", "erp.csv: line 1: column 'uom' is missing"),
        ("location_id,item_id,quantity,uom,uom\n", "erp.csv: line 1: a column is named twice"),
        ("location_id,item_id,quantity,uom\nLOC-1,ITEM-1,1,EA\nLOC-1,ITEM-1,ten,EA\n",
         "erp.csv: line 3: quantity: 'ten' is not a number"),
        ("location_id,item_id,quantity,uom\nLOC-1,,1,EA\n", "erp.csv: line 2: item_id: empty"),
        ("location_id,item_id,quantity,uom\nLOC-1,ITEM-1,1\n",
         "erp.csv: line 2: 3 fields, expected 4"),
        ("location_id,item_id,quantity,uom\nLOC-1,ITEM-1,Infinity,EA\n",
         "erp.csv: line 2: quantity: 'Infinity' is not a number"),
    ],
)  # fmt: skip
def test_a_bad_export_is_one_error_naming_file_line_and_field(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_erp_export(text, "erp.csv")
    assert str(caught.value).startswith(error) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ("LOC-9,ITEM-1,1,EA", "e.csv: line 3: location_id: 'LOC-9' is not a known location"),
        ("LOC-1,ITEM-9,1,EA", "e.csv: line 3: item_id: 'ITEM-9' is not in the item master"),
        ("LOC-1,ITEM-1,1,PK", "e.csv: line 3: uom: item ITEM-1 has no unit 'PK'"),
        ("LOC-1,ITEM-2,1,EA", None),
        ("LOC-1,ITEM-1,0.000001,BX", "e.csv: line 3: uom: item ITEM-1: 0.000001 BX is"),
    ],
)
def test_an_export_line_that_cannot_be_converted_names_its_line(
    row: str, error: str | None
) -> None:
    export = parse_erp_export(
        f"location_id,item_id,quantity,uom\nLOC-1,ITEM-2,1,CS\n{row}\n", "e.csv"
    )
    if error is None:
        assert erp_on_hand(export, UNITS, {"LOC-1"}, "e.csv") == {("LOC-1", "ITEM-2", None): D(25)}
        return
    with pytest.raises(ConfigError, match="^" + error.replace("(", r"\(")):
        erp_on_hand(export, UNITS, {"LOC-1"}, "e.csv")


def test_stock_differences_name_item_at_location_and_the_last_movements() -> None:
    ours = [Balance("LOC-1", "ITEM-1", "LOT-A", D(10)), Balance("LOC-1", "ITEM-1", "", D(5)),
            Balance("LOC-2", "ITEM-2", "", D(0)), Balance("LOC-2", "ITEM-1", "", D(3))]  # fmt: skip
    erp = {("LOC-1", "ITEM-1", None): D(12), ("LOC-2", "ITEM-2", None): D(4)}
    moves = {("LOC-1", "ITEM-1"): ("m3", "m2", "m1")}
    dead = {("LOC-2", "ITEM-2"): ("d1",)}
    found = stock_differences(ours, erp, False, {"ITEM-1": "EA", "ITEM-2": "EA"}, moves, dead)
    assert [(d.kind, d.subject, d.amount("difference"), d.event_ids) for d in found] == [
        ("ON_HAND_DIFFERS", "ITEM-1@LOC-1", D(3), ("m3", "m2", "m1")),
        ("NOT_IN_ERP", "ITEM-1@LOC-2", D(3), ()),
        ("NOT_IN_SUPPLYBUS", "ITEM-2@LOC-2", D(-4), ()),
    ]
    assert dict(found[2].refs)["dead_letter_event_ids"] == ("d1",)
    by_lot = stock_differences(ours, {("LOC-1", "ITEM-1", "LOT-A"): D(10)}, True, {}, {})
    assert [d.subject for d in by_lot] == ["ITEM-1@LOC-1", "ITEM-1@LOC-2"]


keys = st.tuples(st.sampled_from(["LOC-1", "LOC-2"]), st.sampled_from(["ITEM-1", "ITEM-2"]),
                 st.sampled_from(["", "LOT-A", "LOT-B"]))  # fmt: skip
quantities = st.decimals(min_value=-50, max_value=500, places=3)


stocks = st.dictionaries(keys, quantities, max_size=12)


@given(stocks, stocks, st.randoms())
def test_stock_reports_exactly_the_keys_that_differ_in_any_order(
    ours: dict[tuple[str, str, str], Decimal],
    theirs: dict[tuple[str, str, str], Decimal],
    rnd: object,
) -> None:
    balances = [Balance(*k, q) for k, q in ours.items()]
    found = stock_differences(balances, theirs, True, {}, {})
    differing = {k for k in set(ours) | set(theirs) if ours.get(k, D(0)) != theirs.get(k, D(0))}
    assert {(d.subject.split("@")[1].split(" ")[0], d.subject.split("@")[0]) for d in found} == {
        (k[0], k[1]) for k in differing
    }
    assert len(found) == len(differing)
    for d in found:
        assert d.amount("difference") == d.amount("supplybus") - d.amount("erp") != 0
    shuffled = list(balances)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert stock_differences(shuffled, dict(reversed(list(theirs.items()))), True, {}, {}) == found
    assert stock_differences(balances, {k: ours[k] for k in ours}, True, {}, {}) == []


def test_the_report_sums_per_kind_and_unit() -> None:
    found = accrual_differences(
        [received("10"), received("4", line=2)], [invoiced("INV-1", "6", line=2)], convert
    )
    report = Report("2026-05", (), tuple(found))
    summary = report.summary("accrual")
    assert summary["differences"] == 2
    assert summary["by_kind"] == [
        {"kind": "INVOICED_NOT_RECEIVED", "unit": "USD", "count": 1, "amount": "25.0000"},
        {"kind": "RECEIVED_NOT_INVOICED", "unit": "USD", "count": 1, "amount": "125.0000"},
    ]
    doc = report.as_json()
    assert doc["stock"] is None and doc["differences"] == 2
    assert [i["amount"] for i in doc["accrual"]["items"]] == ["125.0000", "25.0000"]
