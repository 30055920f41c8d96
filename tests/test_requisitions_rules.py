"""The pure requisition rules: every reason named, flags that never reject, and properties over
the sample master data (a valid requisition validates; any one defect yields exactly its code)."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supplybus.consumers.procurement.validation import (
    ContractPrice,
    Item,
    MasterData,
    validate,
)
from tests.requisition_data import (
    CENTER,
    MASTER,
    TODAY,
    VALID,
    Record,
    line,
    requisition,
)


def _item(item_id: str) -> Item:
    return MASTER.items[item_id]


def _with(master: MasterData, **changes: Any) -> MasterData:
    items = dict(master.items)
    centers = dict(master.cost_centers)
    for key, value in changes.items():
        (items if isinstance(value, Item) else centers)[key] = value
    return MasterData(master.suppliers, items, centers)


def test_a_valid_requisition_on_contract_and_within_budget_has_no_reasons_nor_flags() -> None:
    (item, price), (other, other_price) = VALID[0], VALID[7]
    found = validate(
        requisition([line(1, item, price), line(2, other, other_price)]), MASTER, TODAY
    )
    assert (found.reasons, found.flags) == ((), ())
    assert found.categories == {item.category, other.category}


def test_a_rejection_names_every_reason_with_its_field() -> None:
    item, price = VALID[0]
    bad_supplier = line(1, item, price) | {"supplier_id": "SUP-999"}
    bad_unit = line(2, item, price)
    bad_unit["quantity"]["uom"] = "ZZ"
    blocked = line(3, item, price) | {"supplier_id": "SUP-020"}
    inactive = line(4, item, price) | {"supplier_id": "SUP-019"}
    unorderable = line(5, _item("ITEM-0050"), _item("ITEM-0050").prices[0])
    closed = line(6, item, price) | {"cost_center_id": "CC-W2-RES"}
    found = validate(
        requisition([bad_supplier, bad_unit, blocked, inactive, unorderable, closed], "CC-X"),
        MASTER,
        TODAY,
    )
    assert [(r.code, r.field) for r in found.reasons] == [
        ("UNKNOWN_SUPPLIER", "lines[0].supplier_id"),
        ("UNKNOWN_UNIT", "lines[1].quantity.uom"),
        ("SUPPLIER_BLOCKED", "lines[2].supplier_id"),
        ("SUPPLIER_INACTIVE", "lines[3].supplier_id"),
        ("ITEM_NOT_ORDERABLE", "lines[4].item_id"),
        ("UNKNOWN_COST_CENTER", "cost_center_id"),
        ("COST_CENTER_CLOSED", "lines[5].cost_center_id"),
    ]
    assert "SUP-999" in found.reasons[0].message
    assert "has no unit 'ZZ' (known: " in found.reasons[1].message


def test_off_contract_is_a_flag_by_price_per_base_unit_never_a_rejection() -> None:
    pack = next((i, p) for i, p in VALID if p.uom != i.base_uom)
    item, price = pack
    base = next(
        p for p in item.prices if p.supplier_id == price.supplier_id and p.uom == item.base_uom
    )
    on = line(1, item, base)
    assert validate(requisition([on]), MASTER, TODAY).flags == ()
    cheaper = line(1, item, dataclasses.replace(base, amount=base.amount - Decimal("0.01")))
    assert validate(requisition([cheaper]), MASTER, TODAY).flags == ()
    dearer = line(1, item, dataclasses.replace(base, amount=base.amount + Decimal("0.0001")))
    found = validate(requisition([dearer]), MASTER, TODAY)
    assert (found.reasons, found.flags, found.off_contract) == ((), ("OFF_CONTRACT",), True)
    # a line in the pack unit at the pack's contract price: on contract (cross-multiplied)
    assert validate(requisition([line(1, item, price)]), MASTER, TODAY).flags == ()
    expired = dataclasses.replace(
        item,
        prices=tuple(
            dataclasses.replace(p, valid_to=TODAY - dt.timedelta(days=1)) for p in item.prices
        ),
    )
    assert validate(requisition([on]), _with(MASTER, **{item.item_id: expired}), TODAY).flags == (
        "OFF_CONTRACT",
    )


def test_over_budget_counts_committed_actual_and_this_request_and_is_a_flag() -> None:
    item, price = VALID[0]
    req = requisition([line(1, item, price, "3")])
    amount = req["total"]["amount"]
    center = MASTER.cost_centers[CENTER]
    assert center.budget is not None
    spent = center.budget - amount
    at_budget = dataclasses.replace(center, committed=spent - 1, actual=Decimal(1))
    found = validate(req, _with(MASTER, **{CENTER: at_budget}), TODAY)
    assert (found.flags, found.over_budget) == ((), False)  # exactly the budget: within
    over = dataclasses.replace(at_budget, actual=Decimal("1.0001"))
    found = validate(req, _with(MASTER, **{CENTER: over}), TODAY)
    assert (found.reasons, found.flags, found.over_budget) == ((), ("OVER_BUDGET",), True)
    no_budget = dataclasses.replace(center, budget=None)
    assert validate(req, _with(MASTER, **{CENTER: no_budget}), TODAY).over_budget


#: One defect each, applied to a valid requisition (and its master data), and the code it yields.
Defect = Callable[[Record, MasterData], MasterData]


def _line0(req: Record) -> Record:
    return req["lines"][0]  # type: ignore[no-any-return]


def _unknown_supplier(req: Record, m: MasterData) -> MasterData:
    _line0(req)["supplier_id"] = "SUP-999"
    return m


def _blocked(req: Record, m: MasterData) -> MasterData:
    _line0(req)["supplier_id"] = "SUP-020"
    return m


def _inactive(req: Record, m: MasterData) -> MasterData:
    _line0(req)["supplier_id"] = "SUP-019"
    return m


def _west_only(req: Record, m: MasterData) -> MasterData:
    west = next(s for s in m.suppliers.values() if s.entity_ids == {"ENT-WEST"})
    _line0(req)["supplier_id"] = west.supplier_id
    return m


def _unknown_item(req: Record, m: MasterData) -> MasterData:
    _line0(req)["item_id"] = "ITEM-9999"
    return m


def _not_orderable(req: Record, m: MasterData) -> MasterData:
    item = m.items[_line0(req)["item_id"]]
    return _with(m, **{item.item_id: dataclasses.replace(item, orderable=False)})


def _bad_gtin(req: Record, m: MasterData) -> MasterData:
    item = m.items[_line0(req)["item_id"]]
    gtin = item.gtin[:-1] + str((int(item.gtin[-1]) + 1) % 10)
    return _with(m, **{item.item_id: dataclasses.replace(item, gtin=gtin)})


def _unknown_unit(req: Record, m: MasterData) -> MasterData:
    _line0(req)["quantity"]["uom"] = "ZZ"
    return m


def _not_convertible(req: Record, m: MasterData) -> MasterData:
    item = m.items[_line0(req)["item_id"]]
    _line0(req)["quantity"] = {"value": Decimal("0.001"), "uom": "HALF"}
    units = {**item.units, "HALF": Decimal("0.5")}
    return _with(m, **{item.item_id: dataclasses.replace(item, units=units)})


def _zero(req: Record, m: MasterData) -> MasterData:
    _line0(req)["quantity"]["value"] = Decimal(0)
    return m


def _unknown_center(req: Record, m: MasterData) -> MasterData:
    req["cost_center_id"] = "CC-NOPE"
    return m


def _closed_center(req: Record, m: MasterData) -> MasterData:
    center = m.cost_centers[req["cost_center_id"]]
    return _with(m, **{center.cost_center_id: dataclasses.replace(center, status="CLOSED")})


def _other_entity_center(req: Record, m: MasterData) -> MasterData:
    req["cost_center_id"] = "CC-W1-SURG"
    return m


DEFECTS: dict[str, Defect] = {
    "UNKNOWN_SUPPLIER": _unknown_supplier,
    "SUPPLIER_BLOCKED": _blocked,
    "SUPPLIER_INACTIVE": _inactive,
    "SUPPLIER_NOT_FOR_ENTITY": _west_only,
    "UNKNOWN_ITEM": _unknown_item,
    "ITEM_NOT_ORDERABLE": _not_orderable,
    "INVALID_GTIN": _bad_gtin,
    "UNKNOWN_UNIT": _unknown_unit,
    "UNIT_NOT_CONVERTIBLE": _not_convertible,
    "INVALID_QUANTITY": _zero,
    "UNKNOWN_COST_CENTER": _unknown_center,
    "COST_CENTER_CLOSED": _closed_center,
    "COST_CENTER_OTHER_ENTITY": _other_entity_center,
}

CENTER_CODES = {"UNKNOWN_COST_CENTER", "COST_CENTER_CLOSED", "COST_CENTER_OTHER_ENTITY"}

valid_lines = st.lists(
    st.tuples(st.sampled_from(VALID), st.integers(min_value=1, max_value=20)),
    min_size=1,
    max_size=5,
)


def _built(chosen: list[tuple[tuple[Item, ContractPrice], int]]) -> Record:
    return requisition([line(n, i, p, str(q)) for n, ((i, p), q) in enumerate(chosen, 1)])


@settings(max_examples=150, deadline=None)
@given(valid_lines, st.sampled_from([CENTER, "CC-E1-PHARM", "CC-E2-SURG"]))
def test_a_requisition_of_valid_sample_master_data_always_validates(
    chosen: list[tuple[tuple[Item, ContractPrice], int]], center: str
) -> None:
    req = _built(chosen)
    req["cost_center_id"] = center
    found = validate(req, MASTER, TODAY)
    assert found.reasons == () and not found.off_contract
    assert found.categories == {i.category for (i, _), _ in chosen}


@settings(max_examples=150, deadline=None)
@given(valid_lines, st.sampled_from(sorted(DEFECTS)))
def test_any_one_defect_yields_exactly_its_reason(
    chosen: list[tuple[tuple[Item, ContractPrice], int]], code: str
) -> None:
    req = copy.deepcopy(_built(chosen))
    master = DEFECTS[code](req, MASTER)
    found = validate(req, master, TODAY)
    assert set(found.codes) == {code}, found.reasons  # once per line naming a defective item
    assert found.reasons[0].field is not None and found.reasons[0].field.startswith(
        "lines[0]." if code not in CENTER_CODES else "cost_center_id"
    )
    assert validate(_built(chosen), MASTER, TODAY).reasons == ()  # the master data untouched


@pytest.mark.parametrize("code", sorted(DEFECTS))
def test_each_defect_alone_on_the_first_valid_line(code: str) -> None:
    req = _built([(VALID[0], 1)])
    assert validate(req, DEFECTS[code](req, MASTER), TODAY).codes == (code,)
