"""Three-way match as plain functions over plain data: tolerances, line matching, duplicates.

An invoice is matched against its purchase order (price, currency, PO lines) and against what
was received (quantities). ``evaluate`` decides, in this order, the first that applies:

1. ``EXCEPTION`` DUPLICATE_INVOICE: the supplier already sent this invoice number
   (``same_number``: case, spaces and punctuation ignored) on an invoice not rejected;
2. ``WAITING`` NO_PO: the PO is not known yet (re-evaluated when it arrives);
3. ``EXCEPTION`` NO_PO (the PO is cancelled, or a line bills a PO line that does not exist or
   another item), CURRENCY (not the PO's currency), PRICE_VARIANCE (a line's amount differs
   from the PO price by more than the tolerance), QTY_VARIANCE (a unit with no conversion):
   decided from the PO alone, so the receipts' timing never changes them;
4. ``WAITING`` NO_RECEIPT / QTY_VARIANCE: a billed PO line has nothing received, or the
   quantity invoiced on it (this invoice and those matched before) exceeds what was received
   plus the quantity tolerance; re-evaluated when a receipt arrives;
5. ``MATCHED``, with ``tolerance_applied`` when a price or quantity differed within tolerance.

Tolerances are data (``TOLERANCES``, per legal entity, ``DEFAULT`` otherwise). The price
tolerance is the tighter of a percentage of the PO amount of the line and an absolute amount
(in the tolerance's currency; an invoice in another currency gets the percentage alone), and
it is symmetric: billing less than the PO price by more than the tolerance is a variance too.
Amounts are exact decimals, never floats; line amounts are rounded half up to 4 places like
the PO's.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from supplybus.errors import BusinessRuleError

Status = Literal["MATCHED", "WAITING", "EXCEPTION"]
Code = Literal[
    "PRICE_VARIANCE", "QTY_VARIANCE", "NO_RECEIPT", "NO_PO", "DUPLICATE_INVOICE", "CURRENCY"
]
#: (item, quantity, from unit, to unit) -> quantity in ``to unit``; raises BusinessRuleError
Convert = Callable[[str, Decimal, str, str], Decimal]

ZERO = Decimal(0)
CENT = Decimal("0.0001")
_HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Tolerance:
    """Price: ``percent`` of the line's PO amount or ``absolute`` (in ``currency``), whichever
    is tighter. Quantity: invoiced may exceed received by ``quantity_percent`` of received."""

    percent: Decimal
    absolute: Decimal
    currency: str
    quantity_percent: Decimal = ZERO


#: Per legal entity; an entity not listed gets ``DEFAULT``.
TOLERANCES: Mapping[str, Tolerance] = {
    "ENT-EAST": Tolerance(Decimal(2), Decimal("50.00"), "USD", ZERO),
}
DEFAULT = Tolerance(Decimal(5), Decimal("100.00"), "USD", ZERO)


def tolerance_for(entity_id: str, rules: Mapping[str, Tolerance] = TOLERANCES) -> Tolerance:
    return rules.get(entity_id, DEFAULT)


def amount(quantity: Decimal, unit_price: Decimal) -> Decimal:
    """A line amount: quantity times price, half up to 4 places (as the PO rounds)."""
    return (quantity * unit_price).quantize(CENT, rounding=ROUND_HALF_UP)


def price_allowance(tolerance: Tolerance, expected: Decimal, currency: str) -> Decimal:
    """How far an invoiced line amount may be from ``expected`` (its PO amount)."""
    by_percent = abs(expected) * tolerance.percent / _HUNDRED
    if currency != tolerance.currency:
        return by_percent
    return min(by_percent, tolerance.absolute)


def price_within(tolerance: Tolerance, expected: Decimal, invoiced: Decimal, currency: str) -> bool:
    return abs(invoiced - expected) <= price_allowance(tolerance, expected, currency)


def quantity_within(tolerance: Tolerance, invoiced: Decimal, received: Decimal) -> bool:
    """Invoiced (in all) at most received plus the quantity tolerance."""
    return invoiced <= received + received * tolerance.quantity_percent / _HUNDRED


def same_number(a: str, b: str) -> bool:
    """Invoice numbers equal once case, spaces and punctuation are ignored (INV-0042 = inv 0042)."""
    return _normal(a) == _normal(b)


def _normal(number: str) -> str:
    return re.sub(r"[^0-9a-z]", "", number.casefold())


@dataclass(frozen=True)
class PoLine:
    line_number: int
    item_id: str
    quantity: Decimal
    uom: str
    unit_price: Decimal
    cost_center_id: str


@dataclass(frozen=True)
class Order:
    """The PO as the matcher knows it."""

    po_id: str
    supplier_id: str
    currency: str
    cancelled: bool
    lines: Mapping[int, PoLine]


@dataclass(frozen=True)
class InvoiceLine:
    line_number: int
    po_line_number: int
    item_id: str
    quantity: Decimal
    uom: str
    unit_price: Decimal
    currency: str

    @property
    def amount(self) -> Decimal:
        return amount(self.quantity, self.unit_price)


@dataclass(frozen=True)
class Invoice:
    invoice_id: str
    invoice_number: str
    supplier_id: str
    po_id: str
    invoice_date: dt.date
    total: Decimal
    currency: str
    lines: tuple[InvoiceLine, ...]
    received_at: dt.datetime

    @property
    def lines_total(self) -> Decimal:
        return sum((line.amount for line in self.lines), ZERO)

    def before(self, other: Invoice) -> bool:
        """Whether this invoice came first (by its InvoiceReceived's time, then id)."""
        return (self.received_at, self.invoice_id) < (other.received_at, other.invoice_id)


@dataclass(frozen=True)
class Reason:
    code: Code
    po_line_number: int | None
    message: str

    def as_json(self) -> dict[str, object]:
        return {"code": self.code, "po_line_number": self.po_line_number, "message": self.message}


@dataclass(frozen=True)
class Verdict:
    status: Status
    reasons: tuple[Reason, ...] = ()
    tolerance_applied: bool = False
    #: MATCHED: the invoiced amount per cost center of the billed PO lines
    actuals: Mapping[str, Decimal] = field(default_factory=dict)
    duplicate_of: str | None = None


@dataclass(frozen=True)
class Known:
    """Another invoice the matcher holds: to find duplicates."""

    invoice: Invoice
    status: str


def exact_duplicate(invoice: Invoice, others: Sequence[Known]) -> Invoice | None:
    """The invoice this one repeats: same supplier and number, not rejected, matched already
    or received before it."""
    for other in sorted(others, key=lambda k: (k.invoice.received_at, k.invoice.invoice_id)):
        o = other.invoice
        if (
            o.invoice_id != invoice.invoice_id
            and o.supplier_id == invoice.supplier_id
            and same_number(o.invoice_number, invoice.invoice_number)
            and other.status != "REJECTED"
            and (other.status == "MATCHED" or o.before(invoice))
        ):
            return o
    return None


def suspected_duplicate(invoice: Invoice, others: Sequence[Known]) -> Invoice | None:
    """The invoice this one resembles (a re-keyed number): same supplier, PO, invoice date,
    total and currency, another number, not rejected, matched already or received before it.
    Not an exception: its payment is held until someone releases it."""
    for other in sorted(others, key=lambda k: (k.invoice.received_at, k.invoice.invoice_id)):
        o = other.invoice
        if (
            o.invoice_id != invoice.invoice_id
            and (o.supplier_id, o.po_id, o.invoice_date, o.total, o.currency)
            == (invoice.supplier_id, invoice.po_id, invoice.invoice_date, invoice.total,
                invoice.currency)
            and not same_number(o.invoice_number, invoice.invoice_number)
            and other.status != "REJECTED"
            and (other.status == "MATCHED" or o.before(invoice))
        ):  # fmt: skip
            return o
    return None


def evaluate(
    invoice: Invoice,
    order: Order | None,
    received: Mapping[int, Decimal],
    invoiced_before: Mapping[int, Decimal],
    others: Sequence[Known],
    convert: Convert,
    tolerance: Tolerance,
) -> Verdict:
    """The match of ``invoice`` (module docstring). ``received`` and ``invoiced_before`` are
    per PO line in the PO line's unit; ``others`` are the supplier's other invoices."""
    repeated = exact_duplicate(invoice, others)
    if repeated is not None:
        why = (
            f"supplier {invoice.supplier_id} already sent invoice {repeated.invoice_number} "
            f"({repeated.invoice_id})"
        )
        return Verdict("EXCEPTION", (Reason("DUPLICATE_INVOICE", None, why),),
                       duplicate_of=repeated.invoice_id)  # fmt: skip
    if order is None:
        return Verdict("WAITING", (Reason("NO_PO", None, f"PO {invoice.po_id} is not known yet"),))
    failed = _against_order(invoice, order, convert, tolerance)
    if failed:
        return Verdict("EXCEPTION", tuple(failed))
    billed = _billed(invoice, order, convert)
    waiting: list[Reason] = []
    over = False
    for number, quantity in sorted(billed.items()):
        line = order.lines[number]
        got = received.get(number, ZERO)
        total = invoiced_before.get(number, ZERO) + quantity
        if got <= 0:
            waiting.append(Reason("NO_RECEIPT", number, f"PO line {number}: nothing received"))
        elif not quantity_within(tolerance, total, got):
            waiting.append(Reason("QTY_VARIANCE", number,
                                  f"PO line {number}: {total} {line.uom} invoiced, {got} "
                                  f"{line.uom} received"))  # fmt: skip
        over = over or total > got
    if waiting:
        return Verdict("WAITING", tuple(waiting))
    priced_off = any(
        line.amount != amount(billed_quantity(line, order, convert), _price(order, line))
        for line in invoice.lines
    )
    return Verdict("MATCHED", (), tolerance_applied=priced_off or over,
                   actuals=actuals(invoice, order))  # fmt: skip


def billed_quantity(line: InvoiceLine, order: Order, convert: Convert) -> Decimal:
    """An invoice line's quantity in its PO line's unit."""
    po_line = order.lines[line.po_line_number]
    return convert(line.item_id, line.quantity, line.uom, po_line.uom)


def _price(order: Order, line: InvoiceLine) -> Decimal:
    return order.lines[line.po_line_number].unit_price


def _billed(invoice: Invoice, order: Order, convert: Convert) -> dict[int, Decimal]:
    found: dict[int, Decimal] = {}
    for line in invoice.lines:
        n = line.po_line_number
        found[n] = found.get(n, ZERO) + billed_quantity(line, order, convert)
    return found


def _against_order(
    invoice: Invoice, order: Order, convert: Convert, tolerance: Tolerance
) -> list[Reason]:
    """What fails against the PO alone: cancelled, currency, lines, units, prices."""
    if order.cancelled:
        return [Reason("NO_PO", None, f"PO {order.po_id} is cancelled")]
    reasons: list[Reason] = []
    currencies = {invoice.currency, *(line.currency for line in invoice.lines)}
    if currencies != {order.currency}:
        found = ", ".join(sorted(currencies))
        reasons.append(Reason("CURRENCY", None, f"invoiced in {found}; PO {order.po_id} is in "
                                                f"{order.currency}"))  # fmt: skip
        return reasons
    for line in invoice.lines:
        n = line.po_line_number
        po_line = order.lines.get(n)
        if po_line is None or po_line.item_id != line.item_id:
            what = "no such line" if po_line is None else f"item {po_line.item_id}"
            why = f"invoice line {line.line_number} bills item {line.item_id} on PO line {n}"
            reasons.append(Reason("NO_PO", n, f"{why}: {what}"))
            continue
        try:
            quantity = convert(line.item_id, line.quantity, line.uom, po_line.uom)
        except BusinessRuleError as exc:  # a unit the item master cannot convert
            reasons.append(Reason("QTY_VARIANCE", n, str(exc)))
            continue
        expected = amount(quantity, po_line.unit_price)
        if not price_within(tolerance, expected, line.amount, invoice.currency):
            allowed = price_allowance(tolerance, expected, invoice.currency)
            reasons.append(Reason(
                "PRICE_VARIANCE", n,
                f"invoice line {line.line_number}: {line.amount} {invoice.currency} for "
                f"{line.quantity} {line.uom}; the PO price makes {expected} (tolerance "
                f"{allowed.quantize(CENT)})",
            ))  # fmt: skip
    return reasons


def actuals(invoice: Invoice, order: Order) -> dict[str, Decimal]:
    """The invoiced amount per cost center of the billed PO lines (sorted)."""
    found: dict[str, Decimal] = {}
    for line in invoice.lines:
        center = order.lines[line.po_line_number].cost_center_id
        found[center] = found.get(center, ZERO) + line.amount
    return dict(sorted(found.items()))


def overrun(committed: Decimal, actualized_before: Decimal, actualizing: Decimal) -> Decimal:
    """How much of ``actualizing`` goes beyond what the PO committed on a cost center (given
    what was actualized before): committed first, so that committed spend never turns
    negative when an invoice is priced above the PO within tolerance or accepted."""
    before = max(ZERO, actualized_before - committed)
    after = max(ZERO, actualized_before + actualizing - committed)
    return after - before
