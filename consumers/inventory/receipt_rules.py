"""Receiving rules (pure, no I/O): a received line checked against its purchase-order line.

A line of a GoodsReceived is assessed against the PO line it names, in this order:

- no such PO line: refused (``BusinessRuleError``: the receipt is dead-lettered and the PO's
  later events wait until it is corrected and replayed);
- another item than the line's: WRONG_ITEM, nothing accepted;
- a received or rejected quantity whose unit does not convert exactly to the PO line's unit
  (``masterdata.units``): WRONG_ITEM with the conversion's reason as the note, nothing
  accepted (the schema has no unit kind: what came is not the article as it was ordered);
- the PO cancelled: OVER (the note says cancelled), nothing accepted;
- a rejected quantity: DAMAGED (the reason the dock gave as the note); it is never accepted;
- a lot-controlled item without lot number or expiry date: MISSING_LOT, nothing accepted;
- the over-receipt allowance (percent of the ordered quantity, per item category,
  ``ALLOWANCE_PERCENT``) caps what the line accepts over all its receipts: the part past the
  cap is OVER and not accepted.

Every discrepancy has ``expected`` = the PO line's ordered quantity (in its unit) and
``actual`` = what the kind is about: OVER the line's cumulative accepted quantity had all of
it been taken (on a cancelled PO: the quantity received), DAMAGED the rejected quantity,
MISSING_LOT the quantity received without a lot, WRONG_ITEM the quantity as received (in the
receipt's unit).

SHORT is never decided on a receipt (GoodsReceived has no "final delivery" flag: a partial
receipt is normal); ``shortfall`` gives what a line still lacks, for reconciliation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Decimal
from types import MappingProxyType

from supplybus.consumers.masterdata.units import QUANTUM, ItemUnits
from supplybus.errors import BusinessRuleError

#: Over-receipt allowance in percent of the ordered quantity, per item category; a category
#: not listed gets none.
ALLOWANCE_PERCENT: Mapping[str, Decimal] = MappingProxyType(
    {
        "MED_SURG": Decimal(10),
        "PHARMACY": Decimal(0),
        "CONTROLLED_SUBSTANCE": Decimal(0),
        "IMPLANT": Decimal(0),
        "LAB": Decimal(5),
        "CAPITAL": Decimal(0),
    }
)
ZERO = Decimal("0.000")


def allowance(category: str) -> Decimal:
    """The over-receipt allowance of ``category`` in percent (0 when not listed)."""
    return ALLOWANCE_PERCENT.get(category, Decimal(0))


def acceptance_cap(ordered: Decimal, percent: Decimal) -> Decimal:
    """The most a line of ``ordered`` may accept in all: ordered + percent, rounded down to
    the quantity scale (never more than the exact allowance)."""
    return (ordered * (1 + percent / 100)).quantize(QUANTUM, rounding=ROUND_DOWN)


@dataclass(frozen=True)
class PoLine:
    """A purchase-order line and what its receipts brought so far (in ``uom``)."""

    line_number: int
    item_id: str
    ordered: Decimal
    uom: str
    received: Decimal = ZERO  # good quantity delivered (converted), accepted or not
    rejected: Decimal = ZERO
    accepted: Decimal = ZERO


@dataclass(frozen=True)
class ItemRules:
    """What receiving needs from the item master."""

    item_id: str
    category: str
    lot_controlled: bool
    units: ItemUnits


@dataclass(frozen=True)
class ReceivedLine:
    """One line of a GoodsReceived (``index``: its position in the receipt, from 1)."""

    index: int
    po_line_number: int
    item_id: str
    received: Decimal
    received_uom: str
    rejected: Decimal
    rejected_uom: str
    rejection_reason: str | None = None
    lot_number: str | None = None
    expiry_date: dt.date | None = None


@dataclass(frozen=True)
class Discrepancy:
    kind: str  # SHORT, OVER, DAMAGED, WRONG_ITEM, MISSING_LOT
    expected: Decimal
    expected_uom: str
    actual: Decimal
    actual_uom: str
    note: str


@dataclass(frozen=True)
class LineOutcome:
    """What a received line did: quantities in ``uom`` (the PO line's; the receipt's own when
    it did not convert, then ``received``/``rejected`` are None) and its discrepancies."""

    line: ReceivedLine
    uom: str
    received: Decimal | None
    rejected: Decimal | None
    accepted: Decimal
    discrepancies: tuple[Discrepancy, ...]


def assess(
    line: ReceivedLine,
    po_line: PoLine | None,
    item: ItemRules | None,
    *,
    cancelled: str | None = None,
) -> tuple[LineOutcome, PoLine]:
    """The outcome of ``line`` and the PO line after it. ``item``: the PO line item's master
    record (required when the line names that item); ``cancelled``: the PO's cancellation
    reason, if it is cancelled."""
    if po_line is None:
        raise BusinessRuleError(
            f"receipt line {line.index} names PO line {line.po_line_number}, which the "
            "purchase order does not have"
        )
    if line.item_id != po_line.item_id:
        return _wrong_item(line, po_line), po_line
    if item is None:
        raise BusinessRuleError(
            f"item {po_line.item_id} is not in the item master; receiving cannot check its "
            "units and lots: replay the receipt once the master data has it"
        )
    try:
        received = item.units.convert(line.received, line.received_uom, po_line.uom)
        rejected = item.units.convert(line.rejected, line.rejected_uom, po_line.uom)
    except BusinessRuleError as exc:
        return _wrong_item(line, po_line, f"{exc}: not accepted"), po_line
    found: list[Discrepancy] = []

    def report(kind: str, actual: Decimal, note: str) -> None:
        found.append(Discrepancy(kind, po_line.ordered, po_line.uom, actual, po_line.uom, note))

    if rejected > 0:
        report("DAMAGED", rejected, line.rejection_reason or "rejected without a reason")
    accepted = received
    if cancelled is not None:
        if received > 0:
            report("OVER", received, f"purchase order cancelled ({cancelled}): nothing is "
                   "accepted")  # fmt: skip
        accepted = ZERO
    elif item.lot_controlled and received > 0 and not (line.lot_number and line.expiry_date):
        missing = " and ".join(
            n for n, v in (("lot", line.lot_number), ("expiry", line.expiry_date)) if not v
        )
        report("MISSING_LOT", received, f"lot-controlled item received without {missing}: "
               "not accepted")  # fmt: skip
        accepted = ZERO
    else:
        percent = allowance(item.category)
        cap = acceptance_cap(po_line.ordered, percent)
        accepted = max(ZERO, min(received, cap - po_line.accepted))
        if accepted < received:
            report("OVER", po_line.accepted + received, f"allowance {_percent(percent)}% "
                   f"({item.category}): at most {cap} {po_line.uom} on the line; "
                   f"{received - accepted} {po_line.uom} not accepted")  # fmt: skip
    after = replace(
        po_line,
        received=po_line.received + received,
        rejected=po_line.rejected + rejected,
        accepted=po_line.accepted + accepted,
    )
    return LineOutcome(line, po_line.uom, received, rejected, accepted, tuple(found)), after


def _wrong_item(line: ReceivedLine, po_line: PoLine, note: str = "") -> LineOutcome:
    note = note or f"line {po_line.line_number} orders {po_line.item_id}: not accepted"
    wrong = Discrepancy(
        "WRONG_ITEM", po_line.ordered, po_line.uom, line.received, line.received_uom, note
    )
    return LineOutcome(line, line.received_uom, None, None, ZERO, (wrong,))


def assess_receipt(
    lines: Sequence[ReceivedLine],
    po_lines: Mapping[int, PoLine],
    items: Mapping[str, ItemRules],
    *,
    cancelled: str | None = None,
) -> tuple[list[LineOutcome], dict[int, PoLine]]:
    """Every line of a receipt in order (two lines of one PO line: the second sees the
    first), and the PO lines after the receipt."""
    state = dict(po_lines)
    outcomes: list[LineOutcome] = []
    for line in lines:
        po_line = state.get(line.po_line_number)
        item = items.get(po_line.item_id) if po_line is not None else None
        outcome, after = assess(line, po_line, item, cancelled=cancelled)
        state[after.line_number] = after
        outcomes.append(outcome)
    return outcomes, state


def shortfall(line: PoLine) -> Decimal:
    """What the line still lacks (ordered - accepted, at least 0): SHORT once the PO is
    closed, which only reconciliation decides."""
    return max(ZERO, line.ordered - line.accepted)


def _percent(value: Decimal) -> str:
    return f"{value.normalize():f}"
