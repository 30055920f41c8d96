"""Stock on hand against an ERP on-hand export, for the reconciliation (pure).

The export is a CSV with a header: ``location_id, item_id, [lot_number,] quantity, uom``.
``parse_erp_export`` reads it and ``erp_on_hand`` converts it to each item's stocking unit
(exactly, through the item master), all or nothing: the first bad line is a ``ConfigError``
``FILE: line N: FIELD: problem``. With a ``lot_number`` column the comparison is per lot (an
empty lot is the no-lot balance); without, per location and item.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from supplybus.consumers.finance.reconciliation import ZERO, Difference, sort_differences
from supplybus.consumers.masterdata.units import ItemUnits
from supplybus.errors import BusinessRuleError, ConfigError

ERP_COLUMNS = ("location_id", "item_id", "lot_number", "quantity", "uom")
ERP_REQUIRED = ("location_id", "item_id", "quantity", "uom")
#: (location, item, lot): lot None when the comparison is per location and item
StockKey = tuple[str, str, str | None]


@dataclass(frozen=True)
class ErpLine:
    line: int  # in the file, the header being line 1
    location_id: str
    item_id: str
    lot_number: str  # "" for none
    quantity: Decimal
    uom: str


@dataclass(frozen=True)
class ErpExport:
    lines: tuple[ErpLine, ...]
    has_lots: bool


def parse_erp_export(text: str, name: str) -> ErpExport:
    """The lines of an ERP on-hand CSV (header: location_id, item_id, [lot_number,]
    quantity, uom). Anything wrong is a ConfigError ``NAME: line N: FIELD: problem``."""
    rows = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    header = [h.strip() for h in next(rows, [])]
    if not any(header):
        raise ConfigError(f"{name}: line 1: expected a header with {', '.join(ERP_REQUIRED)}")
    for column in header:
        if column not in ERP_COLUMNS:
            raise ConfigError(f"{name}: line 1: column {column!r} is not one of "
                              f"{', '.join(ERP_COLUMNS)}")  # fmt: skip
    if len(set(header)) != len(header):
        raise ConfigError(f"{name}: line 1: a column is named twice")
    for column in ERP_REQUIRED:
        if column not in header:
            raise ConfigError(f"{name}: line 1: column {column!r} is missing")
    lines = []
    for number, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise ConfigError(f"{name}: line {number}: {len(row)} fields, expected {len(header)}")
        cells = {h: cell.strip() for h, cell in zip(header, row, strict=True)}
        for column in ERP_REQUIRED:
            if not cells[column]:
                raise ConfigError(f"{name}: line {number}: {column}: empty")
        try:
            quantity = Decimal(cells["quantity"])
        except InvalidOperation:
            quantity = Decimal("NaN")
        if not quantity.is_finite():
            raise ConfigError(
                f"{name}: line {number}: quantity: {cells['quantity']!r} is not a number"
            )
        lines.append(ErpLine(number, cells["location_id"], cells["item_id"],
                             cells.get("lot_number", ""), quantity, cells["uom"]))  # fmt: skip
    return ErpExport(tuple(lines), "lot_number" in header)


def erp_on_hand(
    export: ErpExport, units: Mapping[str, ItemUnits], locations: Collection[str], name: str
) -> dict[StockKey, Decimal]:
    """The export's quantities in each item's stocking unit, summed per key (lines naming
    the same location, item and lot add up). An unknown location or item, or a unit with no
    exact conversion, is a ConfigError naming file, line and field."""
    found: dict[StockKey, Decimal] = {}
    for ln in export.lines:
        where = f"{name}: line {ln.line}"
        if ln.location_id not in locations:
            raise ConfigError(f"{where}: location_id: {ln.location_id!r} is not a known location")
        item = units.get(ln.item_id)
        if item is None:
            raise ConfigError(f"{where}: item_id: {ln.item_id!r} is not in the item master")
        try:
            base = item.to_base(ln.quantity, ln.uom)
        except BusinessRuleError as exc:
            raise ConfigError(f"{where}: uom: {exc.reason}") from None
        key = (ln.location_id, ln.item_id, ln.lot_number if export.has_lots else None)
        found[key] = found.get(key, ZERO) + base
    return found


@dataclass(frozen=True)
class Balance:
    """A stock-balances row, in the item's stocking unit."""

    location_id: str
    item_id: str
    lot_number: str
    on_hand: Decimal


def stock_differences(
    balances: Iterable[Balance],
    erp: Mapping[StockKey, Decimal],
    by_lot: bool,
    stocking_uom: Mapping[str, str],
    movements: Mapping[tuple[str, str], Sequence[str]],
    dead_letters: Mapping[tuple[str, str], Sequence[str]] = {},
) -> list[Difference]:
    """Per key, supplybus on hand against the ERP's: NOT_IN_ERP (only supplybus has stock),
    NOT_IN_SUPPLYBUS (only the ERP has), ON_HAND_DIFFERS. A zero on one side equals no line.
    Each names item@location and the event ids of its last movements (and open dead
    letters, which hold movements not counted)."""
    ours: dict[StockKey, Decimal] = {}
    for b in balances:
        key = (b.location_id, b.item_id, b.lot_number if by_lot else None)
        ours[key] = ours.get(key, ZERO) + b.on_hand
    found: list[Difference] = []
    for key in sorted(set(ours) | set(erp), key=lambda k: (k[0], k[1], k[2] or "")):
        mine, theirs = ours.get(key, ZERO), erp.get(key, ZERO)
        if mine == theirs:
            continue
        loc, item, lot = key
        if theirs == 0:
            kind = "NOT_IN_ERP"
        elif mine == 0:
            kind = "NOT_IN_SUPPLYBUS"
        else:
            kind = "ON_HAND_DIFFERS"
        subject = f"{item}@{loc}" + (f" lot {lot}" if lot else "")
        held = tuple(dead_letters.get((loc, item), ()))
        found.append(Difference(
            "stock", kind, subject, stocking_uom.get(item, ""),
            (("supplybus", mine), ("erp", theirs), ("difference", mine - theirs)),
            (), tuple(movements.get((loc, item), ())),
            (("location_id", (loc,)), ("item_id", (item,)))
            + ((("dead_letter_event_ids", held),) if held else ()),
            "open dead letters hold movements not counted" if held else "",
            (loc, item, lot or ""),
        ))  # fmt: skip
    return sort_differences(found)
